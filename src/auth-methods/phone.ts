import { ApiError } from "../errors";
import { selfActor } from "../services/audit";
import type { Deps } from "../services/deps";
import { completeLogin } from "../services/login";
import { type OtpFailure, spendOtp } from "../services/otp";
import { followUp } from "../services/retry";
import { isUniqueViolation } from "../storage/db";
import { findRealm } from "../storage/realms";
import { findUserByPhone, insertUser, newUserRow, type UserRecord } from "../storage/users";

export interface OtpVerifyInput {
  phone: string;
  otp: string;
  name?: string;
  fcmToken?: string;
  description?: string;
  deviceId: string;
}

export type OtpVerifyResult =
  | { ok: true; user: UserRecord; created: boolean; pair: Awaited<ReturnType<typeof completeLogin>> }
  | { ok: false; reason: OtpFailure; user: UserRecord | null; created: boolean };

/**
 * POST /v1/otp/verify: spends one try on the number's code and uses it up (spendOtp), then
 * finds or creates the user of the number and logs the device in. The user is looked up only
 * after a correct code, so a wrong guess tells nothing about whether the number has an account.
 */
export async function verifyOtp(deps: Deps, realm: string, input: OtpVerifyInput): Promise<OtpVerifyResult> {
  const spent = await spendOtp(deps, realm, input.phone, input.otp);
  if (spent.result !== "ok") return { ok: false, reason: spent.result, user: null, created: false };
  try {
    return await logInByPhone(deps, realm, input);
  } catch (e) {
    // A store was lost before the session was handed out: the code works again for the retry the
    // client is told to make (a user created meanwhile is found by it).
    if (!(e instanceof ApiError)) await followUp("otp_not_given_back", { realm }, spent.unspend);
    throw e;
  }
}

/** The rest of a verify once the code is used up: the user of the number (created on first use), logged in. */
async function logInByPhone(deps: Deps, realm: string, input: OtpVerifyInput): Promise<OtpVerifyResult> {
  const found = await findOrCreatePhoneUser(deps, realm, input.phone, input.name);
  if ("reason" in found) return { ok: false, reason: found.reason, user: null, created: false };
  const { user, created } = found;
  if (user.status === "disabled") return { ok: false, reason: "account_disabled", user, created };
  if (user.status === "pending") return { ok: false, reason: "account_pending", user, created };

  // The code proved the number, so the user acted; a first sign-in records its sign-up with it.
  const actor = selfActor(user.id);
  const pair = await completeLogin(deps, {
    user,
    device: { id: input.deviceId, description: input.description ?? null, pushToken: input.fcmToken ?? null },
    amr: ["sms"],
    audit: { actor, detail: { method: "otp" } },
    before: created
      ? [{ type: "signup", realm, userId: user.id, deviceId: input.deviceId, actor, detail: { source: "phone" } }]
      : [],
  });
  return { ok: true, user, created, pair };
}

/**
 * The user of a phone number in a realm, created on first use (source `phone`, no email or
 * password). The unique index users_realm_phone decides concurrent first verifies: the loser
 * re-reads the winner's user. A number has no email domain, so a realm that is not open to
 * sign-up (closed, or allowlisting domains) gets no new users by phone; existing ones log in.
 */
async function findOrCreatePhoneUser(
  deps: Deps,
  realmId: string,
  phone: string,
  name: string | undefined,
): Promise<{ user: UserRecord; created: boolean } | { reason: "registration_closed" }> {
  const existing = await findUserByPhone(deps.db, realmId, phone);
  if (existing) return { user: existing, created: false };
  const realm = await findRealm(deps.db, realmId);
  if (!realm) throw new ApiError("realm_not_found");
  if (realm.registration !== "open") return { reason: "registration_closed" };

  const row = newUserRow(deps.now, {
    realm: realmId,
    email: null,
    phoneNumber: phone,
    passwordHash: null,
    fullName: name ?? null,
    roles: ["user"],
    status: realm.approvalRequired ? "pending" : "active",
    source: "phone",
  });
  try {
    await insertUser(deps.db, row);
  } catch (e) {
    if (!isUniqueViolation(e)) throw e;
    const winner = await findUserByPhone(deps.db, realmId, phone);
    if (!winner) throw e;
    return { user: winner, created: false };
  }
  return { user: { ...row, emails: [], totpOn: false }, created: true };
}
