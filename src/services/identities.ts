import type { ProviderIdentity } from "../auth-methods/oidc";
import { ApiError } from "../errors";
import { isUniqueViolation } from "../storage/db";
import { activeAdminExists } from "../storage/emails";
import { findIdentity, type IdentityRow, insertFederatedUser, linkIdentityStatement } from "../storage/identities";
import { findRealm } from "../storage/realms";
import { emailVerified, findUserByEmail, findUserById, newUserRow, type UserRecord } from "../storage/users";
import { iso } from "../time";
import type { Deps } from "./deps";
import { assertEmailAllowed } from "./domains";
import { assertActive, noticeApprovalNeeded } from "./users";
import { emailUnverified, verificationRequired } from "./verification";

/**
 * Which account an identity provider's person signs in to (docs/api.md §13):
 * 1. a `(provider, subject)` already linked signs in to its account;
 * 2. else, when the provider vouches for the address (`email_verified`) and the realm's account
 *    whose current email it is has proven it too, the identity is linked to that account;
 * 3. else, when some account holds the address (either side unverified), 409 account_exists and
 *    nothing is linked: nobody can pre-register a victim's address and wait for their login, and no
 *    unproven provider address takes over an account;
 * 4. else a new account (`source: oidc`), under the realm's registration mode and domain rules.
 */
export async function accountForIdentity(
  deps: Deps,
  realm: string,
  ident: ProviderIdentity,
  name?: string,
): Promise<{ user: UserRecord; created: boolean; admin: boolean }> {
  const linked = await findIdentity(deps.db, realm, ident.provider, ident.subject);
  if (linked) {
    const user = await findUserById(deps.db, realm, linked.userId);
    if (!user) throw new ApiError("user_not_found");
    return { user: await assertMaySignIn(deps, user), created: false, admin: false };
  }
  if (ident.email) {
    const holder = await findUserByEmail(deps.db, realm, ident.email);
    if (holder) {
      if (!ident.emailVerified || !emailVerified(holder)) throw new ApiError("account_exists");
      await assertMaySignIn(deps, holder);
      await link(deps, holder.id, realm, ident);
      return { user: holder, created: false, admin: false };
    }
  }
  return createFederated(deps, realm, ident, name);
}

/** Status and the realm's verification rule, as for a password login. */
async function assertMaySignIn(deps: Deps, user: UserRecord): Promise<UserRecord> {
  assertActive(user);
  if (!emailVerified(user) && user.email) {
    const realm = await findRealm(deps.db, user.realm);
    if (realm && verificationRequired(realm)) throw emailUnverified();
  }
  return user;
}

const identityRow = (deps: Deps, userId: string, realm: string, ident: ProviderIdentity): IdentityRow => ({
  realm,
  provider: ident.provider,
  subject: ident.subject,
  userId,
  email: ident.email,
  createdAt: iso(deps.now),
});

/**
 * Links an identity to a user. The primary key decides races: an identity linked meanwhile to
 * someone else, or a second identity of the same provider for this user, is 409 identity_in_use.
 */
export async function link(deps: Deps, userId: string, realm: string, ident: ProviderIdentity): Promise<IdentityRow> {
  const row = identityRow(deps, userId, realm, ident);
  try {
    await linkIdentityStatement(deps.db, row);
    return row;
  } catch (e) {
    if (!isUniqueViolation(e)) throw e;
    const existing = await findIdentity(deps.db, realm, ident.provider, ident.subject);
    if (existing?.userId === userId) return existing;
    throw new ApiError(
      "identity_in_use",
      existing
        ? "This identity is already linked to an account"
        : "This account already has an identity of this provider linked; unlink it first",
    );
  }
}

async function createFederated(
  deps: Deps,
  realmId: string,
  ident: ProviderIdentity,
  name?: string,
): Promise<{ user: UserRecord; created: boolean; admin: boolean }> {
  const realm = await findRealm(deps.db, realmId);
  if (!realm) throw new ApiError("realm_not_found");
  const email = ident.email;
  // A provider-verified bootstrap address claims the seat at sign-up (docs/api.md §6), and may
  // register in a closed or allowlist realm that has no active admin yet.
  const listed = email !== null && ident.emailVerified && deps.config.BOOTSTRAP_ADMIN_EMAILS.includes(email);
  const viaSeat = listed && realm.registration !== "open" && !(await activeAdminExists(deps.db, realmId));
  if (email) {
    await assertEmailAllowed(deps.db, realm, email, { byAdmin: viaSeat });
  } else if (realm.registration !== "open") {
    // Domain rules cannot judge an account without an address.
    throw new ApiError(realm.registration === "closed" ? "registration_closed" : "domain_not_allowed");
  }
  if (verificationRequired(realm) && !ident.emailVerified) throw emailUnverified();
  const pending = realm.approvalRequired || viaSeat;
  const row = newUserRow(deps.now, {
    realm: realmId,
    email,
    phoneNumber: null,
    passwordHash: null,
    fullName: name ?? ident.name,
    roles: ["user"],
    status: pending ? "pending" : "active",
    source: "oidc",
  });
  const verifiedAt = ident.emailVerified ? row.createdAt : null;
  let admin: boolean;
  try {
    ({ admin } = await insertFederatedUser(
      deps.db,
      row,
      verifiedAt,
      identityRow(deps, row.id, realmId, ident),
      listed,
    ));
  } catch (e) {
    if (!isUniqueViolation(e)) throw e;
    // Someone registered the address, or the same identity signed up, at the same moment.
    const raced = await findIdentity(deps.db, realmId, ident.provider, ident.subject);
    if (!raced) throw new ApiError("account_exists");
    const user = await findUserById(deps.db, realmId, raced.userId);
    if (!user) throw new ApiError("user_not_found");
    return { user: await assertMaySignIn(deps, user), created: false, admin: false };
  }
  const emails = email ? [{ email, current: true, verified: verifiedAt !== null, added_at: row.createdAt }] : [];
  const base = { ...row, emails, totpOn: false };
  const user: UserRecord = admin ? { ...base, roles: ["user", "admin"], status: "active" } : base;
  if (user.status === "pending") {
    if (realm.approvalRequired && !viaSeat) noticeApprovalNeeded(deps, user);
    throw new ApiError("account_pending");
  }
  return { user, created: true, admin };
}
