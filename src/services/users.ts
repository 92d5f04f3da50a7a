import { dummyVerify, hashPassword, verifyPassword } from "../crypto/passwords";
import { newId } from "../crypto/random";
import { ApiError } from "../errors";
import { isUniqueViolation, violatedColumn } from "../storage/db";
import { findRealm } from "../storage/realms";
import { users } from "../storage/schema";
import { findUserByEmail, findUserById, insertUser, type UserRecord } from "../storage/users";
import type { Deps } from "./deps";
import { assertEmailAllowed } from "./domains";
import { eq } from "drizzle-orm";

/** The User of api.md §4. Never includes the password hash. */
export function toUser(u: UserRecord) {
  return {
    id: u.id,
    realm: u.realm,
    email: u.email,
    emails: u.emails,
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
export const toPublicUser = (u: UserRecord) => ({ id: u.id, full_name: u.fullName, image_url: u.imageUrl });

export interface SignUpInput {
  email: string;
  password?: string;
  full_name: string;
  phone_number?: string;
  profile?: Record<string, unknown>;
  roles?: string[];
}

/**
 * Creates a user (api.md §4, §6). The realm's registration mode and domain rules decide first;
 * the unique index on (realm, email) decides races, so concurrent sign-ups make one user.
 */
export async function signUp(
  deps: Deps,
  realmId: string,
  input: SignUpInput,
  opts: { byAdmin?: boolean } = {},
): Promise<UserRecord> {
  const realm = await findRealm(deps.db, realmId);
  if (!realm) throw new ApiError("realm_not_found");
  if (!opts.byAdmin && !input.password) {
    throw new ApiError("validation_failed", undefined, { fields: { password: "is required" } });
  }
  await assertEmailAllowed(deps.db, realm, input.email, { byAdmin: opts.byAdmin });
  if (await findUserByEmail(deps.db, realmId, input.email)) throw new ApiError("user_exists");

  const now = new Date(deps.now).toISOString();
  const roles = new Set(opts.byAdmin && input.roles?.length ? input.roles : ["user"]);
  if (deps.config.BOOTSTRAP_ADMIN_EMAILS.includes(input.email)) roles.add("admin");
  const row = {
    id: newId(deps.now),
    realm: realmId,
    email: input.email,
    phoneNumber: input.phone_number ?? null,
    passwordHash: input.password ? await hashPassword(input.password, deps.config.PASSWORD_PEPPER) : null,
    fullName: input.full_name,
    imageUrl: null,
    roles: [...roles],
    status: (realm.approvalRequired && !opts.byAdmin ? "pending" : "active") as UserRecord["status"],
    source: (opts.byAdmin ? "admin" : "password") as UserRecord["source"],
    profile: input.profile ?? {},
    createdAt: now,
    updatedAt: now,
  };
  try {
    await insertUser(deps.db, row);
  } catch (e) {
    if (!isUniqueViolation(e)) throw e;
    if (violatedColumn(e) === "phone_number") throw new ApiError("phone_in_use");
    throw new ApiError("user_exists");
  }
  return { ...row, emails: [{ email: input.email, current: true, added_at: now }] };
}

/**
 * Checks an email and password. Unknown emails spend the time of a real hash check and get
 * the same error, so neither status nor timing tells whether an account exists.
 */
export async function authenticate(deps: Deps, realmId: string, email: string, password: string): Promise<UserRecord> {
  const user = await findUserByEmail(deps.db, realmId, email);
  if (!user || !user.passwordHash) {
    await dummyVerify(password);
    throw new ApiError("invalid_credentials");
  }
  const check = await verifyPassword(password, user.passwordHash, deps.config.PASSWORD_PEPPER);
  if (!check.ok) throw new ApiError("invalid_credentials");
  // Status is revealed only to someone who knows the password.
  if (user.status === "pending") throw new ApiError("account_pending");
  if (user.status === "disabled") throw new ApiError("account_disabled");
  if (check.needsRehash) {
    const passwordHash = await hashPassword(password, deps.config.PASSWORD_PEPPER);
    deps.defer(deps.db.update(users).set({ passwordHash }).where(eq(users.id, user.id)));
  }
  return user;
}

/** Loads the user of a token; a token whose user is gone or locked gets the 403 of api.md §2. */
export async function requireUser(deps: Deps, realm: string, id: string): Promise<UserRecord> {
  const user = await findUserById(deps.db, realm, id);
  if (!user) throw new ApiError("user_not_found");
  if (user.status === "disabled") throw new ApiError("account_disabled");
  if (user.status === "pending") throw new ApiError("account_pending");
  return user;
}
