import { ApiError } from "../errors";
import type { AuditEvent } from "../services/audit";
import type { Deps } from "../services/deps";
import { accountForIdentity } from "../services/identities";
import { completeLogin } from "../services/login";
import type { UserRecord } from "../storage/users";
import type { ProviderIdentity } from "./oidc";

/**
 * Signs the person in: the linking rules of §13, then a session like a password login's, with
 * `amr: ["fed"]`. An account with a second factor must still pass it (docs/api.md §12): the
 * provider vouches for one factor only.
 */
export async function federatedLogin(
  d: Deps,
  realm: string,
  deviceId: string,
  ident: ProviderIdentity,
  input: { description?: string; name?: string },
) {
  let account: { user: UserRecord; created: boolean; admin: boolean };
  try {
    account = await accountForIdentity(d, realm, ident, input.name);
  } catch (e) {
    if (e instanceof ApiError) {
      d.audit({ type: "login_failed", realm, deviceId, detail: { reason: e.code, provider: ident.provider } });
    }
    throw e;
  }
  const { user, created, admin } = account;
  const before: AuditEvent[] = [];
  if (created) before.push({ type: "signup", realm, userId: user.id, deviceId, detail: { provider: ident.provider } });
  if (admin) before.push({ type: "bootstrap_admin", realm, userId: user.id, deviceId });
  // The seam's second-factor gate applies: an account with TOTP on answers 401 mfa_required.
  let pair: Awaited<ReturnType<typeof completeLogin>>;
  try {
    pair = await completeLogin(d, {
      user,
      device: { id: deviceId, description: input.description ?? null },
      amr: ["fed"],
      audit: { detail: { method: "oidc", provider: ident.provider } },
      before,
    });
  } catch (e) {
    // The account was made or linked whatever the login's outcome: its events stand.
    for (const event of before) d.audit(event);
    throw e;
  }
  return { ...pair, created };
}
