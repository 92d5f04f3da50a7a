import { and, asc, eq, gt, or, type SQL, sql } from "drizzle-orm";
import { utf8 } from "../crypto/encoding";
import { ApiError } from "../errors";
import { users } from "../storage/schema";
import {
  emailVerified,
  findUserById,
  hasAdminRole,
  otherAdminExists,
  type UserRecord,
  userColumnsWithEmails,
  withEmails,
} from "../storage/users";
import { iso } from "../time";
import { decodeCursor, encodeCursor } from "./cursor";
import type { Deps } from "./deps";
import { accountChanged, endAllSessions } from "./sessions";
import { toUser } from "./users";

/** Who acts: an admin of the realm, or the holder of an authority token for one email domain. */
export type Principal = { kind: "admin"; userId: string } | { kind: "authority"; domain: string; tokenId: string };

/** The domain of an email (after the last @). */
const emailDomain = (email: string | null) => (email ? email.slice(email.lastIndexOf("@") + 1) : null);

/**
 * An authority may act only on users whose current email is in its domain (exactly that domain)
 * and verified (an unproven address there could be anyone's), and never on an admin (api.md §6).
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

// Keyset pagination on (created_at, id) stays correct under inserts and deletes.
/** The conditions of a user listing (exported so a test can EXPLAIN its plan). */
export function listWhere(realm: string, query: ListQuery, principal: Principal): SQL {
  const where: (SQL | undefined)[] = [eq(users.realm, realm)];
  const domain = principal.kind === "authority" ? principal.domain : query.domain;
  if (principal.kind === "authority" && query.domain && query.domain !== principal.domain)
    throw new ApiError("forbidden");
  if (domain) {
    // A suffix test, not LIKE: a domain may be longer than a LIKE pattern may be (ASCII case folded, as LIKE did).
    const suffix = `@${domain}`;
    where.push(sql`lower(substr(${users.email}, -length(${suffix}))) = lower(${suffix})`);
  }
  // An authority sees only the users it manages: a verified current address, no admins.
  if (principal.kind === "authority") {
    where.push(
      sql`EXISTS (SELECT 1 FROM user_emails e WHERE e.user_id = ${users.id} AND e.email = ${users.email} AND e.verified_at IS NOT NULL)`,
      sql`NOT ${hasAdminRole}`,
    );
  }
  if (query.status) where.push(eq(users.status, query.status));
  if (query.q) {
    const prefix = prefixPattern(query.q);
    where.push(
      or(
        sql`${users.email} LIKE ${prefix} ESCAPE '\\'`,
        sql`${users.fullName} LIKE ${prefix} ESCAPE '\\'`,
        sql`${users.phoneNumber} LIKE ${prefix} ESCAPE '\\'`,
      ),
    );
  }
  if (query.cursor) {
    const [createdAt, id] = decodeCursor(query.cursor);
    where.push(or(gt(users.createdAt, createdAt), and(eq(users.createdAt, createdAt), gt(users.id, id))));
  }
  return and(...where) as SQL;
}

/** A page of users, oldest first, and the cursor of the next page (null at the end). */
export async function listUsers(deps: Deps, realm: string, query: ListQuery, principal: Principal) {
  const rows = await deps.db
    .select(userColumnsWithEmails)
    .from(users)
    .where(listWhere(realm, query, principal))
    .orderBy(asc(users.createdAt), asc(users.id))
    .limit(query.limit + 1);
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
  const rows = await deps.db
    .update(users)
    // Deactivation marks every session begun before now as over (api.md §16), listed or not.
    .set(status === "disabled" ? { status, updatedAt, sessionsValidAfter: updatedAt } : { status, updatedAt })
    .where(
      and(
        eq(users.id, id),
        eq(users.realm, realm),
        // The realm keeps an active admin: decided in the statement, so two admins deactivating
        // each other at once cannot both succeed.
        status === "disabled" ? sql`(NOT ${hasAdminRole} OR ${otherAdminExists(realm, id)})` : undefined,
      ),
    )
    .returning({ id: users.id });
  if (!rows.length) {
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
  const keepsAdmin = next.includes("admin");
  const rows = await deps.db
    .update(users)
    .set({ roles: next, updatedAt })
    .where(
      and(
        eq(users.id, id),
        eq(users.realm, realm),
        keepsAdmin ? undefined : sql`(NOT ${hasAdminRole} OR ${otherAdminExists(realm, id)})`,
      ),
    )
    .returning({ id: users.id });
  if (!rows.length) throw new ApiError("last_admin");
  await accountChanged(deps, realm, id);
  return { ...user, roles: next, updatedAt };
}
