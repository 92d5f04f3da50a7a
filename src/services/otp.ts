import { randomDigits } from "../crypto/random";
import { ApiError, retryAfterSeconds, tooMany } from "../errors";
import { revertIssue, spendCode, unspendCode } from "../storage/code-spending";
import { type CodeRef, checkCode, codeSecret, codesSentToday, findCode, hashCode, issueCode } from "../storage/codes";
import { findRealm } from "../storage/realms";
import { DAY_MS } from "../time";
import { checkCaptcha } from "./captcha";
import type { Deps } from "./deps";
import { deliveryAvailable, notify } from "./notifier";
import { followUp } from "./retry";

/** Phone OTPs (docs/api.md §5): 6 digits, valid 5 minutes, 5 tries (MAX_CODE_ATTEMPTS). */
const OTP_DIGITS = 6;
const OTP_TTL_MS = 5 * 60 * 1000;
/** At most one send per number per minute. */
const OTP_RESEND_MS = 60 * 1000;
/** At most this many sends per number per UTC day (a bound on SMS cost and on pumping fraud). */
const OTP_DAILY_LIMIT = 10;

const otpRef = (realm: string, phone: string): CodeRef => ({ realm, purpose: "otp", subject: phone });
const untilNextUtcDay = (now: number) => Math.floor(now / DAY_MS) * DAY_MS + DAY_MS - now;

/**
 * POST /v1/otp: checks the captcha (when TURNSTILE_SECRET is set or the realm requires one),
 * draws a code, stores only its HMAC (replacing any live code, with fresh tries) and sends it by
 * SMS through the notifier. The answer does not depend on whether the number has an account.
 *
 * Limits: one send per number per 60 s (decided atomically by issueCode's conditional upsert)
 * and OTP_DAILY_LIMIT per UTC day (checked before, and re-checked on the counter the upsert
 * returns, so concurrent sends cannot pass it either).
 *
 * Delivery failure: the code is issued before sending (so the throttle is decided before any
 * SMS goes out), and if the notifier fails, `revertIssue` puts the row back as it was: the
 * undelivered code stops working at once (the previous, delivered code, if still live, works
 * again), and the send time goes back, so our failure does not lock the person out for 60 s.
 * The attempt still counts towards the daily limit: a timed-out webhook may well have sent
 * the SMS, and the limit is what bounds messages we may have caused.
 */
export async function sendOtp(
  deps: Deps,
  realm: string,
  phone: string,
  client: { captchaToken?: string; ip: string | null },
): Promise<{ expires_in: number; retry_after: number }> {
  // No channel at all (production without a webhook): refuse before touching any state.
  if (!deliveryAvailable(deps.config)) throw new ApiError("delivery_unavailable");
  const realmRow = await findRealm(deps.db, realm);
  if (!realmRow) throw new ApiError("realm_not_found");
  // Before any state changes: a bot that fails the captcha neither sends nor uses up the throttle.
  await checkCaptcha(deps, realmRow, client.captchaToken, client.ip);
  const ref = otpRef(realm, phone);
  const capped = () =>
    tooMany(untilNextUtcDay(deps.now), "Too many codes were sent to this number today. Please try again tomorrow");

  // Today's count lives apart from the code row (code_counters), so cleanup cannot reset it.
  const [before, sentToday] = await Promise.all([findCode(deps.db, ref), codesSentToday(deps.db, ref, deps.now)]);
  if (sentToday >= OTP_DAILY_LIMIT) throw capped();

  const code = randomDigits(OTP_DIGITS);
  const codeHash = await hashCode(await codeSecret(deps.config), ref, code);
  const issued = await issueCode(deps.db, ref, {
    codeHash,
    now: deps.now,
    ttlMs: OTP_TTL_MS,
    minIntervalMs: OTP_RESEND_MS,
  });
  if (!issued.ok) throw tooMany(issued.retryAfterMs);
  if (issued.dayCount > OTP_DAILY_LIMIT) {
    // A concurrent send passed the pre-check too and took the last slot: withdraw this one unsent.
    await revertIssue(deps.db, ref, codeHash, before);
    throw capped();
  }

  try {
    await notify(deps, { type: "otp", channel: "sms", to: phone, code, realm, expires_at: issued.expiresAt });
  } catch (e) {
    // The caller hears of the delivery failure even if the revert fails (the code is then still unknown to anyone).
    await revertIssue(deps.db, ref, codeHash, before).catch((err) =>
      console.error(JSON.stringify({ level: "error", event: "otp_revert_failed", realm, error: String(err) })),
    );
    throw e;
  }
  const nextSendMs =
    issued.dayCount >= OTP_DAILY_LIMIT ? Math.max(OTP_RESEND_MS, untilNextUtcDay(deps.now)) : OTP_RESEND_MS;
  return { expires_in: OTP_TTL_MS / 1000, retry_after: retryAfterSeconds(nextSendMs) };
}

export type OtpFailure =
  | "mismatch"
  | "unavailable"
  | "raced"
  | "account_disabled"
  | "account_pending"
  | "registration_closed";

/** The wire error of each verify failure. */
export const OTP_FAILURE_CODES = {
  mismatch: "invalid_otp",
  // No code, expired, out of tries, or already used: ask for a new one.
  unavailable: "otp_expired",
  raced: "otp_expired",
  account_disabled: "account_disabled",
  account_pending: "account_pending",
  registration_closed: "registration_closed",
} as const satisfies Record<OtpFailure, string>;

/**
 * Proof that the caller holds a phone number: spends one try of the number's OTP and uses the
 * code up when it matches. Throws 401 invalid_otp or otp_expired like verify does. Returns what
 * gives the code back, for a caller whose write then fails to reach the store (see verifyOtp).
 */
export async function provePhone(deps: Deps, realm: string, phone: string, otp: string): Promise<() => Promise<void>> {
  const { result, unspend } = await spendOtp(deps, realm, phone, otp);
  if (result !== "ok") throw new ApiError(OTP_FAILURE_CODES[result]);
  return () => followUp("otp_not_given_back", { realm }, unspend);
}

/**
 * Spends one try on the number's code (constant-time compare inside checkCode) and, when it
 * matches, uses the code up; of two concurrent correct attempts only one gets "ok".
 */
export async function spendOtp(deps: Deps, realm: string, phone: string, otp: string) {
  const ref = otpRef(realm, phone);
  const codeHash = await hashCode(await codeSecret(deps.config), ref, otp);
  const checked = await checkCode(deps.db, ref, codeHash, deps.now);
  if (checked !== "ok") return { result: checked, unspend: async () => {} };
  const result = (await spendCode(deps.db, ref, codeHash)) ? "ok" : "raced";
  return { result, unspend: () => unspendCode(deps.db, ref, codeHash) } as const;
}
