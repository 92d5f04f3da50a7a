import { type AuthorityClaims, authorityAudience, signToken, verifyToken } from "../crypto/jwt";
import { newId, randomString, sha256Hex } from "../crypto/random";
import { ApiError } from "../errors";
import { findAuthorityToken, insertAuthorityToken, markAuthorityRevoked } from "../storage/authority";
import { iso } from "../time";
import type { Deps } from "./deps";

/** Mints a domain authority token (docs/api.md §6). It is returned once; only its SHA-256 is stored. */
export async function createAuthorityToken(
  deps: Deps,
  realm: string,
  domain: string,
  createdBy: string,
  expiresInDays: number,
) {
  const id = newId(deps.now);
  const iat = Math.floor(deps.now / 1000);
  const exp = iat + expiresInDays * 86_400;
  const claims: AuthorityClaims = {
    iss: deps.config.ISSUER,
    aud: authorityAudience(deps.config.ISSUER),
    sub: id,
    realm,
    type: "authority",
    domain,
    jti: randomString(24),
    iat,
    exp,
  };
  const token = await signToken(deps.keys, claims);
  // The row expires with the token (its `exp`, in whole seconds).
  const expiresAt = iso(exp * 1000);
  await insertAuthorityToken(deps.db, {
    id,
    realm,
    domain,
    tokenHash: await sha256Hex(token),
    createdBy,
    createdAt: iso(deps.now),
    expiresAt,
  });
  return { id, token, domain, expires_at: expiresAt };
}

/** Revokes an authority token of a domain at once; false when there is no such live token. */
export async function revokeAuthorityToken(deps: Deps, realm: string, domain: string, id: string): Promise<boolean> {
  return markAuthorityRevoked(deps.db, { id, realm, domain }, iso(deps.now));
}

/**
 * Verifies an authority token: signature and claims, then its D1 row (the stored hash must
 * match, and it must be neither revoked nor expired), so revocation takes effect at once.
 */
export async function verifyAuthority(deps: Deps, realm: string, token: string): Promise<AuthorityClaims> {
  const claims = (await verifyToken(deps.keys, token, {
    issuer: deps.config.ISSUER,
    realm,
    type: "authority",
    now: deps.now,
  })) as AuthorityClaims;
  if (typeof claims.domain !== "string") throw new ApiError("invalid_token");
  const row = await findAuthorityToken(deps.db, realm, claims.sub);
  if (!row || row.domain !== claims.domain || row.tokenHash !== (await sha256Hex(token))) {
    throw new ApiError("invalid_token");
  }
  if (row.revokedAt) throw new ApiError("token_revoked");
  if (row.expiresAt <= iso(deps.now)) throw new ApiError("token_expired");
  return claims;
}
