import { and, eq, isNull, sql } from "drizzle-orm";
import type { Db } from "./db";
import { userEmails, users } from "./schema";

/**
 * Proven addresses (docs/api.md §11) and the bootstrap admin seat (§6), in D1. An address is proven
 * when `user_emails.verified_at` is set for that user and address.
 */

/** Marks one address of a user proven (a no-op when it already is). A statement for a batch. */
export const markEmailVerified = (db: Db, userId: string, email: string, at: string) =>
  db
    .update(userEmails)
    .set({ verifiedAt: at })
    .where(and(eq(userEmails.userId, userId), eq(userEmails.email, email), isNull(userEmails.verifiedAt)));

/** The realm has an active admin (for the sign-up exemption of a bootstrap address; the grant decides again). */
export async function activeAdminExists(db: Db, realm: string): Promise<boolean> {
  const row = await db.get<{ ok: number }>(
    sql`SELECT EXISTS (SELECT 1 FROM users WHERE realm = ${realm} AND status = 'active' AND roles LIKE '%"admin"%') AS ok`,
  );
  return Boolean(row?.ok);
}

/**
 * Claims the bootstrap admin seat of a realm for a user whose current email is `email` and is
 * verified: adds `admin` and makes the account active, only while the realm has no active admin.
 * The test and the grant are one UPDATE, and D1 runs statements one at a time, so of two
 * claimants at once exactly one wins; the other's WHERE then sees the winner. A disabled account
 * never claims. A statement for a batch (run after the address was marked verified).
 */
export const claimBootstrapSeat = (db: Db, realm: string, userId: string, email: string, at: string) =>
  db
    .update(users)
    .set({ roles: sql`json_insert(${users.roles}, '$[#]', 'admin')`, status: "active", updatedAt: at })
    .where(
      and(
        eq(users.id, userId),
        eq(users.realm, realm),
        eq(users.email, email),
        sql`${users.status} <> 'disabled'`,
        sql`${users.roles} NOT LIKE '%"admin"%'`,
        sql`EXISTS (SELECT 1 FROM user_emails e WHERE e.user_id = ${users.id} AND e.email = ${users.email} AND e.verified_at IS NOT NULL)`,
        sql`NOT EXISTS (SELECT 1 FROM users o WHERE o.realm = ${realm} AND o.status = 'active' AND o.roles LIKE '%"admin"%')`,
      ),
    )
    .returning({ id: users.id });

/** Records (or clears) the email change a user waits to confirm. */
export const setPendingEmail = (db: Db, userId: string, email: string | null, at: string) =>
  db.update(users).set({ pendingEmail: email, updatedAt: at }).where(eq(users.id, userId));

/**
 * The statements that make `email` a user's current address: the user row (any pending change
 * cleared) and the history row (kept when the user held it before, with its `verified_at`; a new
 * one starts unverified). For one batch.
 */
export function switchEmailStatements(db: Db, userId: string, email: string, at: string) {
  return [
    db.update(users).set({ email, pendingEmail: null, updatedAt: at }).where(eq(users.id, userId)),
    db.insert(userEmails).values({ userId, email, addedAt: at }).onConflictDoNothing(),
  ] as const;
}
