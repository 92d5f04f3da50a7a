import { type AccessClaims, type PublicClaims, signToken } from "../crypto/jwt";
import { newDeviceId, randomString } from "../crypto/random";
import type { Deps } from "../services/deps";
import { toUser } from "../services/users";
import type { Authn, LiveJti, UserSnapshot } from "../storage/device-session";
import { emailVerified } from "../storage/users";

export const DEVICE_ID = /^[A-Za-z0-9]{32}$/;

/** The device id to use: the public token's, else the client's when well-formed, else a new one. */
export function resolveDeviceId(fromToken: string | undefined, fromBody: string | undefined): string {
  if (fromToken && DEVICE_ID.test(fromToken)) return fromToken;
  if (fromBody && DEVICE_ID.test(fromBody)) return fromBody;
  return newDeviceId();
}

/** An anonymous device token (docs/api.md §3). */
export async function mintPublicToken(deps: Deps, realm: string, deviceIdInput?: string) {
  const deviceId = resolveDeviceId(undefined, deviceIdInput);
  const iat = Math.floor(deps.now / 1000);
  const ttl = deps.config.PUBLIC_TTL_SECONDS;
  const claims: PublicClaims = {
    iss: deps.config.ISSUER,
    realm,
    type: "public",
    did: deviceId,
    jti: randomString(24),
    iat,
    exp: iat + ttl,
  };
  return { token: await signToken(deps.keys, claims), device_id: deviceId, expires_in: ttl };
}

export function newAccess(deps: Deps): LiveJti & { iat: number } {
  const iat = Math.floor(deps.now / 1000);
  return { jti: randomString(24), iat, exp: iat + deps.config.ACCESS_TTL_SECONDS };
}

export async function signAccess(
  deps: Deps,
  user: UserSnapshot,
  deviceId: string,
  sid: string,
  access: LiveJti & { iat: number },
  fresh: boolean,
  authn: Authn,
): Promise<string> {
  const audience = deps.config.TOKEN_AUDIENCE;
  const claims: AccessClaims = {
    iss: deps.config.ISSUER,
    aud: audience.length === 1 ? (audience[0] as string) : audience,
    sub: user.id,
    realm: user.realm,
    type: "access",
    did: deviceId,
    sid,
    jti: access.jti,
    iat: access.iat,
    exp: access.exp,
    fresh,
    roles: user.roles,
    email: user.email,
    email_verified: emailVerified(user),
    name: user.fullName,
    amr: authn.amr,
    auth_time: authn.authTime,
  };
  return signToken(deps.keys, claims);
}

export function tokenPair(deps: Deps, user: UserSnapshot, deviceId: string, accessToken: string, refreshToken: string) {
  return {
    access_token: accessToken,
    refresh_token: refreshToken,
    token_type: "Bearer" as const,
    expires_in: deps.config.ACCESS_TTL_SECONDS,
    refresh_expires_in: deps.config.REFRESH_TTL_SECONDS,
    device_id: deviceId,
    user: toUser(user),
  };
}
