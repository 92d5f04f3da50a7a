import { and, eq, isNull } from "drizzle-orm";
import { type AuthorityClaims, authorityAudience, signToken, verifyToken } from "../crypto/jwt";
import { newId, randomString, sha256Hex } from "../crypto/random";
import { ApiError } from "../errors";
import { authorityTokens } from "../storage/schema";
import { iso } from "../time";
import type { Deps } from "./deps";

/** Mints a domain authority token (api.md §6). It is returned once; only its SHA-256 is stored. */
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
  await deps.db.insert(authorityTokens).values({
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
  const rows = await deps.db
    .update(authorityTokens)
    .set({ revokedAt: iso(deps.now) })
    .where(
      and(
        eq(authorityTokens.id, id),
        eq(authorityTokens.realm, realm),
        eq(authorityTokens.domain, domain),
        isNull(authorityTokens.revokedAt),
      ),
    )
    .returning({ id: authorityTokens.id });
  return rows.length > 0;
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
  const rows = await deps.db
    .select()
    .from(authorityTokens)
    .where(and(eq(authorityTokens.id, claims.sub), eq(authorityTokens.realm, realm)))
    .limit(1);
  const row = rows[0];
  if (!row || row.domain !== claims.domain || row.tokenHash !== (await sha256Hex(token))) {
    throw new ApiError("invalid_token");
  }
  if (row.revokedAt) throw new ApiError("token_revoked");
  if (row.expiresAt <= iso(deps.now)) throw new ApiError("token_expired");
  return claims;
}
