import { decodeBase32IgnorePadding } from "@oslojs/encoding";
import { generateHOTP } from "@oslojs/otp";
import { expect } from "vitest";
import { api, login, newSession, PASSWORD, withPrefix } from "./helpers";

/** The 6-digit TOTP code of `secret` (base32) at `atMs`, `offset` steps away, computed as an app would. */
export function codeAt(secret: string, atMs: number, offset = 0): string {
  const step = Math.floor(atMs / 30_000) + offset;
  return generateHOTP(decodeBase32IgnorePadding(secret), BigInt(step), 6);
}

/** Turns TOTP on for the session's user; returns the secret and the recovery codes. */
export async function enableTotp(accessToken: string, prefix = "") {
  const started = await api("POST", withPrefix(prefix, "/v1/users/me/mfa/totp"), { token: accessToken });
  expect(started.status, started.text).toBe(201);
  const secret = started.body.secret as string;
  // A step back: the code of the enrolment's step stays free for the test's first login.
  const confirmed = await api("PUT", withPrefix(prefix, "/v1/users/me/mfa/totp"), {
    token: accessToken,
    body: { code: codeAt(secret, Date.now(), -1) },
  });
  expect(confirmed.status, confirmed.text).toBe(200);
  return { secret, recoveryCodes: confirmed.body.recovery_codes as string[] };
}

/** A user with TOTP on, signed in on one device. */
export async function totpUser() {
  const s = await newSession();
  const totp = await enableTotp(s.pair.access_token);
  return { ...s, ...totp };
}

/** A password login that must stop at the second step; returns its mfa_token. */
export async function firstStep(email: string, opts: { device_id?: string; prefix?: string } = {}) {
  const res = await api("POST", withPrefix(opts.prefix ?? "", "/v1/tokens"), {
    body: { email, password: PASSWORD, device_id: opts.device_id },
  });
  expect(res.status, res.text).toBe(401);
  expect(res.body.error.code).toBe("mfa_required");
  return res.body.mfa_token as string;
}

/** Both steps of a login with TOTP: password, then the code of `offset` steps from now. */
export async function loginWithTotp(email: string, secret: string, opts: { device_id?: string; offset?: number } = {}) {
  const mfa_token = await firstStep(email, opts);
  const res = await api("POST", "/v1/tokens/mfa", {
    body: { mfa_token, code: codeAt(secret, Date.now(), opts.offset ?? 0) },
  });
  expect(res.status, res.text).toBe(200);
  return res.body;
}

export { login };
