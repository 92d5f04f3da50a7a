import { and, eq, gt, lt, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { hex } from "../crypto/encoding";
import { iso } from "../time";
import type { Db } from "./db";
import { claimBootstrapSeat } from "./emails";
import { identities, oauthRecords, userEmails, users } from "./schema";

/** Linked identity provider accounts and the single-use records of the provider flows (docs/api.md §13). */

export type IdentityRow = typeof identities.$inferSelect;

/** The user a `(provider, subject)` of a realm is linked to, or null. */
export async function findIdentity(db: Db, realm: string, provider: string, subject: string) {
  const rows = await db
    .select()
    .from(identities)
    .where(and(eq(identities.realm, realm), eq(identities.provider, provider), eq(identities.subject, subject)))
    .limit(1);
  return rows[0] ?? null;
}

export const listIdentities = (db: Db, userId: string) =>
  db.select().from(identities).where(eq(identities.userId, userId)).orderBy(identities.createdAt, identities.provider);

/** The insert of a link, for a batch. Fails on the primary key (linked to someone) or (user, provider). */
export const linkIdentityStatement = (db: Db, row: IdentityRow) => db.insert(identities).values(row);

export type RecordKind = (typeof oauthRecords.$inferSelect)["kind"];

const recordKey = async (kind: RecordKind, secret: string) =>
  hex(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${kind}\n${secret}`))));

/** Stores a record; false when one with the same key exists and is still live (a replay). */
export async function putRecord(
  db: Db,
  kind: RecordKind,
  secret: string,
  realm: string,
  data: Record<string, unknown>,
  expiresAt: number,
  now: number,
): Promise<boolean> {
  const key = await recordKey(kind, secret);
  const rows = await db
    .insert(oauthRecords)
    .values({ key, kind, realm, data, expiresAt: iso(expiresAt) })
    // An expired record of the same key may be replaced; a live one may not.
    .onConflictDoUpdate({
      target: oauthRecords.key,
      set: { realm, data, expiresAt: iso(expiresAt) },
      setWhere: lt(oauthRecords.expiresAt, iso(now)),
    })
    .returning({ key: oauthRecords.key });
  return rows.length > 0;
}

/** Spends a live record of this realm: one DELETE ... RETURNING, so of two requests at most one gets it. */
export async function takeRecord(
  db: Db,
  kind: RecordKind,
  secret: string,
  realm: string,
  now: number,
): Promise<Record<string, unknown> | null> {
  const key = await recordKey(kind, secret);
  const rows = await db
    .delete(oauthRecords)
    .where(
      and(
        eq(oauthRecords.key, key),
        eq(oauthRecords.kind, kind),
        eq(oauthRecords.realm, realm),
        gt(oauthRecords.expiresAt, iso(now)),
      ),
    )
    .returning({ data: oauthRecords.data });
  return rows[0]?.data ?? null;
}

/**
 * Deletes a user's link to `provider` unless it is their only way in: the user keeps a password,
 * a phone number or another linked identity. One statement, so two unlinks at once cannot both
 * pass. Returns whether the row went.
 */
export async function unlinkUnlessLast(db: Db, userId: string, provider: string): Promise<boolean> {
  const gone = await db
    .delete(identities)
    .where(
      and(
        eq(identities.userId, userId),
        eq(identities.provider, provider),
        sql`(EXISTS (SELECT 1 FROM users u WHERE u.id = ${userId} AND (u.password_hash IS NOT NULL OR u.phone_number IS NOT NULL))
          OR EXISTS (SELECT 1 FROM identities o WHERE o.user_id = ${userId} AND o.provider <> ${provider}))`,
      ),
    )
    .returning({ subject: identities.subject });
  return gone.length > 0;
}

/**
 * A new account made by an identity provider, in one batch: the user, its first email (proven when
 * the provider says so), the link, and, for a proven bootstrap address, the claim of the realm's
 * admin seat (decided inside its UPDATE). Returns whether the seat was won.
 */
export async function insertFederatedUser(
  db: Db,
  row: typeof users.$inferInsert,
  emailVerifiedAt: string | null,
  identity: IdentityRow,
  claimSeat: boolean,
): Promise<{ admin: boolean }> {
  const stmts: BatchItem<"sqlite">[] = [db.insert(users).values(row)];
  if (row.email) {
    stmts.push(
      db
        .insert(userEmails)
        .values({ userId: row.id, email: row.email, addedAt: row.createdAt, verifiedAt: emailVerifiedAt }),
    );
  }
  stmts.push(linkIdentityStatement(db, identity));
  if (claimSeat && row.email) stmts.push(claimBootstrapSeat(db, row.realm, row.id, row.email, row.createdAt));
  const results = await db.batch(stmts as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]]);
  const claimed = claimSeat && row.email ? (results.at(-1) as unknown[]) : [];
  return { admin: claimed.length > 0 };
}
