import { hashPassword } from "../crypto/passwords";
import { ApiError } from "../errors";
import { isUniqueViolation, violatedColumn } from "../storage/db";
import { activeAdminExists } from "../storage/emails";
import { findRealm } from "../storage/realms";
import { activeAdminEmails } from "../storage/user-listing";
import {
  emailVerified,
  findUserByEmail,
  findUserById,
  insertUser,
  newUserRow,
  type UserRecord,
} from "../storage/users";
import { selfActor } from "./audit";
import { checkCaptcha } from "./captcha";
import type { Deps } from "./deps";
import { assertEmailAllowed } from "./domains";
import { notifyQuietly } from "./notifier";
import { provePhone } from "./otp";

/** The User of docs/api.md §4. Never includes the password hash. */
export function toUser(u: Omit<UserRecord, "passwordHash">) {
  return {
    id: u.id,
    realm: u.realm,
    email: u.email,
    email_verified: emailVerified(u),
    emails: u.emails.map((e) => ({ ...e, verified: e.verified === true })),
    phone_number: u.phoneNumber,
    full_name: u.fullName,
    image_url: u.imageUrl,
    roles: u.roles,
    status: u.status,
    source: u.source,
    profile: u.profile,
    created_at: u.createdAt,
    updated_at: u.updatedAt,
  };
}

/** The part of a User anyone signed in may see. */
export const toPublicUser = (u: Omit<UserRecord, "passwordHash">) => ({
  id: u.id,
  full_name: u.fullName,
  image_url: u.imageUrl,
});

/**
 * Tells the realm's active admins that a new account waits for approval (docs/api.md §6). Runs after
 * the response; a failed delivery is logged (without addresses), never undoes the sign-up.
 */
export function noticeApprovalNeeded(deps: Deps, user: UserRecord): void {
  deps.defer(
    (async () => {
      const admins = await activeAdminEmails(deps.db, user.realm);
      for (const admin of admins) {
        if (!admin.email) continue;
        await notifyQuietly(deps, {
          type: "approval_needed",
          channel: "email",
          to: admin.email,
          realm: user.realm,
          data: { user_id: user.id, user_email: user.email },
        });
      }
    })(),
  );
}

export interface SignUpInput {
  email: string;
  captcha_token?: string;
  password?: string;
  full_name: string;
  phone_number?: string;
  /** The OTP that POST /v1/otp sent to phone_number: a number is attached only with its proof. */
  phone_otp?: string;
  profile?: Record<string, unknown>;
  roles?: string[];
}

/**
 * Creates a user (docs/api.md §4, §6). The realm's registration mode and domain rules decide first;
 * the unique index on (realm, email) decides races, so concurrent sign-ups make one user.
 */
export async function signUp(
  deps: Deps,
  realmId: string,
  input: SignUpInput,
  opts: { byAdmin?: boolean; ip?: string | null; deviceId?: string; adminId?: string | null } = {},
): Promise<UserRecord> {
  const realm = await findRealm(deps.db, realmId);
  if (!realm) throw new ApiError("realm_not_found");
  // Captcha first: a bot's sign-up costs no further reads (admins creating users need none).
  if (!opts.byAdmin) await checkCaptcha(deps, realm, input.captcha_token, opts.ip ?? null);
  if (!opts.byAdmin && !input.password) {
    throw new ApiError("validation_failed", undefined, { fields: { password: "is required" } });
  }
  if (input.phone_number && !input.phone_otp) {
    throw new ApiError(
      "validation_failed",
      "Prove the number: request a code with POST /v1/otp, then send it as phone_otp",
      { fields: { phone_otp: "is required with phone_number" } },
    );
  }
  // A bootstrap address may sign up in a closed or allowlist realm while the realm has no active
  // admin (someone must be first), but waits as `pending` until its address is proven and the
  // seat claimed (services/verification.ts): typing the address grants nothing. Block rules apply.
  const viaSeat =
    !opts.byAdmin &&
    realm.registration !== "open" &&
    deps.config.BOOTSTRAP_ADMIN_EMAILS.includes(input.email) &&
    !(await activeAdminExists(deps.db, realmId));
  await assertEmailAllowed(deps.db, realm, input.email, { byAdmin: opts.byAdmin || viaSeat });
  if (await findUserByEmail(deps.db, realmId, input.email)) throw new ApiError("user_exists");
  // The proof comes before anything that would tell whether another account holds the number.
  const giveBack =
    input.phone_number && input.phone_otp
      ? await provePhone(deps, realmId, input.phone_number, input.phone_otp)
      : async () => {};

  const roles = new Set(opts.byAdmin && input.roles?.length ? input.roles : ["user"]);
  const pending = !opts.byAdmin && (realm.approvalRequired || viaSeat);
  const row = newUserRow(deps.now, {
    realm: realmId,
    email: input.email,
    phoneNumber: input.phone_number ?? null,
    passwordHash: input.password ? await hashPassword(input.password, deps.config.PASSWORD_PEPPER) : null,
    fullName: input.full_name,
    roles: [...roles],
    status: pending ? "pending" : "active",
    source: opts.byAdmin ? "admin" : "password",
    profile: input.profile ?? {},
  });
  // The sign-up's audit row goes in the user's own batch: both are written, or neither.
  const audit = deps.auditEntry({
    type: "signup",
    realm: realmId,
    userId: row.id,
    deviceId: opts.deviceId,
    actor: opts.adminId ? { kind: "admin", id: opts.adminId } : selfActor(row.id),
    detail: { by_admin: !!opts.byAdmin },
  });
  try {
    await insertUser(deps.db, row, null, [audit.row]);
  } catch (e) {
    if (!isUniqueViolation(e)) {
      // Not written (the store was lost): the phone's code works again for the client's retry.
      await giveBack();
      throw e;
    }
    if (violatedColumn(e) === "phone_number") throw new ApiError("phone_in_use");
    throw new ApiError("user_exists");
  }
  audit.log();
  return {
    ...row,
    emails: [{ email: input.email, current: true, verified: false, added_at: row.createdAt }],
    totpOn: false,
  };
}

/** A signed-in account must be active: 403 account_pending / account_disabled (docs/api.md §3), after a correct credential only. */
export function assertActive(user: Pick<UserRecord, "status">): void {
  if (user.status === "pending") throw new ApiError("account_pending");
  if (user.status === "disabled") throw new ApiError("account_disabled");
}

/** Loads the user of a token; a token whose user is gone or locked gets the 403 of docs/api.md §2. */
export async function requireUser(deps: Deps, realm: string, id: string): Promise<UserRecord> {
  const user = await findUserById(deps.db, realm, id);
  if (!user) throw new ApiError("user_not_found");
  assertActive(user);
  return user;
}
