import { and, eq, gt, inArray, lt, lte, sql } from "drizzle-orm";
import type { Config } from "../config";
import { hex } from "../crypto/encoding";
import { hmacSha256, timingSafeEqual } from "../crypto/random";
import { iso } from "../time";
import type { Db } from "./db";
import { codeCounters, verificationCodes } from "./schema";

/**
 * One-time codes (reset codes, OTPs) in D1 table `verification_codes`: one live code per
 * (realm, purpose, subject), stored only as an HMAC, with a bounded attempt counter.
 *
 * Subjects by purpose:
 * - `reset` (and the admin `welcome` code, which is a reset code): the user id, so a code
 *   issued to one account can never act on another that later holds the same email.
 * - `otp`: the E.164 phone number (the user may not exist yet).
 */
export type CodePurpose = (typeof verificationCodes.$inferSelect)["purpose"];

export interface CodeRef {
  realm: string;
  purpose: CodePurpose;
  subject: string;
}

/** Tries per code (docs/api.md §4, §5); the counter is raised by a conditional UPDATE, so concurrent tries cannot exceed it. */
export const MAX_CODE_ATTEMPTS = 5;

/**
 * The HMAC key for codes. A keyed hash, not a bare SHA-256: an 8-digit code has only 10^8
 * values, so anyone reading D1 could otherwise invert a stored hash in a second. The key is
 * PASSWORD_PEPPER when set, else derived from the first JWT signing key (both are secrets
 * that never reach D1); rotating that key only invalidates codes still in flight.
 */
export async function codeSecret(config: Config): Promise<Uint8Array<ArrayBuffer>> {
  const base = config.PASSWORD_PEPPER ?? config.JWT_PRIVATE_KEYS[0]?.d;
  if (!base) throw new Error("no secret for verification codes");
  return hmacSha256(base, "user-registry verification codes v1");
}

/** The stored form of a code: hex HMAC-SHA-256 over realm, purpose, subject and code. */
export async function hashCode(
  secret: Uint8Array<ArrayBuffer>,
  ref: Omit<CodeRef, "purpose"> & { purpose: CodePurpose | "recovery" },
  code: string,
): Promise<string> {
  return hex(await hmacSha256(secret, [ref.realm, ref.purpose, ref.subject, code].join("\n")));
}

export interface IssueResult {
  /** False when `minIntervalMs` refused a resend; `retryAfterMs` says how long to wait. */
  ok: boolean;
  expiresAt: string;
  retryAfterMs: number;
  /**
   * Codes sent to this subject for this purpose today (UTC), this one included. Counted in
   * `code_counters`, not on the code row, so cleanup removing expired codes cannot reset it.
   */
  dayCount: number;
}

const utcDay = (now: number) => iso(now).slice(0, 10);

function counterWhere(ref: CodeRef, now: number) {
  const t = codeCounters;
  return and(eq(t.realm, ref.realm), eq(t.purpose, ref.purpose), eq(t.subject, ref.subject), eq(t.day, utcDay(now)));
}

/** Codes sent to this subject for this purpose today (UTC), whatever cleanup has removed since. */
export async function codesSentToday(db: Db, ref: CodeRef, now: number): Promise<number> {
  const rows = await db.select({ sends: codeCounters.sends }).from(codeCounters).where(counterWhere(ref, now)).limit(1);
  return rows[0]?.sends ?? 0;
}

/**
 * A write that changes nothing, as costly as the count of a send: for requests about a subject that
 * has no account, so they cost what a real send costs and their timing does not tell the two apart.
 * A statement, for a batch of two as `issueCode`'s.
 */
export function countNothing(db: Db, ref: CodeRef, now: number) {
  const t = codeCounters;
  return db
    .update(t)
    .set({ sends: sql`${t.sends} + 1` })
    .where(counterWhere(ref, now));
}

/**
 * Creates the code of a subject, or replaces the live one (fresh attempt counter, new expiry).
 * With `minIntervalMs`, a replacement within that time of the last send is refused atomically
 * (the upsert's WHERE), so concurrent sends cannot both pass.
 */
export async function issueCode(
  db: Db,
  ref: CodeRef,
  input: { codeHash: string; now: number; ttlMs: number; minIntervalMs?: number },
): Promise<IssueResult> {
  const now = iso(input.now);
  const expiresAt = iso(input.now + input.ttlMs);
  const day = now.slice(0, 10);
  const t = verificationCodes;
  const c = codeCounters;
  // The code and the day's count of sends are one batch: a send is never counted without its code
  // (a failed write would hold the resend interval with a code nobody got) nor the other way round.
  // The count moves only when the upsert took (the row now holds this hash, sent now).
  const [rows, counted] = await db.batch([
    db
      .insert(t)
      .values({ ...ref, codeHash: input.codeHash, attempts: 0, expiresAt, sentAt: now, day, dayCount: 1 })
      .onConflictDoUpdate({
        target: [t.realm, t.purpose, t.subject],
        set: {
          codeHash: input.codeHash,
          attempts: 0,
          expiresAt,
          sentAt: now,
          day,
          dayCount: sql`CASE WHEN ${t.day} = ${day} THEN ${t.dayCount} + 1 ELSE 1 END`,
        },
        setWhere: input.minIntervalMs ? lte(t.sentAt, iso(input.now - input.minIntervalMs)) : undefined,
      })
      .returning({ dayCount: t.dayCount }),
    db
      .insert(c)
      .select(
        sql`SELECT ${ref.realm}, ${ref.purpose}, ${ref.subject}, ${day}, 1, 0 WHERE EXISTS (SELECT 1 FROM ${t} WHERE ${and(refWhere(ref), eq(t.codeHash, input.codeHash), eq(t.sentAt, now))})`,
      )
      .onConflictDoUpdate({ target: [c.realm, c.purpose, c.subject, c.day], set: { sends: sql`${c.sends} + 1` } })
      .returning({ sends: c.sends }),
  ]);
  if (rows[0]) return { ok: true, expiresAt, retryAfterMs: 0, dayCount: counted[0]?.sends ?? 1 };
  const [live, sent] = await Promise.all([findCode(db, ref), codesSentToday(db, ref, input.now)]);
  const retryAfterMs = live ? Math.max(1, Date.parse(live.sentAt) + (input.minIntervalMs ?? 0) - input.now) : 1;
  return { ok: false, expiresAt: live?.expiresAt ?? expiresAt, retryAfterMs, dayCount: sent };
}

/** The live row of a subject (for resend throttling and tests), or null. */
export async function findCode(db: Db, ref: CodeRef) {
  const rows = await db.select().from(verificationCodes).where(refWhere(ref)).limit(1);
  return rows[0] ?? null;
}

/**
 * Spends one attempt on a code and compares it in constant time. `unavailable` covers no code,
 * expired, and out of tries alike (the counter only moves while attempts < MAX_CODE_ATTEMPTS,
 * in one conditional UPDATE ... RETURNING, so concurrent tries can never exceed the limit).
 * Does not consume: call `consumeCode` after `ok`. With `dailyFailures`, at most that many
 * failed tries a UTC day across all the subject's codes (docs/api.md §16); beyond it, `unavailable`.
 * A try takes its slot first; after `ok` the caller gives it back with `releaseFailure` in the
 * batch that uses the code, so a lost store between the two cannot leave a correct try counted.
 */
export async function checkCode(
  db: Db,
  ref: CodeRef,
  codeHash: string,
  now: number,
  opts: { dailyFailures?: number } = {},
): Promise<"ok" | "mismatch" | "unavailable"> {
  // With a daily budget of failed tries across the subject's codes: a try takes a slot first (one
  // conditional upsert, so concurrent tries cannot exceed it) and a correct one gives it back.
  if (opts.dailyFailures !== undefined && !(await reserveFailure(db, ref, now, opts.dailyFailures))) {
    return "unavailable";
  }
  let result: Awaited<ReturnType<typeof judgeCode>>;
  try {
    result = await judgeCode(db, ref, codeHash, now);
  } catch (e) {
    // The try was not judged: its reserved slot goes back (a lost store must not count as a wrong guess).
    if (opts.dailyFailures !== undefined) await releaseFailure(db, ref, now).then(undefined, () => {});
    throw e;
  }
  return result;
}

async function reserveFailure(db: Db, ref: CodeRef, now: number, limit: number): Promise<boolean> {
  const t = codeCounters;
  const rows = await db
    .insert(t)
    .values({ ...ref, day: utcDay(now), sends: 0, failures: 1 })
    .onConflictDoUpdate({
      target: [t.realm, t.purpose, t.subject, t.day],
      set: { failures: sql`${t.failures} + 1` },
      setWhere: lt(t.failures, limit),
    })
    .returning({ failures: t.failures });
  return rows.length > 0;
}

/** Gives back the slot of a try `checkCode` judged correct (a statement, for the batch that uses the code). */
export function releaseFailure(db: Db, ref: CodeRef, now: number) {
  const t = codeCounters;
  return db
    .update(t)
    .set({ failures: sql`MAX(0, ${t.failures} - 1)` })
    .where(counterWhere(ref, now));
}

async function judgeCode(db: Db, ref: CodeRef, codeHash: string, now: number) {
  const t = verificationCodes;
  const rows = await db
    .update(t)
    .set({ attempts: sql`${t.attempts} + 1` })
    .where(and(refWhere(ref), lt(t.attempts, MAX_CODE_ATTEMPTS), gt(t.expiresAt, iso(now))))
    .returning({ codeHash: t.codeHash });
  const stored = rows[0]?.codeHash;
  if (stored === undefined) return "unavailable";
  const enc = new TextEncoder();
  // Constant time: the stored hash must not be learnable byte by byte from response times.
  return timingSafeEqual(enc.encode(stored), enc.encode(codeHash)) ? "ok" : "mismatch";
}

/**
 * Uses up a code: deletes it only if it is still the one checked. True for exactly one of
 * several concurrent callers, so a code is single-use even when raced.
 */
export async function consumeCode(db: Db, ref: CodeRef, codeHash: string): Promise<boolean> {
  return (await consumeCodeStatement(db, ref, codeHash)).length > 0;
}

/** consumeCode's DELETE ... RETURNING, for a batch with the write the code allows (one row when it was used up here). */
export function consumeCodeStatement(db: Db, ref: CodeRef, codeHash: string) {
  return db
    .delete(verificationCodes)
    .where(and(refWhere(ref), eq(verificationCodes.codeHash, codeHash)))
    .returning({ subject: verificationCodes.subject });
}

/** True in SQL while the subject's code is still `codeHash`: makes a write conditional on the code it spends. */
export function codeStillHeld(ref: CodeRef, codeHash: string) {
  const t = verificationCodes;
  return sql`EXISTS (SELECT 1 FROM ${t} WHERE ${and(refWhere(ref), eq(t.codeHash, codeHash))})`;
}

/** Deletes the codes of these subjects (all purposes unless one is given). */
export function deleteCodes(db: Db, realm: string, subjects: string[], purpose?: CodePurpose) {
  const t = verificationCodes;
  const where = [eq(t.realm, realm), inArray(t.subject, subjects.length ? subjects : [""])];
  if (purpose) where.push(eq(t.purpose, purpose));
  return db.delete(t).where(and(...where));
}

/** The row of this subject (realm, purpose, subject), for the WHERE of a write. */
export function refWhere(ref: CodeRef) {
  const t = verificationCodes;
  return and(eq(t.realm, ref.realm), eq(t.purpose, ref.purpose), eq(t.subject, ref.subject));
}
