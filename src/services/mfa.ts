import { checkSecondFactor } from "../auth-methods/totp";
import { sha256Hex } from "../crypto/random";
import { ApiError, tooMany } from "../errors";
import { spendMfaToken, tryMfaToken } from "../storage/mfa";
import { clearLoginFailures, recordLoginFailure, reserveLoginAttempt } from "../storage/throttle";
import { findUserById, type UserRecord } from "../storage/users";
import type { Deps } from "./deps";
import { startSession } from "./sessions";
import { assertActive } from "./users";

/** The login throttle's key for an account (api.md §10): the email password logins are counted under. */
export const throttleSubject = (u: Pick<UserRecord, "email" | "phoneNumber" | "id">) =>
  u.email ?? u.phoneNumber ?? u.id;

export type MfaResult =
  | { ok: true; userId: string; deviceId: string; amr: string[]; pair: Awaited<ReturnType<typeof startSession>> }
  | { ok: false; userId: string; deviceId: string };

/**
 * POST /v1/tokens/mfa: the second step of a login (api.md §12). One of the token's 5 tries is
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
  const subject = throttleSubject(user);
  const attempt = await reserveLoginAttempt(deps.db, realm, subject, deps.now);
  if (!attempt.ok) throw tooMany(attempt.retryAfterMs, "Too many failed logins. Please try again later");
  const added = await checkSecondFactor(deps, user, input);
  if (!added) {
    await recordLoginFailure(deps.db, realm, subject, attempt, deps.now);
    return { ok: false, userId: user.id, deviceId: row.deviceId };
  }
  if (!(await spendMfaToken(deps.db, tokenHash))) throw invalid();
  await clearLoginFailures(deps.db, realm, subject);
  assertActive(user);
  const amr = [...new Set([...row.amr, ...added, "mfa"])];
  const pair = await startSession(deps, user, row.deviceId, {
    description: row.description,
    pushToken: row.pushToken,
    amr,
  });
  return { ok: true, userId: user.id, deviceId: row.deviceId, amr, pair };
}
