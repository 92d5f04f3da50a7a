import { and, eq } from "drizzle-orm";
import { dummyVerify, hashPassword, verifyPassword } from "../crypto/passwords";
import { ApiError, tooMany } from "../errors";
import { isUniqueViolation, violatedColumn } from "../storage/db";
import { activeAdminExists } from "../storage/emails";
import { isFamiliarDevice } from "../storage/login-devices";
import { findRealm } from "../storage/realms";
import { users } from "../storage/schema";
import {
  clearLoginFailures,
  recordLoginFailure,
  releaseLoginAttempt,
  reserveLoginAttempt,
  throttleSubject,
} from "../storage/throttle";
import {
  emailVerified,
  findUserByEmail,
  findUserById,
  hasAdminRole,
  insertUser,
  newUserRow,
  type UserRecord,
} from "../storage/users";
import { checkCaptcha } from "./captcha";
import type { Deps } from "./deps";
import { assertEmailAllowed } from "./domains";
import { notifyQuietly } from "./notifier";
import { provePhone } from "./otp";
import { emailUnverified, verificationRequired } from "./verification";

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
      const admins = await deps.db
        .select({ email: users.email })
        .from(users)
        .where(and(eq(users.realm, user.realm), eq(users.status, "active"), hasAdminRole));
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
  opts: { byAdmin?: boolean; ip?: string | null } = {},
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
  try {
    await insertUser(deps.db, row);
  } catch (e) {
    if (!isUniqueViolation(e)) {
      // Not written (the store was lost): the phone's code works again for the client's retry.
      await giveBack();
      throw e;
    }
    if (violatedColumn(e) === "phone_number") throw new ApiError("phone_in_use");
    throw new ApiError("user_exists");
  }
  return {
    ...row,
    emails: [{ email: input.email, current: true, verified: false, added_at: row.createdAt }],
    totpOn: false,
  };
}

/** A failed login, with the account it was for (null when the email has none): for the audit trail only. */
export class LoginFailure extends ApiError {
  readonly userId: string | null;
  constructor(base: ApiError, userId: string | null) {
    super(base.code, base.message, { fields: base.fields, headers: base.headers });
    this.userId = userId;
  }
}

/**
 * Checks an email and password. Unknown emails spend the time of a real hash check and get
 * the same error, so neither status nor timing tells whether an account exists. Failures throw
 * a LoginFailure, which names the account for the audit trail (never on the wire).
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
): Promise<UserRecord> {
  const [familiar, user] = await Promise.all([
    isFamiliarDevice(deps.db, realmId, email, deviceId),
    findUserByEmail(deps.db, realmId, email),
  ]);
  const subject = throttleSubject(email, familiar ? deviceId : null);
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
  } else {
    // The reset is written while the session starts, and may land just after the answer: it is sent
    // to D1 before this request answers, so the account's next attempt is counted after it.
    deps.defer(clearLoginFailures(deps.db, realmId, subject));
  }
  // Status is revealed only to someone who knows the password.
  try {
    assertActive(user);
  } catch (e) {
    throw fail(e as ApiError);
  }
  // Only a verified account reads its realm's setting: the common login costs no extra read.
  if (!emailVerified(user)) {
    const realm = await findRealm(deps.db, realmId);
    if (realm && verificationRequired(realm)) throw fail(emailUnverified());
  }
  if (check.needsRehash) {
    const passwordHash = await hashPassword(password, deps.config.PASSWORD_PEPPER);
    deps.defer(deps.db.update(users).set({ passwordHash }).where(eq(users.id, user.id)));
  }
  return user;
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
  if (user.status === "disabled") throw new ApiError("account_disabled");
  if (user.status === "pending") throw new ApiError("account_pending");
  return user;
}
