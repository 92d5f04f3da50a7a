import type { AccessClaims } from "../crypto/jwt";
import { hashPassword, verifyPassword } from "../crypto/passwords";
import { ApiError } from "../errors";
// The fields PATCH /v1/users/{id} may change: the package's type is the one definition.
import type { UserPatch } from "../sdk/client";
import { deleteCodes } from "../storage/codes";
import { isUniqueViolation } from "../storage/db";
import { setPendingEmail, switchEmailStatements } from "../storage/emails";
import { findRealm } from "../storage/realms";
import type { RealmRow } from "../storage/schema";
import {
  anotherAdminExists,
  deleteUserRows,
  type UserFields,
  updateUserFields,
  writeNewPassword,
} from "../storage/user-writes";
import { findUserByEmail, findUserById, findUserByPhone, type UserRecord } from "../storage/users";
import { iso } from "../time";
import { assertAdminMfa } from "./auth";
import type { Deps } from "./deps";
import { assertEmailAllowed } from "./domains";
import { notifyQuietly } from "./notifier";
import { provePhone } from "./otp";
import { retryInPlace } from "./retry";
import { accountChanged, endAllSessions, endSessionsOf, reaffirmSession, sessionsOf } from "./sessions";
import { requireUser } from "./users";
import {
  addressProven,
  sendVerification,
  sendVerificationNow,
  spendVerification,
  VERIFY_TTL_MS,
  verificationRequired,
} from "./verification";

const isAdmin = (u: UserRecord) => u.roles.includes("admin");

/**
 * The user a `{id|me}` route acts on: oneself, or for an admin anyone of the realm
 * (404 not_found when there is none). Anyone else: 403 forbidden, whether or not the id exists.
 */
async function resolveTarget(deps: Deps, caller: UserRecord, id: string, claims: AccessClaims): Promise<UserRecord> {
  if (id === "me" || id === caller.id) return caller;
  if (!isAdmin(caller)) throw new ApiError("forbidden");
  await assertAdminMfa(deps, caller.realm, claims.amr);
  const user = await findUserById(deps.db, caller.realm, id);
  if (!user) throw new ApiError("not_found", "User not found");
  return user;
}

/** PATCH /v1/users/{id|me}: self or admin. The unique index on (realm, phone) decides races. */
export async function updateUser(deps: Deps, claims: AccessClaims, id: string, patch: UserPatch): Promise<UserRecord> {
  const caller = await requireUser(deps, claims.realm, claims.sub);
  const target = await resolveTarget(deps, caller, id, claims);
  if (patch.phone_number && patch.phone_number !== target.phoneNumber && target.id === caller.id) {
    // A number logs in by OTP, so whoever adds it must hold it: otherwise anyone could attach a
    // stranger's number and receive that person's OTP logins. Admins editing others are trusted
    // (the audit names the admin). The proof comes first, so without the code nothing tells
    // whether another account holds the number.
    if (!patch.phone_otp) {
      throw new ApiError(
        "validation_failed",
        "Prove the new number: request a code with POST /v1/otp, then send it as phone_otp",
        {
          fields: { phone_otp: "is required to add or change a phone number" },
        },
      );
    }
    await provePhone(deps, target.realm, patch.phone_number, patch.phone_otp);
    const holder = await findUserByPhone(deps.db, target.realm, patch.phone_number);
    if (holder && holder.id !== target.id) throw new ApiError("phone_in_use");
  }
  const set: UserFields = { updatedAt: iso(deps.now) };
  if (patch.full_name !== undefined) set.fullName = patch.full_name;
  if (patch.phone_number !== undefined) set.phoneNumber = patch.phone_number;
  if (patch.image_url !== undefined) set.imageUrl = patch.image_url;
  if (patch.profile !== undefined) set.profile = patch.profile;
  try {
    await updateUserFields(deps.db, target.realm, target.id, set);
  } catch (e) {
    if (isUniqueViolation(e)) throw new ApiError("phone_in_use");
    throw e;
  }
  await accountChanged(deps, target.realm, target.id);
  return reload(deps, target);
}

/**
 * The credential check before a change of email or password. With a password: the current one
 * (401 invalid_credentials when wrong). Without one (phone users), a fresh token stands in for
 * it, so a stolen refreshed token cannot attach an email and take the account over by reset.
 */
async function assertCredential(deps: Deps, user: UserRecord, claims: AccessClaims, current: string | undefined) {
  if (!user.passwordHash) {
    if (claims.fresh !== true) throw new ApiError("fresh_token_required");
    return;
  }
  if (current === undefined) {
    throw new ApiError("validation_failed", undefined, { fields: { current_password: "is required" } });
  }
  const check = await verifyPassword(current, user.passwordHash, deps.config.PASSWORD_PEPPER);
  if (!check.ok) throw new ApiError("invalid_credentials", "The current password is not correct");
}

export type EmailChangeResult =
  | { kind: "unchanged" | "changed"; user: UserRecord }
  | { kind: "pending"; user: UserRecord; pending_email: string; expires_in: number };

/**
 * PUT /v1/users/me/email (docs/api.md §4): the new email is appended to the history (or, when this
 * user held it before, made current again without a second row, keeping its `verified`). Another
 * user's current email is 409 email_in_use; the unique index users_realm_email decides concurrent
 * claims. A new address starts unverified and is sent a code. In a realm that requires
 * verification an address not yet proven by this user waits for its code instead (`pending`).
 */
export async function changeEmail(
  deps: Deps,
  claims: AccessClaims,
  input: { email: string; current_password?: string },
): Promise<EmailChangeResult> {
  const user = await requireUser(deps, claims.realm, claims.sub);
  await assertCredential(deps, user, claims, input.current_password);
  const realm = await findRealm(deps.db, claims.realm);
  if (!realm) throw new ApiError("realm_not_found");
  await assertChangeAllowed(deps, realm, input.email);
  if (input.email === user.email) return { kind: "unchanged", user };
  const holder = await findUserByEmail(deps.db, claims.realm, input.email);
  if (holder && holder.id !== user.id) throw new ApiError("email_in_use");
  const proven = user.emails.some((e) => e.email === input.email && e.verified);
  if (verificationRequired(realm) && !proven) {
    await sendVerificationNow(deps, user, input.email);
    await setPendingEmail(deps.db, user.id, input.email, iso(deps.now));
    return { kind: "pending", user, pending_email: input.email, expires_in: VERIFY_TTL_MS / 1000 };
  }
  const changed = await switchEmail(deps, user, input.email);
  if (!proven) await sendVerification(deps, changed, input.email);
  return { kind: "changed", user: changed };
}

/**
 * Block rules apply to a new address; in an allowlist realm it must also be of an allowed domain
 * (else one could sign up at an allowed domain and then move anywhere). The closed mode is about
 * sign-up, not about existing accounts.
 */
async function assertChangeAllowed(deps: Deps, realm: RealmRow, email: string) {
  await assertEmailAllowed(deps.db, realm, email, { ignoreMode: realm.registration !== "allowlist" });
}

/**
 * PUT /v1/users/me/email/verify: the code sent to the pending address completes the change; the
 * address is then current and verified. No pending change, or a wrong, used or expired code:
 * 400 invalid_code.
 */
export async function completeEmailChange(
  deps: Deps,
  claims: AccessClaims,
  code: string,
): Promise<{ user: UserRecord; admin: boolean; email: string } | { user: null; reason: string }> {
  const user = await requireUser(deps, claims.realm, claims.sub);
  const email = user.pendingEmail;
  const spent = email ? await spendVerification(deps, claims.realm, user.id, email, code) : "no_pending_change";
  if (!email || spent !== "ok") return { user: null, reason: spent };
  const realm = await findRealm(deps.db, claims.realm);
  if (!realm) throw new ApiError("realm_not_found");
  // The rules may have changed while the code was on its way.
  await assertChangeAllowed(deps, realm, email);
  const changed = await switchEmail(deps, user, email);
  const { admin } = await addressProven(deps, changed, email);
  return { user: await reload(deps, changed), admin, email };
}

/** Makes `email` the user's current address (history row kept or added), and tells the old address. */
async function switchEmail(deps: Deps, user: UserRecord, email: string): Promise<UserRecord> {
  try {
    await deps.db.batch([
      ...switchEmailStatements(deps.db, user.id, email, iso(deps.now)),
      // A reset code mailed to the old address must not outlive the change.
      deleteCodes(deps.db, user.realm, [user.id], "reset"),
    ]);
  } catch (e) {
    if (isUniqueViolation(e)) throw new ApiError("email_in_use");
    throw e;
  }
  if (user.email) {
    // The old address hears of every change, so an owner whose account was taken learns of it.
    deps.defer(
      notifyQuietly(deps, {
        type: "email_changed",
        channel: "email",
        to: user.email,
        realm: user.realm,
        data: { new_email: email },
      }),
    );
  }
  await accountChanged(deps, user.realm, user.id);
  // Committed: the answer must not fail now, and the read is safe to repeat.
  return retryInPlace(() => reload(deps, user));
}

/** PUT /v1/users/me/password: sets the password; every other device of the user is logged out. */
export async function changePassword(
  deps: Deps,
  claims: AccessClaims,
  input: { password: string; current_password?: string },
): Promise<{ firstPassword: boolean }> {
  const user = await requireUser(deps, claims.realm, claims.sub);
  await assertCredential(deps, user, claims, input.current_password);
  const passwordHash = await hashPassword(input.password, deps.config.PASSWORD_PEPPER);
  const at = iso(deps.now);
  // Sessions begun before now end (sessions_valid_after), except this one, which counts as begun now.
  await reaffirmSession(deps, claims);
  await writeNewPassword(deps.db, claims.realm, user.id, passwordHash, at);
  // Every other session ends; this one keeps going, with the account's new updated_at.
  await endAllSessions(deps, claims.realm, user.id, claims.did);
  await accountChanged(deps, claims.realm, user.id, [claims.did]);
  return { firstPassword: !user.passwordHash };
}

/**
 * DELETE /v1/users/{id|me}: oneself with a fresh token, or an admin anyone of the realm.
 * The rows go first (emails and the device index cascade; codes are deleted), so the email may
 * register again; then every session ends (a session missed there finds no account at its next
 * refresh or strict check). The realm's last admin cannot be deleted
 * (409 last_admin, as for role changes in docs/api.md §6).
 */
export async function deleteUser(
  deps: Deps,
  claims: AccessClaims,
  id: string,
): Promise<{ userId: string; byAdmin: boolean }> {
  const caller = await requireUser(deps, claims.realm, claims.sub);
  const self = id === "me" || id === caller.id;
  if (self && claims.fresh !== true) throw new ApiError("fresh_token_required");
  const target = await resolveTarget(deps, caller, id, claims);
  if (isAdmin(target)) {
    if (!(await anotherAdminExists(deps.db, target.realm, target.id))) throw new ApiError("last_admin");
  }
  // The sessions to end, read before the rows go (the device index cascades with them); they end
  // after the deletion, which decides: before it nothing has changed, after it nothing fails the answer.
  const deviceIds = await sessionsOf(deps, target.id);
  // Verification codes (kept per address) stay: their send limits outlive the account, and they
  // are bound to this account's id, so they prove nothing for a later holder of the address.
  const subjects = [target.id];
  if (target.phoneNumber) subjects.push(target.phoneNumber);
  // Decided in the statement too, so two admins deleting each other at once cannot both win.
  const deleted = await deleteUserRows(deps.db, target.realm, target.id, subjects);
  if (!deleted && (await findUserById(deps.db, target.realm, target.id))) throw new ApiError("last_admin");
  await endSessionsOf(deps, target.realm, target.id, deviceIds);
  return { userId: target.id, byAdmin: !self };
}

async function reload(deps: Deps, user: UserRecord): Promise<UserRecord> {
  const fresh = await findUserById(deps.db, user.realm, user.id);
  if (!fresh) throw new ApiError("not_found", "User not found");
  return fresh;
}

export { completeReset, type ResetResult, requestReset, sendWelcome } from "./reset";
