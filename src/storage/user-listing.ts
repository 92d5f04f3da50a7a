import { and, asc, eq, gt, or, type SQL, sql } from "drizzle-orm";
import type { Db } from "./db";
import { users } from "./schema";
import { hasAdminRole, otherAdminExists, userColumnsWithEmails } from "./users";

/** What a user listing selects by; every field already checked by the caller. */
export interface ListFilter {
  /** Current email in exactly this domain. */
  domain?: string;
  /** Only the users an authority manages: a verified current address, no admins. */
  managedOnly: boolean;
  status?: "active" | "pending" | "disabled";
  /** A LIKE pattern (escaped, with its trailing %) on email, name or phone. */
  prefix?: string;
  /** The position after the previous page's last row: (created_at, id). */
  after?: [string, string];
}

// Keyset pagination on (created_at, id) stays correct under inserts and deletes.
/** The conditions of a user listing. */
export function userListWhere(realm: string, f: ListFilter): SQL {
  const where: (SQL | undefined)[] = [eq(users.realm, realm)];
  if (f.domain) {
    // A suffix test, not LIKE: a domain may be longer than a LIKE pattern may be (ASCII case folded, as LIKE did).
    const suffix = `@${f.domain}`;
    where.push(sql`lower(substr(${users.email}, -length(${suffix}))) = lower(${suffix})`);
  }
  if (f.managedOnly) {
    where.push(
      sql`EXISTS (SELECT 1 FROM user_emails e WHERE e.user_id = ${users.id} AND e.email = ${users.email} AND e.verified_at IS NOT NULL)`,
      sql`NOT ${hasAdminRole}`,
    );
  }
  if (f.status) where.push(eq(users.status, f.status));
  if (f.prefix) {
    where.push(
      or(
        sql`${users.email} LIKE ${f.prefix} ESCAPE '\\'`,
        sql`${users.fullName} LIKE ${f.prefix} ESCAPE '\\'`,
        sql`${users.phoneNumber} LIKE ${f.prefix} ESCAPE '\\'`,
      ),
    );
  }
  if (f.after) {
    const [createdAt, id] = f.after;
    where.push(or(gt(users.createdAt, createdAt), and(eq(users.createdAt, createdAt), gt(users.id, id))));
  }
  return and(...where) as SQL;
}

/** Up to `limit` users matching `where`, oldest first (with their emails). */
export const listUserRows = (db: Db, where: SQL, limit: number) =>
  db.select(userColumnsWithEmails).from(users).where(where).orderBy(asc(users.createdAt), asc(users.id)).limit(limit);

/** The realm keeps an active admin: decided in the statement, so two admins acting on each other at once cannot both succeed. */
const keepsAnAdmin = (realm: string, id: string) => sql`(NOT ${hasAdminRole} OR ${otherAdminExists(realm, id)})`;

/**
 * Sets a user's status; deactivation also marks every session begun before now as over
 * (docs/api.md §16), listed or not. False when the user is gone or is the realm's last active admin.
 */
export async function writeStatus(
  db: Db,
  realm: string,
  id: string,
  status: "active" | "disabled",
  updatedAt: string,
): Promise<boolean> {
  const rows = await db
    .update(users)
    .set(status === "disabled" ? { status, updatedAt, sessionsValidAfter: updatedAt } : { status, updatedAt })
    .where(and(eq(users.id, id), eq(users.realm, realm), status === "disabled" ? keepsAnAdmin(realm, id) : undefined))
    .returning({ id: users.id });
  return rows.length > 0;
}

/** Replaces a user's roles; false when that would take `admin` from the realm's last active admin. */
export async function writeRoles(db: Db, realm: string, id: string, roles: string[], updatedAt: string) {
  const rows = await db
    .update(users)
    .set({ roles, updatedAt })
    .where(and(eq(users.id, id), eq(users.realm, realm), roles.includes("admin") ? undefined : keepsAnAdmin(realm, id)))
    .returning({ id: users.id });
  return rows.length > 0;
}

/** The email addresses of a realm's active admins. */
export const activeAdminEmails = (db: Db, realm: string) =>
  db
    .select({ email: users.email })
    .from(users)
    .where(and(eq(users.realm, realm), eq(users.status, "active"), hasAdminRole));
