// TOTP codes for the Node and e2e tests, computed as an authenticator app would (@oslojs/otp).
import { decodeBase32IgnorePadding } from "@oslojs/encoding";
import { generateHOTP } from "@oslojs/otp";

const STEP_MS = 30_000;
const hotp = (secret, step) => generateHOTP(decodeBase32IgnorePadding(secret), BigInt(step), 6);

/** A code the registry refuses: `away` steps from now (it accepts one either side). */
export const wrongTotpCode = (secret, away = 10) => hotp(secret, Math.floor(Date.now() / STEP_MS) + away);

/**
 * A code for `secret` (base32) the registry accepts when it arrives: it waits out the last 5 s of
 * a 30-second step, then gives the current step's code, to be submitted at once (the registry
 * accepts one step either side, so it stays good for 35 s or more). A code works once: with
 * `after`, the step of a code already used, it is of a later step, at most one ahead.
 */
export async function totpNow(secret, { after } = {}) {
  while (Date.now() % STEP_MS > 25_000) await new Promise((r) => setTimeout(r, 250));
  const current = Math.floor(Date.now() / STEP_MS);
  const step = after === undefined ? current : Math.max(current, after + 1);
  return { code: hotp(secret, step), step };
}
