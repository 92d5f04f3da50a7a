import { loginSubject } from "../auth-methods/password";
import { checkSecondFactor } from "../auth-methods/totp";
import { sha256Hex } from "../crypto/random";
import { ApiError, tooMany } from "../errors";
import { spendMfaToken, tryMfaToken } from "../storage/mfa";
import { recordLoginFailure, reserveLoginAttempt } from "../storage/throttle";
import { findUserById, type UserRecord } from "../storage/users";
import type { Deps } from "./deps";
import { completeLogin } from "./login";

/**
 * The login throttle's key for the second step (docs/api.md §10): chosen as the password step
 * chooses it (loginSubject: the email, or the email and a familiar device), so both steps count
 * under one subject. An account without an email counts under its number or id.
 */
export const throttleSubject = (
  deps: Deps,
  u: Pick<UserRecord, "realm" | "email" | "phoneNumber" | "id">,
  deviceId: string,
) => (u.email ? loginSubject(deps, u.realm, u.email, deviceId) : Promise.resolve(u.phoneNumber ?? u.id));

export type MfaResult =
  | { ok: true; userId: string; deviceId: string; amr: string[]; pair: Awaited<ReturnType<typeof completeLogin>> }
  | { ok: false; userId: string; deviceId: string };

/**
 * POST /v1/tokens/mfa: the second step of a login (docs/api.md §12). One of the token's 5 tries is
 * spent first, and the account's login throttle counts the attempt (a wrong code locks the account
 * like a wrong password); a correct code spends the token and starts the session on the device of
 * the first step. An unknown, expired, spent or exhausted token is 401 invalid_token.
 */
export async function finishMfaLogin(
  deps: Deps,
  realm: string,
  input: { mfa_token: string; code?: string; recovery_code?: string; presentedDeviceId?: string },
): Promise<MfaResult> {
  const tokenHash = await sha256Hex(input.mfa_token);
  const row = await tryMfaToken(deps.db, realm, tokenHash, deps.now);
  const invalid = () =>
    new ApiError("invalid_token", "The mfa_token is not valid: it expired, was used, or ran out of tries");
  if (!row) throw invalid();
  // The token belongs to the device of the first step: another device's public token cannot use it.
  if (input.presentedDeviceId && input.presentedDeviceId !== row.deviceId) throw invalid();
  const user = await findUserById(deps.db, realm, row.userId);
  if (!user) throw invalid();
  const subject = await throttleSubject(deps, user, row.deviceId);
  const attempt = await reserveLoginAttempt(deps.db, realm, subject, deps.now);
  if (!attempt.ok) throw tooMany(attempt.retryAfterMs, "Too many failed logins. Please try again later");
  const added = await checkSecondFactor(deps, user, input);
  if (!added) {
    await recordLoginFailure(deps.db, realm, subject, attempt, deps.now);
    return { ok: false, userId: user.id, deviceId: row.deviceId };
  }
  if (!(await spendMfaToken(deps.db, tokenHash))) throw invalid();
  const amr = [...new Set([...row.amr, ...added, "mfa"])];
  // The throttle's count goes with the login's writes (one batch): a completed login clears it.
  const pair = await completeLogin(deps, {
    user,
    device: { id: row.deviceId, description: row.description, pushToken: row.pushToken },
    amr,
    throttleSubject: subject,
    audit: { detail: { amr } },
  });
  return { ok: true, userId: user.id, deviceId: row.deviceId, amr, pair };
}
