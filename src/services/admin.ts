import { utf8 } from "../crypto/encoding";
import { ApiError } from "../errors";
import type { Principal } from "../principal";
import { decodeCursor, encodeCursor } from "../storage/cursor";
import { listUserRows, userListWhere, writeRoles, writeStatus } from "../storage/user-listing";
import { emailVerified, findUserById, type UserRecord, withEmails } from "../storage/users";
import { iso } from "../time";
import type { Deps } from "./deps";
import { accountChanged, endAllSessions } from "./sessions";
import { toUser } from "./users";

export type { Principal } from "../principal";

/** The domain of an email (after the last @). */
const emailDomain = (email: string | null) => (email ? email.slice(email.lastIndexOf("@") + 1) : null);

/**
 * An authority may act only on users whose current email is in its domain (exactly that domain)
 * and verified (an unproven address there could be anyone's), and never on an admin (docs/api.md §6).
 */
function assertMayManage(principal: Principal, user: UserRecord): void {
  if (principal.kind !== "authority") return;
  if (emailDomain(user.email) !== principal.domain || !emailVerified(user) || isAdmin(user)) {
    throw new ApiError("forbidden");
  }
}

const isAdmin = (user: UserRecord) => user.roles.includes("admin");

export interface ListQuery {
  limit: number;
  cursor?: string;
  q?: string;
  domain?: string;
  status?: "active" | "pending" | "disabled";
}

const escapeLike = (s: string) => s.replace(/[\\%_]/g, (ch) => `\\${ch}`);

/** D1's SQLite refuses a LIKE pattern longer than this many bytes ("LIKE or GLOB pattern too complex"). */
const LIKE_PATTERN_MAX_BYTES = 50;

/** The LIKE pattern of a prefix search for `q`, or 400 when D1 could not run it. */
function prefixPattern(q: string): string {
  const pattern = `${escapeLike(q)}%`;
  if (utf8(pattern).byteLength > LIKE_PATTERN_MAX_BYTES) {
    throw new ApiError("validation_failed", undefined, {
      fields: {
        q: `is too long to search by (at most ${LIKE_PATTERN_MAX_BYTES - 1} bytes once %, _ and \\ are escaped)`,
      },
    });
  }
  return pattern;
}

/** The conditions of a user listing (exported so a test can EXPLAIN its plan). */
export function listWhere(realm: string, query: ListQuery, principal: Principal) {
  const domain = principal.kind === "authority" ? principal.domain : query.domain;
  if (principal.kind === "authority" && query.domain && query.domain !== principal.domain)
    throw new ApiError("forbidden");
  return userListWhere(realm, {
    domain,
    // An authority sees only the users it manages: a verified current address, no admins.
    managedOnly: principal.kind === "authority",
    status: query.status,
    prefix: query.q ? prefixPattern(query.q) : undefined,
    after: query.cursor ? decodeCursor(query.cursor) : undefined,
  });
}

/** A page of users, oldest first, and the cursor of the next page (null at the end). */
export async function listUsers(deps: Deps, realm: string, query: ListQuery, principal: Principal) {
  const rows = await listUserRows(deps.db, listWhere(realm, query, principal), query.limit + 1);
  const page = rows.slice(0, query.limit);
  const last = page[page.length - 1];
  return {
    users: page.map((row) => toUser(withEmails(row))),
    next_cursor: rows.length > query.limit && last ? encodeCursor(last.createdAt, last.id) : null,
  };
}

/** Loads a user the principal may manage, or 404 / 403. */
async function managedUser(deps: Deps, realm: string, id: string, principal: Principal): Promise<UserRecord> {
  const user = await findUserById(deps.db, realm, id);
  if (!user) throw new ApiError("not_found", "User not found");
  assertMayManage(principal, user);
  return user;
}

/** Activates or deactivates a user; deactivation ends every session of the user at once. */
export async function setStatus(
  deps: Deps,
  realm: string,
  id: string,
  status: "active" | "disabled",
  principal: Principal,
): Promise<UserRecord> {
  const user = await managedUser(deps, realm, id, principal);
  const updatedAt = iso(deps.now);
  // Deactivation marks every session begun before now as over (docs/api.md §16), listed or not;
  // the realm keeps an active admin (decided in the statement).
  const written = await writeStatus(deps.db, realm, id, status, updatedAt);
  if (!written) {
    // Deleted since it was read, or the realm's last active admin.
    throw (await findUserById(deps.db, realm, id))
      ? new ApiError("last_admin")
      : new ApiError("not_found", "User not found");
  }
  if (status === "disabled") await endAllSessions(deps, realm, id);
  else await accountChanged(deps, realm, id);
  return { ...user, status, updatedAt };
}

/**
 * Replaces a user's roles. Removing `admin` from the realm's last active admin is refused; the
 * check and the write are one conditional UPDATE, so two admins demoting each other at once
 * cannot leave the realm without one.
 */
export async function setRoles(deps: Deps, realm: string, id: string, roles: string[]): Promise<UserRecord> {
  const user = await findUserById(deps.db, realm, id);
  if (!user) throw new ApiError("not_found", "User not found");
  const next = [...new Set(roles)].sort();
  const updatedAt = iso(deps.now);
  if (!(await writeRoles(deps.db, realm, id, next, updatedAt))) throw new ApiError("last_admin");
  await accountChanged(deps, realm, id);
  return { ...user, roles: next, updatedAt };
}
