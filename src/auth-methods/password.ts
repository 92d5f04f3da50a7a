import { dummyVerify, hashPassword, verifyPassword } from "../crypto/passwords";
import { ApiError, tooMany } from "../errors";
import { selfActor } from "../services/audit";
import type { Deps } from "../services/deps";
import { completeLogin, type LoginDevice, LoginFailure } from "../services/login";
import { isFamiliarDevice } from "../storage/login-devices";
import { recordLoginFailure, releaseLoginAttempt, reserveLoginAttempt, throttleSubject } from "../storage/throttle";
import { rehashPassword } from "../storage/user-writes";
import { findUserByEmail, type UserRecord } from "../storage/users";

export { LoginFailure } from "../services/login";

/**
 * The login-throttle subject of an attempt on an account (docs/hardening.md, "Login throttle"):
 * the email tried, or, from a device that signed in to the account before, that email and
 * device. The password step and the second step (services/mfa.ts) both count under it.
 */
export async function loginSubject(deps: Deps, realm: string, email: string, deviceId: string): Promise<string> {
  const familiar = await isFamiliarDevice(deps.db, realm, email, deviceId);
  return throttleSubject(email, familiar ? deviceId : null);
}

/**
 * Checks an email and password. Unknown emails spend the time of a real hash check and get
 * the same error, so neither status nor timing tells whether an account exists. Failures throw
 * a LoginFailure, which names the account for the audit trail (never on the wire). The
 * account's status is the login seam's to check (completeLogin).
 *
 * Throttle (docs/api.md §10, docs/hardening.md, "Login throttle"): per email tried, known or not, so a 429 says
 * nothing about whether an account exists; a device that signed in to the account before has a
 * budget of its own (familiar-device lockout), so failures from elsewhere do not lock it out.
 */
export async function authenticate(
  deps: Deps,
  realmId: string,
  email: string,
  password: string,
  deviceId: string,
): Promise<{ user: UserRecord; subject: string }> {
  const [subject, user] = await Promise.all([
    loginSubject(deps, realmId, email, deviceId),
    findUserByEmail(deps.db, realmId, email),
  ]);
  const fail = (e: ApiError) => new LoginFailure(e, user?.id ?? null);
  const attempt = await reserveLoginAttempt(deps.db, realmId, subject, deps.now);
  if (!attempt.ok) {
    throw fail(tooMany(attempt.retryAfterMs, "Too many failed logins. Please try again later or reset your password"));
  }
  const check = user?.passwordHash
    ? await verifyPassword(password, user.passwordHash, deps.config.PASSWORD_PEPPER)
    : await dummyVerify(password).then(() => ({ ok: false, needsRehash: false }));
  if (!user || !check.ok) {
    await recordLoginFailure(deps.db, realmId, subject, attempt, deps.now);
    throw fail(new ApiError("invalid_credentials"));
  }
  if (user.totpOn) {
    // With a second step to come, the count is left as it was (only a completed login clears it),
    // so someone holding the password gets no fresh code tries by logging in again.
    await releaseLoginAttempt(deps.db, realmId, subject);
  }
  if (check.needsRehash) {
    const passwordHash = await hashPassword(password, deps.config.PASSWORD_PEPPER);
    deps.defer(rehashPassword(deps.db, user.id, passwordHash));
  }
  return { user, subject };
}

/**
 * POST /v1/tokens: email and password, then the login seam. The count of failures goes with the
 * login's writes (one D1 batch), unless a second step is still to come. A refused attempt is
 * audited as `login_failed`, naming the account when there is one.
 */
export async function passwordLogin(
  deps: Deps,
  realm: string,
  input: { email: string; password: string; device: LoginDevice },
) {
  const refused = (e: unknown) => {
    if (!(e instanceof LoginFailure)) return;
    // The trail names the account tried when one exists (the answer does not); its actor stays anonymous.
    deps.audit({
      type: "login_failed",
      realm,
      userId: e.userId,
      deviceId: input.device.id,
      detail: { reason: e.code },
    });
  };
  let checked: { user: UserRecord; subject: string } | null = null;
  try {
    checked = await authenticate(deps, realm, input.email, input.password, input.device.id);
    const { user, subject } = checked;
    return await completeLogin(deps, {
      user,
      device: input.device,
      amr: ["pwd"],
      verifiedEmail: true,
      throttleSubject: user.totpOn ? undefined : subject,
      audit: { actor: selfActor(user.id) },
    });
  } catch (e) {
    refused(e);
    // A right password whose login a store failure stopped (503) gives its counted attempt back,
    // so a retry does not start one failure closer to a lockout.
    if (checked && !checked.user.totpOn && !(e instanceof ApiError)) {
      await releaseLoginAttempt(deps.db, realm, checked.subject).catch(() => undefined);
    }
    throw e;
  }
}
