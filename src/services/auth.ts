import { secondFactorDone } from "../auth-methods/amr";
import type { AccessClaims } from "../crypto/jwt";
import { verifyToken } from "../crypto/jwt";
import { ApiError } from "../errors";
import { validAfterMs } from "../storage/device-session";
import { kvKeys } from "../storage/keys";
import { findRealm } from "../storage/realms";
import { knownNotRevoked, rememberNotRevoked, revocationEpoch } from "../storage/revocations";
import { findUserById } from "../storage/users";
import type { Deps } from "./deps";
import { checkSession } from "./sessions";
import { assertActive } from "./users";

export interface AuthOptions {
  /**
   * Ask the device's Durable Object too: authoritative and immediate (docs/api.md §2); and read the
   * account, so its current status, roles and sessions_valid_after decide (docs/api.md §16).
   */
  strict?: boolean;
  /** Require a token minted by a credential check, not by refresh. */
  fresh?: boolean;
  /** Require every one of these roles (as the token states them; with `strict`, as the account has them now). */
  roles?: string[];
  /** Require a login that checked two factors (`mfa` in `amr`, docs/api.md §12): 403 mfa_required otherwise. */
  mfa?: boolean;
}

/**
 * Verifies an access token for a realm: signature and claims, the KV blacklist, and with
 * `strict` the device's session. Throws ApiError with the codes of docs/api.md §2.
 *
 * With `strict`, the account is read from D1 as well: a token of a user deleted, disabled or
 * pending meanwhile gets the 403 of docs/api.md §2, and `roles` is judged by the account's current
 * roles (a demoted admin fails at once). Without it, roles are the token's (up to its lifetime).
 *
 * Per isolate, the signature check is remembered per token string (crypto/jwt.ts; expiry is
 * still checked on every call) and a "not revoked" answer of the blacklist for a few seconds
 * (storage/revocations.ts). Strict checks ask the Durable Object and KV every time.
 */
export async function verifyAccess(
  deps: Deps,
  realm: string,
  token: string,
  opts: AuthOptions = {},
): Promise<AccessClaims> {
  const claims = (await verifyToken(deps.keys, token, {
    issuer: deps.config.ISSUER,
    audience: deps.config.TOKEN_AUDIENCE,
    realm,
    type: "access",
    now: deps.now,
  })) as AccessClaims;
  if (!opts.strict && knownNotRevoked(claims.jti, deps.now)) return checkClaims(claims, opts);
  const readAt = revocationEpoch();
  const blacklisted = deps.env.TOKENS.get(kvKeys.blacklist(claims.jti)).then((v) => v !== null);
  if (opts.strict) {
    // Strict: the account as D1 has it now, and the device's Durable Object, which is authoritative
    // and immediate; the blacklist is asked meanwhile.
    // The two are asked at once; the session's start is compared with the account's mark here.
    const [user, session] = await Promise.all([findUserById(deps.db, realm, claims.sub), checkSession(deps, claims)]);
    const validAfter = validAfterMs(user?.sessionsValidAfter);
    // A session begun before the account's sessions_valid_after is over (docs/api.md §16).
    const verdict =
      session.verdict !== "session_revoked" && validAfter !== null && session.begun < validAfter
        ? "session_revoked"
        : session.verdict;
    if (verdict !== "ok") throw new ApiError(verdict);
    if (await blacklisted) throw new ApiError("token_revoked");
    // The same 403s as the HTTP routes give a token whose account is gone or locked (docs/api.md §2).
    if (!user) throw new ApiError("user_not_found");
    assertActive(user);
    return checkClaims(claims, opts, user.roles);
  } else if (await blacklisted) {
    throw new ApiError("token_revoked");
  } else {
    rememberNotRevoked(claims.jti, deps.now, readAt);
  }
  return checkClaims(claims, opts);
}

/** `fresh` and `roles`; roles as the token states them unless the account's current ones are given. */
function checkClaims(claims: AccessClaims, opts: AuthOptions, roles: string[] = claims.roles): AccessClaims {
  if (opts.fresh && claims.fresh !== true) throw new ApiError("fresh_token_required");
  if (opts.roles?.some((r) => !roles.includes(r))) throw new ApiError("forbidden");
  if (opts.mfa && !secondFactorDone(claims.amr)) throw mfaForbidden();
  return claims;
}

/** 403 mfa_required: a valid token, but its login checked one factor where two are required. */
export const mfaForbidden = () =>
  new ApiError("mfa_required", "This needs a login with a second factor", { status: 403 });

/**
 * The realm's `admin_mfa_required` (docs/api.md §12): an admin whose login checked one factor may not
 * act as an admin there (403 mfa_required). Asked only once the caller is known to be an admin.
 */
export async function assertAdminMfa(deps: Deps, realm: string, amr: string[] | undefined): Promise<void> {
  if (secondFactorDone(amr)) return;
  if ((await findRealm(deps.db, realm))?.adminMfaRequired) throw mfaForbidden();
}

/** The bearer token of an Authorization header, or null. */
export function bearer(header: string | undefined | null): string | null {
  if (!header) return null;
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return m ? (m[1] as string) : null;
}
