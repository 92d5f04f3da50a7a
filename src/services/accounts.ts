import { and, eq, sql } from "drizzle-orm";
import type { AccessClaims } from "../crypto/jwt";
import { hashPassword, verifyPassword } from "../crypto/passwords";
import { randomDigits } from "../crypto/random";
import { ApiError } from "../errors";
// The fields PATCH /v1/users/{id} may change: the package's type is the one definition.
import type { UserPatch } from "../sdk/client";
import {
  type CodeRef,
  checkCode,
  codeSecret,
  codeStillHeld,
  codesSentToday,
  consumeCodeStatement,
  countNothing,
  deleteCodes,
  findCode,
  hashCode,
  issueCode,
  releaseFailure,
  revertIssue,
} from "../storage/codes";
import { isUniqueViolation } from "../storage/db";
import { setPendingEmail, switchEmailStatements } from "../storage/emails";
import { findRealm } from "../storage/realms";
import { type RealmRow, userEmails, users } from "../storage/schema";
import { clearAccountThrottle } from "../storage/throttle";
import {
  findUserByEmail,
  findUserById,
  findUserByPhone,
  hasAdminRole,
  otherAdminExists,
  type UserRecord,
} from "../storage/users";
import { iso } from "../time";
import { assertAdminMfa } from "./auth";
import type { Deps } from "./deps";
import { assertEmailAllowed } from "./domains";
import { deliveryAvailable, notify, notifyQuietly } from "./notifier";
import { provePhone } from "./otp";
import { followUp, retryInPlace } from "./retry";
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
  const set: Partial<typeof users.$inferInsert> = { updatedAt: iso(deps.now) };
  if (patch.full_name !== undefined) set.fullName = patch.full_name;
  if (patch.phone_number !== undefined) set.phoneNumber = patch.phone_number;
  if (patch.image_url !== undefined) set.imageUrl = patch.image_url;
  if (patch.profile !== undefined) set.profile = patch.profile;
  try {
    await deps.db
      .update(users)
      .set(set)
      .where(and(eq(users.id, target.id), eq(users.realm, target.realm)));
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
  await deps.db.batch([
    deps.db
      .update(users)
      .set({ passwordHash, updatedAt: at, passwordChangedAt: at, sessionsValidAfter: at })
      .where(eq(users.id, user.id)),
    deleteCodes(deps.db, claims.realm, [user.id], "reset"),
  ]);
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
    const row = await deps.db.get<{ ok: number }>(sql`SELECT ${otherAdminExists(target.realm, target.id)} AS ok`);
    if (!row?.ok) throw new ApiError("last_admin");
  }
  // The sessions to end, read before the rows go (the device index cascades with them); they end
  // after the deletion, which decides: before it nothing has changed, after it nothing fails the answer.
  const deviceIds = await sessionsOf(deps, target.id);
  // Verification codes (kept per address) stay: their send limits outlive the account, and they
  // are bound to this account's id, so they prove nothing for a later holder of the address.
  const subjects = [target.id];
  if (target.phoneNumber) subjects.push(target.phoneNumber);
  const [deleted] = await deps.db.batch([
    deps.db
      .delete(users)
      .where(
        and(
          eq(users.id, target.id),
          eq(users.realm, target.realm),
          // Decided in the statement too, so two admins deleting each other at once cannot both win.
          sql`(NOT ${hasAdminRole} OR ${otherAdminExists(target.realm, target.id)})`,
        ),
      )
      .returning({ id: users.id }),
    deps.db
      .delete(userEmails)
      .where(and(eq(userEmails.userId, target.id), sql`NOT EXISTS (SELECT 1 FROM users WHERE id = ${target.id})`)),
    deleteCodes(deps.db, target.realm, subjects),
  ]);
  if (deleted.length === 0 && (await findUserById(deps.db, target.realm, target.id))) throw new ApiError("last_admin");
  await endSessionsOf(deps, target.realm, target.id, deviceIds);
  return { userId: target.id, byAdmin: !self };
}

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
  // The deciding write: the password and the use of the code in one batch, the update only while
  // the code is still there, so a lost store leaves both as they were (the code still works), and
  // of two concurrent uses one wins. sessions_valid_after: also a session the device index lost
  // ends at its next refresh (docs/api.md §16).
  let consumed: unknown[];
  try {
    [, consumed] = await deps.db.batch([
      deps.db
        .update(users)
        .set({ passwordHash, updatedAt: at, passwordChangedAt: at, sessionsValidAfter: at })
        .where(and(eq(users.id, user.id), codeStillHeld(ref, codeHash))),
      consumeCodeStatement(deps.db, ref, codeHash),
      // A correct try is not a failed one: its slot of the daily budget goes back (checkCode).
      releaseFailure(deps.db, ref, deps.now),
    ]);
  } catch (e) {
    // Nothing was written; the correct try's slot goes back all the same.
    await releaseFailure(deps.db, ref, deps.now).then(undefined, () => {});
    throw e;
  }
  if (consumed.length === 0) return { ok: false, userId: user.id, reason: "raced" };
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

async function reload(deps: Deps, user: UserRecord): Promise<UserRecord> {
  const fresh = await findUserById(deps.db, user.realm, user.id);
  if (!fresh) throw new ApiError("not_found", "User not found");
  return fresh;
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
    await retryInPlace(() =>
      deps.db.batch([deps.db.delete(users).where(eq(users.id, user.id)), deleteCodes(deps.db, user.realm, [user.id])]),
    );
    throw e;
  }
}
