import type { AccessClaims } from "../crypto/jwt";
import { verifyToken } from "../crypto/jwt";
import { ApiError } from "../errors";
import { kvKeys } from "../storage/keys";
import type { Deps } from "./deps";
import { knownNotRevoked, rememberNotRevoked, revocationEpoch } from "./revocation-cache";
import { sessionStub } from "./sessions";

export interface AuthOptions {
  /** Ask the device's Durable Object too: authoritative and immediate (api.md §2). */
  strict?: boolean;
  /** Require a token minted by a credential check, not by refresh. */
  fresh?: boolean;
  /** Require every one of these roles (as the token states them). */
  roles?: string[];
}

/**
 * Verifies an access token for a realm: signature and claims, the KV blacklist, and with
 * `strict` the device's session. Throws ApiError with the codes of api.md §2.
 *
 * Per isolate, the signature check is remembered per token string (crypto/jwt.ts; expiry is
 * still checked on every call) and a "not revoked" answer of the blacklist for a few seconds
 * (revocation-cache.ts). Strict checks ask the Durable Object and KV every time.
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
    // Strict: the device's Durable Object is authoritative and immediate; the blacklist is asked too, at the same time.
    const [verdict, listed] = await Promise.all([
      sessionStub(deps, realm, claims.sub, claims.did).check({ sid: claims.sid, jti: claims.jti, now: deps.now }),
      blacklisted,
    ]);
    if (verdict !== "ok") throw new ApiError(verdict);
    if (listed) throw new ApiError("token_revoked");
  } else if (await blacklisted) {
    throw new ApiError("token_revoked");
  } else {
    rememberNotRevoked(claims.jti, deps.now, readAt);
  }
  return checkClaims(claims, opts);
}

function checkClaims(claims: AccessClaims, opts: AuthOptions): AccessClaims {
  if (opts.fresh && claims.fresh !== true) throw new ApiError("fresh_token_required");
  if (opts.roles?.some((r) => !claims.roles.includes(r))) throw new ApiError("forbidden");
  return claims;
}

/** The bearer token of an Authorization header, or null. */
export function bearer(header: string | undefined | null): string | null {
  if (!header) return null;
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return m ? (m[1] as string) : null;
}
