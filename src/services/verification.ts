import { randomDigits } from "../crypto/random";
import { ApiError, tooMany } from "../errors";
import { revertIssue, spendCode } from "../storage/code-spending";
import { type CodeRef, checkCode, codeSecret, findCode, hashCode, issueCode } from "../storage/codes";
import { claimBootstrapSeat, markEmailVerified } from "../storage/emails";
import type { RealmRow } from "../storage/schema";
import { emailVerified, findUserByEmail, type UserRecord } from "../storage/users";
import { DAY_MS, iso } from "../time";
import type { Deps } from "./deps";
import { notify, notifyQuietly } from "./notifier";
import { retryInPlace } from "./retry";
import { accountChanged } from "./sessions";

/** Email verification codes (docs/api.md §11): 8 digits, 30 minutes, 5 tries, one send a minute and 10 a day per address. */
const VERIFY_DIGITS = 8;
export const VERIFY_TTL_MS = 30 * 60 * 1000;
const VERIFY_RESEND_MS = 60 * 1000;
const VERIFY_DAILY_LIMIT = 10;

/** Does the realm refuse a password login to an unverified address? Allowlist realms always do (docs/api.md §6). */
export const verificationRequired = (realm: Pick<RealmRow, "emailVerification" | "registration">) =>
  realm.emailVerification === "required" || realm.registration === "allowlist";

/**
 * Codes are kept per address (subject: the email), so the send limits hold per address whichever
 * account asks. The code is hashed together with the id of the account it was sent for, so a code
 * mailed while one account held the address proves nothing for another that holds it later.
 */
const verifyRef = (realm: string, email: string): CodeRef => ({ realm, purpose: "verify_email", subject: email });
const boundCode = (userId: string, code: string) => `${userId}:${code}`;
const untilNextUtcDay = (now: number) => Math.floor(now / DAY_MS) * DAY_MS + DAY_MS - now;

export type IssueOutcome =
  | { ok: true; code: string; expiresAt: string; undo: () => Promise<unknown> }
  | { ok: false; retryAfterMs: number };

/**
 * Draws a verification code for `email` on behalf of `userId` and stores its HMAC, within the
 * address's limits: a resend within 60 s is refused by issueCode's conditional upsert; the daily
 * cap is checked before and again on the counter the upsert returns (a concurrent send that took
 * the last slot withdraws this one unsent). `undo` withdraws an issued code that was not delivered.
 */
export async function issueVerification(
  deps: Deps,
  realm: string,
  userId: string,
  email: string,
): Promise<IssueOutcome> {
  const ref = verifyRef(realm, email);
  const today = iso(deps.now).slice(0, 10);
  const before = await findCode(deps.db, ref);
  const capped = { ok: false as const, retryAfterMs: untilNextUtcDay(deps.now) };
  if (before && before.day === today && before.dayCount >= VERIFY_DAILY_LIMIT) return capped;
  const code = randomDigits(VERIFY_DIGITS);
  const codeHash = await hashCode(await codeSecret(deps.config), ref, boundCode(userId, code));
  const issued = await issueCode(deps.db, ref, {
    codeHash,
    now: deps.now,
    ttlMs: VERIFY_TTL_MS,
    minIntervalMs: VERIFY_RESEND_MS,
  });
  if (!issued.ok) return { ok: false, retryAfterMs: issued.retryAfterMs };
  const undo = () => revertIssue(deps.db, ref, codeHash, before);
  if (issued.dayCount > VERIFY_DAILY_LIMIT) {
    await undo();
    return capped;
  }
  return { ok: true, code, expiresAt: issued.expiresAt, undo };
}

const message = (realm: string, email: string, code: string, expiresAt: string) =>
  ({ type: "verify_email", channel: "email", to: email, code, realm, expires_at: expiresAt }) as const;

/**
 * Sends a code to a new account's (or a newly current) address, after the response. Within the
 * address's limits only: a refused send is not an error (POST /v1/users/verification resends).
 * It follows a change already written (a sign-up, an email change), so it never fails the
 * answer: the step is retried in place, and a send that still fails is logged and left to a resend.
 */
export async function sendVerification(deps: Deps, user: UserRecord, email: string): Promise<void> {
  try {
    const issued = await retryInPlace(() => issueVerification(deps, user.realm, user.id, email));
    if (issued.ok) deps.defer(notifyQuietly(deps, message(user.realm, email, issued.code, issued.expiresAt)));
  } catch (e) {
    console.error(
      JSON.stringify({
        level: "error",
        event: "verification_not_sent",
        realm: user.realm,
        user_id: user.id,
        error: String(e),
      }),
    );
  }
}

/**
 * Sends the code of a pending email change (docs/api.md §4) now, so a failed delivery or a refused send
 * is the caller's answer (429 with Retry-After, 502 delivery_failed) and no code is left behind.
 */
export async function sendVerificationNow(deps: Deps, user: UserRecord, email: string): Promise<string> {
  const issued = await issueVerification(deps, user.realm, user.id, email);
  if (!issued.ok) throw tooMany(issued.retryAfterMs, "A code was sent to this address recently. Please wait");
  try {
    await notify(deps, message(user.realm, email, issued.code, issued.expiresAt));
  } catch (e) {
    await issued.undo().catch(() => {});
    throw e;
  }
  return issued.expiresAt;
}

/**
 * POST /v1/users/verification: always the same answer. A code goes out (after the response) only
 * when the address is the current, unverified email of an account; otherwise the same work is
 * done (a code drawn and hashed, one read), so neither the answer nor its time tells which.
 */
export async function requestVerification(deps: Deps, realm: string, email: string): Promise<{ sent: boolean }> {
  const user = await findUserByEmail(deps.db, realm, email);
  if (!user || emailVerified(user)) {
    await hashCode(await codeSecret(deps.config), verifyRef(realm, email), randomDigits(VERIFY_DIGITS));
    await findCode(deps.db, verifyRef(realm, email));
    return { sent: false };
  }
  const issued = await issueVerification(deps, realm, user.id, email);
  if (issued.ok) deps.defer(notifyQuietly(deps, message(realm, email, issued.code, issued.expiresAt)));
  return { sent: issued.ok };
}

/**
 * Spends one try on the code sent to `email` for `userId` (constant-time compare in checkCode)
 * and uses it up when it matches; of two concurrent correct tries only one gets "ok".
 */
export async function spendVerification(
  deps: Deps,
  realm: string,
  userId: string | null,
  email: string,
  code: string,
): Promise<"ok" | "mismatch" | "unavailable" | "raced"> {
  const ref = verifyRef(realm, email);
  // An unknown address spends a try on a subject-bound hash that no issued code can equal.
  const codeHash = await hashCode(await codeSecret(deps.config), ref, boundCode(userId ?? "-", code));
  const checked = await checkCode(deps.db, ref, codeHash, deps.now);
  if (checked !== "ok" || userId === null) return checked === "ok" ? "mismatch" : checked;
  return (await spendCode(deps.db, ref, codeHash)) ? "ok" : "raced";
}

export type ConfirmResult =
  | { ok: true; user: UserRecord; admin: boolean }
  | { ok: false; userId: string | null; reason: "unknown_email" | "mismatch" | "unavailable" | "raced" };

/** PUT /v1/users/verification: the code proves the current address of the account that holds it. */
export async function confirmVerification(
  deps: Deps,
  realm: string,
  email: string,
  code: string,
): Promise<ConfirmResult> {
  const user = await findUserByEmail(deps.db, realm, email);
  const spent = await spendVerification(deps, realm, user?.id ?? null, email, code);
  if (!user) return { ok: false, userId: null, reason: "unknown_email" };
  if (spent !== "ok") return { ok: false, userId: user.id, reason: spent };
  const { admin } = await addressProven(deps, user, email);
  return { ok: true, user, admin };
}

/**
 * An address of `user` (its current one) was proven: marks it verified and, when it is listed in
 * BOOTSTRAP_ADMIN_EMAILS, claims the realm's admin seat in the same batch (only while the realm has
 * no active admin, decided inside the UPDATE). Sessions then drop their copy of the account, so
 * the next tokens carry `email_verified` (and the role).
 */
export async function addressProven(deps: Deps, user: UserRecord, email: string): Promise<{ admin: boolean }> {
  const at = iso(deps.now);
  const listed = deps.config.BOOTSTRAP_ADMIN_EMAILS.includes(email);
  const mark = markEmailVerified(deps.db, user.id, email, at);
  let admin = false;
  if (listed) {
    const [, claimed] = await deps.db.batch([mark, claimBootstrapSeat(deps.db, user.realm, user.id, email, at)]);
    admin = claimed.length > 0;
  } else {
    await mark;
  }
  await accountChanged(deps, user.realm, user.id);
  return { admin };
}

/** The 403 of a password login to an unverified address in a realm that requires verification. */
export const emailUnverified = () =>
  new ApiError("email_unverified", "Verify your email first: POST /v1/users/verification sends a new code");
