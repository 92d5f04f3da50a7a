import { decodeBase32IgnorePadding, encodeBase32NoPadding } from "@oslojs/encoding";
import { createTOTPKeyURI, generateHOTP, verifyHOTP } from "@oslojs/otp";
import type { AccessClaims } from "../crypto/jwt";
import { randomBytes, randomString } from "../crypto/random";
import { ApiError } from "../errors";
import type { Deps } from "../services/deps";
import { requireUser } from "../services/users";
import { codeSecret, hashCode } from "../storage/codes";
import {
  acceptTotpStep,
  confirmTotp,
  deleteTotp,
  findTotp,
  mfaSummary,
  putPendingTotp,
  replaceRecoveryCodes,
  spendRecoveryCode,
} from "../storage/mfa";

/** RFC 6238 as authenticator apps use it: SHA-1, 30-second steps, 6 digits; ±1 step of drift. */
export const TOTP_STEP_SECONDS = 30;
export const TOTP_DIGITS = 6;
const DRIFT_STEPS = 1;
const RECOVERY_CODE_COUNT = 10;
/** Recovery codes: 10 symbols of 32 (50 bits), shown as xxxxx-xxxxx; no 0/o, 1/l/i. */
const RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789";

/** The RFC 6238 code of `step` (the library's HOTP over the step counter). */
export const totpCode = (key: Uint8Array, step: number, digits = TOTP_DIGITS) =>
  generateHOTP(key, BigInt(step), digits);

export const stepAt = (nowMs: number) => Math.floor(nowMs / 1000 / TOTP_STEP_SECONDS);

/**
 * The step within ±1 of `now` whose code `code` is, or null. Every candidate is compared (in
 * constant time, by the library), so timing does not tell which step matched.
 */
export function matchingStep(key: Uint8Array, code: string, nowMs: number): number | null {
  if (!/^\d{6}$/.test(code)) return null;
  const now = stepAt(nowMs);
  let found: number | null = null;
  for (let step = now - DRIFT_STEPS; step <= now + DRIFT_STEPS; step++) {
    if (verifyHOTP(key, BigInt(step), TOTP_DIGITS, code) && found === null) found = step;
  }
  return found;
}

const secretKey = (secret: string) => decodeBase32IgnorePadding(secret);

/** Codes are compared as typed loosely: case, spaces and dashes do not matter. */
const normaliseRecovery = (code: string) => code.toLowerCase().replace(/[\s-]/g, "");

async function hashRecovery(deps: Deps, realm: string, userId: string, code: string) {
  return hashCode(
    await codeSecret(deps.config),
    { realm, purpose: "recovery", subject: userId },
    normaliseRecovery(code),
  );
}

async function newRecoveryCodes(deps: Deps, realm: string, userId: string) {
  const codes = Array.from({ length: RECOVERY_CODE_COUNT }, () => {
    const s = randomString(10, RECOVERY_ALPHABET);
    return `${s.slice(0, 5)}-${s.slice(5)}`;
  });
  const hashes = await Promise.all(codes.map((c) => hashRecovery(deps, realm, userId, c)));
  return { codes, hashes };
}

/** POST /v1/users/me/mfa/totp: a new secret (160 bits), waiting for its first code. */
export async function enrolTotp(deps: Deps, claims: AccessClaims) {
  const user = await requireUser(deps, claims.realm, claims.sub);
  const key = randomBytes(20);
  const secret = encodeBase32NoPadding(key);
  if (!(await putPendingTotp(deps.db, { userId: user.id, realm: user.realm, secret, now: deps.now }))) {
    throw new ApiError("totp_already_enabled");
  }
  const issuer = deps.config.webauthn?.rpName ?? new URL(deps.config.ISSUER).hostname;
  const account = user.email ?? user.phoneNumber ?? user.id;
  return { secret, otpauth_uri: createTOTPKeyURI(issuer, account, key, TOTP_STEP_SECONDS, TOTP_DIGITS) };
}

/** PUT /v1/users/me/mfa/totp: the first code turns TOTP on; the recovery codes are shown this once. */
export async function confirmTotpEnrolment(deps: Deps, claims: AccessClaims, code: string) {
  const factor = await findTotp(deps.db, claims.sub);
  if (!factor) throw new ApiError("totp_not_enabled", "Start with POST /v1/users/me/mfa/totp");
  if (factor.confirmedAt) throw new ApiError("totp_already_enabled");
  const step = matchingStep(secretKey(factor.secret), code, deps.now);
  if (step === null) throw new ApiError("invalid_code");
  const { codes, hashes } = await newRecoveryCodes(deps, claims.realm, claims.sub);
  if (!(await confirmTotp(deps.db, claims.sub, step, hashes, deps.now))) throw new ApiError("invalid_code");
  return { recovery_codes: codes };
}

/** DELETE /v1/users/me/mfa/totp: the factor and its recovery codes go. */
export async function removeTotp(deps: Deps, claims: AccessClaims): Promise<boolean> {
  const had = await findTotp(deps.db, claims.sub);
  await deleteTotp(deps.db, claims.sub);
  return had?.confirmedAt != null;
}

/** POST /v1/users/me/mfa/recovery-codes: a new set; the old one stops working. */
export async function regenerateRecoveryCodes(deps: Deps, claims: AccessClaims) {
  const { codes, hashes } = await newRecoveryCodes(deps, claims.realm, claims.sub);
  if (!(await replaceRecoveryCodes(deps.db, claims.sub, hashes, deps.now))) throw new ApiError("totp_not_enabled");
  return { recovery_codes: codes };
}

/**
 * A login's second factor: the authenticator app's code (once: its step must be later than the
 * last one accepted) or a recovery code (once). Returns the `amr` values it adds, or null.
 */
export async function checkSecondFactor(
  deps: Deps,
  user: { id: string; realm: string },
  input: { code?: string; recovery_code?: string },
): Promise<string[] | null> {
  if (input.code !== undefined) {
    const factor = await findTotp(deps.db, user.id);
    if (!factor?.confirmedAt) return null;
    const step = matchingStep(secretKey(factor.secret), input.code, deps.now);
    if (step === null || !(await acceptTotpStep(deps.db, user.id, step))) return null;
    return ["otp"];
  }
  if (input.recovery_code !== undefined) {
    const hash = await hashRecovery(deps, user.realm, user.id, input.recovery_code);
    return (await spendRecoveryCode(deps.db, user.id, hash, deps.now)) ? ["kba"] : null;
  }
  return null;
}

/** GET /v1/users/me/mfa: whether the app is on, the recovery codes left and the passkeys (docs/api.md §12). */
export const mfaStatus = (deps: Deps, claims: AccessClaims) => mfaSummary(deps.db, claims.sub);
