import { hashPassword } from "../crypto/passwords";
import { randomDigits } from "../crypto/random";
import { ApiError } from "../errors";
import { revertIssue } from "../storage/code-spending";
import {
  type CodeRef,
  checkCode,
  codeSecret,
  codesSentToday,
  countNothing,
  deleteCodes,
  findCode,
  hashCode,
  issueCode,
  releaseFailure,
} from "../storage/codes";
import { clearAccountThrottle } from "../storage/throttle";
import { removeNewUser, writeResetPassword } from "../storage/user-writes";
import { findUserByEmail, type UserRecord } from "../storage/users";
import { iso } from "../time";
import type { Deps } from "./deps";
import { deliveryAvailable, notify, notifyQuietly } from "./notifier";
import { followUp, retryInPlace } from "./retry";
import { endAllSessions } from "./sessions";
import { addressProven } from "./verification";

/** Reset codes: 8 digits, valid 15 minutes (docs/api.md §4). */
const RESET_CODE_DIGITS = 8;
const RESET_TTL_MS = 15 * 60 * 1000;
/**
 * Reset-code limits per account (docs/api.md §16): a new code at most every 60 s (a pending one is not
 * replaced meanwhile), at most 10 sent a UTC day, and at most 10 failed tries a day across all its
 * codes. Together: at most 10 guesses a day at an 8-digit code, and at most 10 emails.
 */
const RESET_RESEND_MS = 60 * 1000;
const RESET_DAILY_SENDS = 10;
const RESET_DAILY_FAILURES = 10;

function resetRef(realm: string, user: UserRecord | null, email: string): CodeRef {
  // Reset codes belong to the user id; an unknown email gets a subject no row can ever have.
  return { realm, purpose: "reset", subject: user ? user.id : `none:${email}` };
}

/**
 * Creates (or replaces) a user's reset code. Returns the code for delivery only: it is never
 * put in a response or a log (besides the notifier's development log). With `limited` (a
 * request by anyone, POST /v1/users/reset), the account's resend interval and daily cap apply:
 * null when they refuse, and the pending code, if any, stays as it is.
 */
async function issueResetCode(
  deps: Deps,
  user: UserRecord,
  limited: boolean,
): Promise<{ code: string; expiresAt: string } | null> {
  const code = randomDigits(RESET_CODE_DIGITS);
  const ref = resetRef(user.realm, user, user.email ?? "");
  const [codeHash, sent, before] = await Promise.all([
    codeSecret(deps.config).then((secret) => hashCode(secret, ref, code)),
    limited ? codesSentToday(deps.db, ref, deps.now) : 0,
    limited ? findCode(deps.db, ref) : null,
  ]);
  if (sent >= RESET_DAILY_SENDS) return null;
  const issued = await issueCode(deps.db, ref, {
    codeHash,
    now: deps.now,
    ttlMs: RESET_TTL_MS,
    minIntervalMs: limited ? RESET_RESEND_MS : undefined,
  });
  if (!issued.ok) return null;
  if (limited && issued.dayCount > RESET_DAILY_SENDS) {
    // A concurrent request took the day's last send: this one is withdrawn unsent.
    await revertIssue(deps.db, ref, codeHash, before);
    return null;
  }
  return { code, expiresAt: issued.expiresAt };
}

/**
 * POST /v1/users/reset (docs/api.md §4, §8). Always the same answer, and about the same work, whether
 * or not the email has an account: the lookup, a code drawn and hashed, and one D1 write.
 *
 * Delivery choice: the message is sent after the response (deps.defer). Sending it inline would
 * make existing emails slower by a webhook round trip, and a 502 for a failed delivery would
 * tell that the email exists; no-enumeration is the stronger promise, so a failed delivery is
 * logged (without the code or address) and the caller still gets 202. Only a production worker
 * with no delivery channel at all answers 503 delivery_unavailable, for every email alike,
 * which reveals nothing. The interval and daily cap of reset codes (docs/api.md §16) do not change
 * the answer either: a refused send is still 202 {}, and simply sends nothing.
 */
export async function requestReset(
  deps: Deps,
  realm: string,
  email: string,
): Promise<{ userId: string | null; sent: boolean }> {
  if (!deliveryAvailable(deps.config)) throw new ApiError("delivery_unavailable");
  const user = await findUserByEmail(deps.db, realm, email);
  if (!user) {
    // Equivalent work for an unknown email: draw and hash a code, and one D1 write that changes nothing.
    const ref = resetRef(realm, null, email);
    await Promise.all([
      hashCode(await codeSecret(deps.config), ref, randomDigits(RESET_CODE_DIGITS)),
      codesSentToday(deps.db, ref, deps.now),
    ]);
    // As a known account's send: one batch of the code upsert and the day's counter (neither matches a row here).
    await deps.db.batch([deleteCodes(deps.db, realm, [ref.subject], "reset"), countNothing(deps.db, ref, deps.now)]);
    return { userId: null, sent: false };
  }
  const issued = await issueResetCode(deps, user, true);
  if (!issued) return { userId: user.id, sent: false };
  const { code, expiresAt } = issued;
  deps.defer(notifyQuietly(deps, { type: "reset", channel: "email", to: email, code, realm, expires_at: expiresAt }));
  return { userId: user.id, sent: true };
}

export type ResetResult =
  | { ok: true; userId: string }
  | { ok: false; userId: string | null; reason: "unknown_email" | "mismatch" | "unavailable" | "raced" };

/**
 * PUT /v1/users/reset: checks the code (one attempt spent, constant-time compare), uses it up,
 * sets the password and ends every session of the user. Every failure is the same
 * 400 invalid_code on the wire; the reason is for the audit trail only.
 */
export async function completeReset(
  deps: Deps,
  realm: string,
  input: { email: string; code: string; password: string },
): Promise<ResetResult> {
  const user = await findUserByEmail(deps.db, realm, input.email);
  const ref = resetRef(realm, user, input.email);
  const codeHash = await hashCode(await codeSecret(deps.config), ref, input.code);
  // The account's failed tries are counted across its codes: a fresh code does not bring fresh guesses.
  const result = user
    ? await checkCode(deps.db, ref, codeHash, deps.now, { dailyFailures: RESET_DAILY_FAILURES })
    : await checkCode(deps.db, ref, codeHash, deps.now);
  if (!user) return { ok: false, userId: null, reason: "unknown_email" };
  if (result !== "ok") return { ok: false, userId: user.id, reason: result };
  const passwordHash = await hashPassword(input.password, deps.config.PASSWORD_PEPPER);
  const at = iso(deps.now);
  // The deciding write (sessions_valid_after: also a session the device index lost ends at its next
  // refresh, docs/api.md §16). When it does not reach D1, nothing changed and the code still works.
  let consumed: boolean;
  try {
    consumed = await writeResetPassword(deps.db, { id: user.id, passwordHash, at, ref, codeHash, now: deps.now });
  } catch (e) {
    // Nothing was written; the correct try's slot goes back all the same.
    await releaseFailure(deps.db, ref, deps.now).then(undefined, () => {});
    throw e;
  }
  if (!consumed) return { ok: false, userId: user.id, reason: "raced" };
  // Written: the follow-ups are retried in place and never fail the answer. The owner proved control
  // of the email: lift any login lock along with the old password, and the address counts as
  // verified (the code went to it: a change of address deletes reset codes).
  const log = { realm, user_id: user.id };
  await followUp("reset_address_not_marked", log, () => addressProven(deps, user, input.email));
  await Promise.all([
    endAllSessions(deps, realm, user.id),
    followUp("reset_throttle_not_cleared", log, () => clearAccountThrottle(deps.db, realm, input.email)),
  ]);
  return { ok: true, userId: user.id };
}

/**
 * An admin created a user without a password: send a welcome code (a reset code, type
 * `welcome`) so they set their own. If the code cannot be written or delivered, the user is
 * removed again and the error stands, so the admin can simply retry: nothing is left half-made.
 */
export async function sendWelcome(deps: Deps, user: UserRecord): Promise<void> {
  if (!user.email) return;
  const email = user.email;
  try {
    const issued = await issueResetCode(deps, user, false);
    if (!issued) throw new Error("welcome code not issued");
    const { code, expiresAt } = issued;
    await notify(deps, {
      type: "welcome",
      channel: "email",
      to: email,
      code,
      realm: user.realm,
      expires_at: expiresAt,
    });
  } catch (e) {
    // Not sent (the code's write or the delivery failed): the user goes again, so a retry starts afresh.
    await retryInPlace(() => removeNewUser(deps.db, user.realm, user.id));
    throw e;
  }
}
