import { and, eq, gt, lt, or, sql } from "drizzle-orm";
import { iso } from "../time";
import { changedRows, type Db } from "./db";
import { passkeys, webauthnChallenges } from "./schema";

export type PasskeyRow = typeof passkeys.$inferSelect;

/** A WebAuthn challenge lives 5 minutes (api.md §12). */
export const CHALLENGE_TTL_MS = 5 * 60_000;

/** Keeps a challenge until it is spent or expires. */
export async function putChallenge(
  db: Db,
  c: { challenge: string; realm: string; purpose: "register" | "login"; userId: string | null; now: number },
) {
  await db.insert(webauthnChallenges).values({
    challenge: c.challenge,
    realm: c.realm,
    purpose: c.purpose,
    userId: c.userId,
    expiresAt: iso(c.now + CHALLENGE_TTL_MS),
  });
}

/**
 * Spends a challenge: true only for the first use of a live one of this realm, purpose and user
 * (DELETE … RETURNING, so two uses at once cannot both pass).
 */
export async function spendChallenge(
  db: Db,
  c: { challenge: string; realm: string; purpose: "register" | "login"; userId: string | null; now: number },
): Promise<boolean> {
  const t = webauthnChallenges;
  const rows = await db
    .delete(t)
    .where(
      and(
        eq(t.challenge, c.challenge),
        eq(t.realm, c.realm),
        eq(t.purpose, c.purpose),
        c.userId === null ? sql`${t.userId} IS NULL` : eq(t.userId, c.userId),
        gt(t.expiresAt, iso(c.now)),
      ),
    )
    .returning({ challenge: t.challenge });
  return rows.length > 0;
}

export const listPasskeys = (db: Db, userId: string) =>
  db.select().from(passkeys).where(eq(passkeys.userId, userId)).orderBy(passkeys.createdAt);

export async function findPasskey(db: Db, realm: string, id: string): Promise<PasskeyRow | null> {
  const rows = await db
    .select()
    .from(passkeys)
    .where(and(eq(passkeys.id, id), eq(passkeys.realm, realm)))
    .limit(1);
  return rows[0] ?? null;
}

/** Stores a new passkey; false when the credential id is registered already. */
export async function insertPasskey(db: Db, row: typeof passkeys.$inferInsert): Promise<boolean> {
  const rows = await db.insert(passkeys).values(row).onConflictDoNothing().returning({ id: passkeys.id });
  return rows.length > 0;
}

/**
 * Records a use: the signature counter only moves forward (a conditional UPDATE, so of two uses
 * with the same counter only one passes); authenticators that keep no counter send 0 every time.
 */
export async function recordPasskeyUse(
  db: Db,
  id: string,
  uses: { counter: number; backedUp: boolean; now: number },
): Promise<boolean> {
  const res = await db
    .update(passkeys)
    .set({ counter: uses.counter, backedUp: uses.backedUp, lastUsedAt: iso(uses.now) })
    .where(
      and(
        eq(passkeys.id, id),
        or(lt(passkeys.counter, uses.counter), and(eq(passkeys.counter, 0), sql`${uses.counter} = 0`)),
      ),
    );
  return changedRows(res) > 0;
}

/** Removes one of a user's passkeys; false when the user has none with that id. */
export async function deletePasskey(db: Db, userId: string, id: string): Promise<boolean> {
  const rows = await db
    .delete(passkeys)
    .where(and(eq(passkeys.id, id), eq(passkeys.userId, userId)))
    .returning({ id: passkeys.id });
  return rows.length > 0;
}
