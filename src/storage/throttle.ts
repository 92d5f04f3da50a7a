import { and, eq, isNotNull, isNull, lt, lte, or, sql } from "drizzle-orm";
import { iso } from "../time";
import type { Db } from "./db";
import { loginThrottle } from "./schema";

/** Consecutive failures allowed before the account answers 429 (docs/api.md §10). */
const MAX_LOGIN_FAILURES = 5;
const FIRST_LOCK_MS = 30_000;
const LONGEST_LOCK_MS = 15 * 60_000;

/** The lock after the n-th lockout (0-based): 30 s, doubling, at most 15 min. */
export const lockoutMs = (lockouts: number) => Math.min(FIRST_LOCK_MS * 2 ** lockouts, LONGEST_LOCK_MS);

export type Reservation = { ok: true; failures: number; lockouts: number } | { ok: false; retryAfterMs: number };

/**
 * Counts an attempt before the password is checked, in one conditional upsert: while fewer than
 * MAX_LOGIN_FAILURES attempts are pending or failed (or a lock has expired), the counter rises and
 * the attempt may proceed; otherwise it is refused with how long to wait. Concurrent attempts
 * therefore cannot judge more passwords than the limit.
 */
export async function reserveLoginAttempt(db: Db, realm: string, subject: string, now: number): Promise<Reservation> {
  const t = loginThrottle;
  const nowIso = iso(now);
  const expired = and(isNotNull(t.lockedUntil), lte(t.lockedUntil, nowIso));
  const rows = await db
    .insert(t)
    .values({ realm, subject, failures: 1, lockouts: 0, lockedUntil: null, updatedAt: nowIso })
    .onConflictDoUpdate({
      target: [t.realm, t.subject],
      set: {
        failures: sql`CASE WHEN ${expired} THEN 1 ELSE ${t.failures} + 1 END`,
        lockedUntil: sql`CASE WHEN ${expired} THEN NULL ELSE ${t.lockedUntil} END`,
        updatedAt: nowIso,
      },
      setWhere: or(and(isNull(t.lockedUntil), lt(t.failures, MAX_LOGIN_FAILURES)), expired),
    })
    .returning({ failures: t.failures, lockouts: t.lockouts });
  if (rows[0]) return { ok: true, ...rows[0] };
  const row = (
    await db
      .select()
      .from(t)
      .where(and(eq(t.realm, realm), eq(t.subject, subject)))
      .limit(1)
  )[0];
  const until = row?.lockedUntil ? Date.parse(row.lockedUntil) : now + lockoutMs(row?.lockouts ?? 0);
  return { ok: false, retryAfterMs: Math.max(1000, until - now) };
}

/** After a failed check: the attempt that reached the limit locks the account, for longer each time. */
export async function recordLoginFailure(
  db: Db,
  realm: string,
  subject: string,
  r: { failures: number; lockouts: number },
  now: number,
) {
  if (r.failures < MAX_LOGIN_FAILURES) return;
  const t = loginThrottle;
  await db
    .update(t)
    .set({ lockedUntil: iso(now + lockoutMs(r.lockouts)), lockouts: r.lockouts + 1, updatedAt: iso(now) })
    .where(and(eq(t.realm, realm), eq(t.subject, subject), isNull(t.lockedUntil)));
}

/**
 * Gives back an attempt that was counted but proved nothing either way: a correct password on an
 * account whose second step is still to come. The count then neither rises nor resets, so only
 * a completed login clears it and wrong second-step codes lock the account as wrong passwords do.
 */
export async function releaseLoginAttempt(db: Db, realm: string, subject: string) {
  const t = loginThrottle;
  await db
    .update(t)
    .set({ failures: sql`MAX(${t.failures} - 1, 0)` })
    .where(and(eq(t.realm, realm), eq(t.subject, subject), isNull(t.lockedUntil)));
}

/**
 * The throttle subject of a login attempt (docs/hardening.md, "Login throttle"): the email tried, shared by
 * every device the account never signed in from; or, for a device that did sign in to it before,
 * the email and that device, a budget of its own, so strangers' failures do not lock it out.
 */
export const throttleSubject = (email: string, familiarDeviceId: string | null) =>
  familiarDeviceId ? `${email}\n${familiarDeviceId}` : email;

/** A completed password reset: the lock of the email and of each of its familiar devices goes. */
export async function clearAccountThrottle(db: Db, realm: string, email: string) {
  const t = loginThrottle;
  await db
    .delete(t)
    .where(
      and(
        eq(t.realm, realm),
        or(eq(t.subject, email), sql`substr(${t.subject}, 1, ${email.length + 1}) = ${`${email}\n`}`),
      ),
    );
}
