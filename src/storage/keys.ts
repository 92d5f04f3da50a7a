/**
 * Every KV key and Durable Object name, built in one place.
 *
 * KV `TOKENS`:
 * - `bl:<jti>` → "1": a revoked access token, kept until the token would have expired
 *   (TTL max(60 s, exp − now), since KV refuses shorter TTLs).
 *
 * Durable Object `DEVICE_SESSIONS`:
 * - named `<realm>:<user id>:<device id>`: the session of one device for one user. Addressing
 *   by user and device together means nobody can reach another user's session by choosing
 *   its device id.
 */
export const kvKeys = {
  blacklist: (jti: string) => `bl:${jti}`,
};

/** The Durable Object name of one device's session. */
export const deviceSessionName = (realm: string, userId: string, deviceId: string) => `${realm}:${userId}:${deviceId}`;

/** KV refuses expirationTtl below 60 seconds. */
export const kvTtl = (seconds: number) => Math.max(60, Math.ceil(seconds));
