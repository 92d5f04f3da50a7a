import { and, count, eq, gt, isNotNull, isNull, lt, or, type SQL, sql } from "drizzle-orm";
import { iso } from "../time";
import { changedRows, type Db } from "./db";
import { mfaTokens, passkeys, recoveryCodes, totpFactors } from "./schema";

export type TotpRow = typeof totpFactors.$inferSelect;
export type MfaTokenRow = typeof mfaTokens.$inferSelect;

/** The account's authenticator app, confirmed or not; null when there is none. */
export async function findTotp(db: Db, userId: string): Promise<TotpRow | null> {
  const rows = await db.select().from(totpFactors).where(eq(totpFactors.userId, userId)).limit(1);
  return rows[0] ?? null;
}

/**
 * GET /v1/users/me/mfa: whether the app is on (confirmed), the unused recovery codes and the
 * passkeys, read in one batch. Recovery codes count only while the app is on.
 */
export async function mfaSummary(db: Db, userId: string) {
  const [factor, codes, keys] = await db.batch([
    db
      .select({ confirmedAt: totpFactors.confirmedAt })
      .from(totpFactors)
      .where(eq(totpFactors.userId, userId))
      .limit(1),
    db
      .select({ n: count() })
      .from(recoveryCodes)
      .where(and(eq(recoveryCodes.userId, userId), isNull(recoveryCodes.usedAt))),
    db.select({ n: count() }).from(passkeys).where(eq(passkeys.userId, userId)),
  ]);
  const totp = !!factor[0]?.confirmedAt;
  return { totp, recovery_codes_left: totp ? (codes[0]?.n ?? 0) : 0, passkeys: keys[0]?.n ?? 0 };
}

/**
 * Stores a new, unconfirmed secret (replacing an unconfirmed one). False when TOTP is already on:
 * the conditional upsert never replaces a confirmed secret, whatever runs at the same time.
 */
export async function putPendingTotp(db: Db, row: { userId: string; realm: string; secret: string; now: number }) {
  const values = { userId: row.userId, realm: row.realm, secret: row.secret, createdAt: iso(row.now) };
  const written = await db
    .insert(totpFactors)
    .values(values)
    .onConflictDoUpdate({
      target: totpFactors.userId,
      set: { secret: row.secret, createdAt: values.createdAt, lastStep: null },
      setWhere: isNull(totpFactors.confirmedAt),
    })
    .returning({ userId: totpFactors.userId });
  return written.length > 0;
}

/** A step may be accepted only after the last accepted one (so each code works once). */
const laterStep = (step: number) => or(isNull(totpFactors.lastStep), lt(totpFactors.lastStep, step));

/** Records `step` as used on a confirmed factor; false when it (or a later one) was used already. */
export async function acceptTotpStep(db: Db, userId: string, step: number): Promise<boolean> {
  const res = await db
    .update(totpFactors)
    .set({ lastStep: step })
    .where(and(eq(totpFactors.userId, userId), isNotNull(totpFactors.confirmedAt), laterStep(step)));
  return changedRows(res) > 0;
}

/**
 * Confirms a pending factor with the step of its first code and stores the recovery codes, in one
 * batch: the codes are written only by the statement that confirmed (so a second, racing
 * confirmation can neither replace the set the first one showed nor leave the account without one).
 */
export async function confirmTotp(
  db: Db,
  userId: string,
  step: number,
  codeHashes: string[],
  now: number,
): Promise<boolean> {
  const at = iso(now);
  const confirmedNow = sql`EXISTS (SELECT 1 FROM totp_factors WHERE user_id = ${userId} AND confirmed_at = ${at} AND last_step = ${step})`;
  const [confirmed] = await db.batch([
    db
      .update(totpFactors)
      .set({ confirmedAt: at, lastStep: step })
      .where(and(eq(totpFactors.userId, userId), isNull(totpFactors.confirmedAt), laterStep(step)))
      .returning({ userId: totpFactors.userId }),
    db.delete(recoveryCodes).where(and(eq(recoveryCodes.userId, userId), confirmedNow)),
    ...codeHashes.map((h) => insertCodeIf(db, userId, h, at, confirmedNow)),
  ]);
  return confirmed.length > 0;
}

/** A recovery code row, written only when `condition` holds when the statement runs (in a batch). */
const insertCodeIf = (db: Db, userId: string, codeHash: string, at: string, condition: SQL) =>
  db.insert(recoveryCodes).select(sql`SELECT ${userId}, ${codeHash}, NULL, ${at} WHERE ${condition}`);

/** Removes the factor and its recovery codes. */
export async function deleteTotp(db: Db, userId: string): Promise<void> {
  await db.batch([
    db.delete(totpFactors).where(eq(totpFactors.userId, userId)),
    db.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId)),
  ]);
}

/** Replaces the recovery codes of a confirmed factor (the old set stops working); false when TOTP is off. */
export async function replaceRecoveryCodes(db: Db, userId: string, codeHashes: string[], now: number) {
  const at = iso(now);
  const on = sql`EXISTS (SELECT 1 FROM totp_factors WHERE user_id = ${userId} AND confirmed_at IS NOT NULL)`;
  const [, ...inserted] = await db.batch([
    db.delete(recoveryCodes).where(eq(recoveryCodes.userId, userId)),
    ...codeHashes.map((h) => insertCodeIf(db, userId, h, at, on)),
  ]);
  return inserted.some((r) => changedRows(r) > 0);
}

/** Spends one recovery code (once: a conditional UPDATE); false when unknown or used. */
export async function spendRecoveryCode(db: Db, userId: string, codeHash: string, now: number): Promise<boolean> {
  const res = await db
    .update(recoveryCodes)
    .set({ usedAt: iso(now) })
    .where(and(eq(recoveryCodes.userId, userId), eq(recoveryCodes.codeHash, codeHash), isNull(recoveryCodes.usedAt)));
  return changedRows(res) > 0;
}

/** Stores the second step of a login. */
export async function insertMfaToken(db: Db, row: typeof mfaTokens.$inferInsert): Promise<void> {
  await db.insert(mfaTokens).values(row);
}

/** MFA_TOKEN_TRIES: how many codes one `mfa_token` may try (docs/api.md §12). */
export const MFA_TOKEN_TRIES = 5;

/**
 * Spends one try of a live `mfa_token` before its code is judged (a conditional UPDATE, so
 * concurrent tries cannot exceed MFA_TOKEN_TRIES); null when unknown, expired, spent or out of tries.
 */
export async function tryMfaToken(db: Db, realm: string, tokenHash: string, now: number): Promise<MfaTokenRow | null> {
  const rows = await db
    .update(mfaTokens)
    .set({ attempts: sql`${mfaTokens.attempts} + 1` })
    .where(
      and(
        eq(mfaTokens.tokenHash, tokenHash),
        eq(mfaTokens.realm, realm),
        lt(mfaTokens.attempts, MFA_TOKEN_TRIES),
        gt(mfaTokens.expiresAt, iso(now)),
      ),
    )
    .returning();
  return rows[0] ?? null;
}

/** Spends the token after a correct code; false when another request spent it first. */
export async function spendMfaToken(db: Db, tokenHash: string): Promise<boolean> {
  const rows = await db
    .delete(mfaTokens)
    .where(eq(mfaTokens.tokenHash, tokenHash))
    .returning({ tokenHash: mfaTokens.tokenHash });
  return rows.length > 0;
}
