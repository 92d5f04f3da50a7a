import { and, eq, sql } from "drizzle-orm";
import { secondFactorDone } from "../auth-methods/amr";
import { type AccessClaims, type PublicClaims, signToken } from "../crypto/jwt";
import { newDeviceId, randomString, sha256Hex } from "../crypto/random";
import { ApiError } from "../errors";
import { changedRows } from "../storage/db";
import {
  type Authn,
  type DeviceView,
  type LiveJti,
  newDevice,
  parseRefreshToken,
  type RefreshResult,
  type UserSnapshot,
} from "../storage/device-session";
import { deviceSessionName, kvKeys, kvTtl } from "../storage/keys";
import { rememberLoginDevice } from "../storage/login-devices";
import { insertMfaToken } from "../storage/mfa";
import { devices } from "../storage/schema";
import { emailVerified, findUserById, setSessionsValidAfter } from "../storage/users";
import { iso } from "../time";
import type { Deps } from "./deps";
import { forgetNotRevoked } from "./revocation-cache";
import { toUser } from "./users";

const DEVICE_ID = /^[A-Za-z0-9]{32}$/;

/** The device id to use: the public token's, else the client's when well-formed, else a new one. */
export function resolveDeviceId(fromToken: string | undefined, fromBody: string | undefined): string {
  if (fromToken && DEVICE_ID.test(fromToken)) return fromToken;
  if (fromBody && DEVICE_ID.test(fromBody)) return fromBody;
  return newDeviceId();
}

export function sessionStub(deps: Deps, realm: string, userId: string, deviceId: string) {
  const ns = deps.env.DEVICE_SESSIONS;
  return ns.get(ns.idFromName(deviceSessionName(realm, userId, deviceId)));
}

/** Puts access tokens on the KV blacklist until each would have expired. */
export async function blacklist(deps: Deps, jtis: LiveJti[]): Promise<void> {
  if (!jtis.length) return;
  const nowSec = Math.floor(deps.now / 1000);
  // This isolate's "not revoked" answers for these tokens go, before and after the writes.
  forgetNotRevoked(jtis.map((j) => j.jti));
  await Promise.all(
    jtis.map((j) => deps.env.TOKENS.put(kvKeys.blacklist(j.jti), "1", { expirationTtl: kvTtl(j.exp - nowSec) })),
  );
  forgetNotRevoked(jtis.map((j) => j.jti));
}

/** An anonymous device token (api.md §3). */
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

function newAccess(deps: Deps): LiveJti & { iat: number } {
  const iat = Math.floor(deps.now / 1000);
  return { jti: randomString(24), iat, exp: iat + deps.config.ACCESS_TTL_SECONDS };
}

async function signAccess(
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

function tokenPair(deps: Deps, user: UserSnapshot, deviceId: string, accessToken: string, refreshToken: string) {
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

/** An `mfa_token` lives 5 minutes (api.md §12). */
const MFA_TOKEN_TTL_MS = 5 * 60_000;
export const MFA_METHODS = ["totp", "recovery_code"];

/**
 * The second-factor gate (api.md §12), on the one way into a session: an account with TOTP on gets
 * no session from a first factor alone. Instead, the first step is kept (device, description,
 * push token, its `amr`) under a new `mfa_token`, and the answer is 401 mfa_required carrying it.
 */
async function secondFactorGate(
  deps: Deps,
  user: UserSnapshot,
  deviceId: string,
  opts: { description?: string | null; pushToken?: string | null; amr: string[] },
): Promise<void> {
  if (!user.totpOn || secondFactorDone(opts.amr)) return;
  const token = randomString(43);
  await insertMfaToken(deps.db, {
    tokenHash: await sha256Hex(token),
    realm: user.realm,
    userId: user.id,
    deviceId,
    description: opts.description ?? null,
    pushToken: opts.pushToken ?? null,
    amr: opts.amr,
    attempts: 0,
    expiresAt: iso(deps.now + MFA_TOKEN_TTL_MS),
  });
  throw new ApiError("mfa_required", undefined, { body: { mfa_token: token, mfa_methods: MFA_METHODS } });
}

/**
 * Logs a device in after a credential check: starts (or replaces) its session and returns a
 * TokenPair whose access token is fresh. Every way of signing in comes through here, and so
 * through the second-factor gate first (secondFactorGate). The session id is drawn here, so the token is signed
 * while the object starts and the index is written.
 *
 * `user` is the account as the credential check read it. The index row is written only while the
 * account is still active and its password and sessions_valid_after unchanged since then (one
 * conditional statement): a password change, reset, deactivation or "log out everywhere" writes
 * the account first and then ends the sessions the index lists, so a login racing it either has
 * its row listed and ended, or finds the account changed and ends its own session
 * (401 invalid_credentials, or 403 account_disabled). Should a row still be lost, the session's
 * refresh and strict checks compare its start with sessions_valid_after (api.md §16).
 */
export async function startSession(
  deps: Deps,
  user: UserSnapshot,
  deviceId: string,
  opts: { description?: string | null; pushToken?: string | null; amr: string[] },
) {
  await secondFactorGate(deps, user, deviceId, opts);
  const authn: Authn = { amr: opts.amr, authTime: Math.floor(deps.now / 1000) };
  const access = newAccess(deps);
  const device = newDevice({
    deviceId,
    description: opts.description ?? null,
    pushToken: opts.pushToken ?? null,
    now: deps.now,
    refreshTtlMs: deps.config.REFRESH_TTL_SECONDS * 1000,
  });
  const stub = sessionStub(deps, user.realm, user.id, deviceId);
  const started = stub
    .start({ realm: user.realm, userId: user.id, device, access: { jti: access.jti, exp: access.exp }, authn })
    .then(async (r) => {
      // The session this login replaced: its access tokens stop working now, whatever follows.
      // Then the index row: it always names a session that was started.
      const [, indexed] = await Promise.all([
        blacklist(deps, r.replaced.revoked),
        indexIfUnchanged(deps, user, device, secondFactorDone(authn.amr)),
      ]);
      return { ...r, indexed };
    });
  const [{ refreshToken, indexed }, accessToken] = await Promise.all([
    started,
    signAccess(deps, user, deviceId, device.sid, access, true, authn),
  ]);
  // This device has now signed in to the account: its own login-throttle budget from now on.
  if (indexed) deps.defer(rememberLoginDevice(deps.db, user.id, deviceId, deps.now));
  if (!indexed) {
    const ended = await stub.end({ now: deps.now, sid: device.sid });
    await blacklist(deps, ended.revoked);
    const now = await findUserById(deps.db, user.realm, user.id);
    throw new ApiError(now && now.status !== "active" ? `account_${now.status}` : "invalid_credentials");
  }
  return tokenPair(deps, user, deviceId, accessToken, refreshToken);
}

/**
 * Writes the device's index row if the account is still active with the password `user` was read
 * with, and (unless the login checked two factors) still has no authenticator app: TOTP turned on
 * while a password-only login was on its way leaves that login without a session.
 */
async function indexIfUnchanged(deps: Deps, user: UserSnapshot, d: DeviceView, twoFactors: boolean): Promise<boolean> {
  const row = indexRow(d);
  const noTotp = twoFactors
    ? sql``
    : sql`AND NOT EXISTS (SELECT 1 FROM totp_factors WHERE user_id = ${user.id} AND confirmed_at IS NOT NULL)`;
  const res = await deps.db.run(sql`
    INSERT INTO devices (user_id, device_id, realm, session_id, description, push_token, push_token_updated_at, created_at, last_seen_at, expires_at)
    SELECT ${user.id}, ${row.deviceId}, ${user.realm}, ${row.sessionId}, ${row.description}, ${row.pushToken}, ${row.pushTokenUpdatedAt}, ${row.createdAt}, ${row.lastSeenAt}, ${row.expiresAt}
    WHERE EXISTS (SELECT 1 FROM users WHERE id = ${user.id} AND status = 'active' AND password_changed_at IS ${user.passwordChangedAt} AND sessions_valid_after IS ${user.sessionsValidAfter}) ${noTotp}
    ON CONFLICT (user_id, device_id) DO UPDATE SET session_id = excluded.session_id, description = excluded.description,
      push_token = excluded.push_token, push_token_updated_at = excluded.push_token_updated_at,
      created_at = excluded.created_at, last_seen_at = excluded.last_seen_at, expires_at = excluded.expires_at`);
  return changedRows(res) > 0;
}

function indexRow(d: DeviceView) {
  return {
    deviceId: d.deviceId,
    sessionId: d.sid,
    description: d.description,
    pushToken: d.pushToken,
    pushTokenUpdatedAt: d.pushTokenUpdatedAt === null ? null : iso(d.pushTokenUpdatedAt),
    createdAt: iso(d.createdAt),
    lastSeenAt: iso(d.lastSeenAt),
    expiresAt: iso(d.expiresAt),
  };
}

/**
 * Rotates a refresh token (api.md §3). The Durable Object of the device decides, and keeps a copy
 * of the account (see UserSnapshot): a refresh within a minute of the object's last read of the
 * account touches neither D1 nor KV.
 */
export async function refreshSession(deps: Deps, realm: string, refreshToken: string) {
  const loc = parseRefreshToken(refreshToken);
  if (!loc || loc.realm !== realm) throw new ApiError("invalid_token");
  const access = newAccess(deps);
  const stub = sessionStub(deps, realm, loc.userId, loc.deviceId);
  // Cast: the RPC stub's type of the result drops the account's `profile` (a Record of unknown).
  const result = (await stub.refresh({
    sid: loc.sid,
    counter: loc.counter,
    mac: loc.mac,
    now: deps.now,
    refreshTtlMs: deps.config.REFRESH_TTL_SECONDS * 1000,
    access: { jti: access.jti, exp: access.exp },
  })) as RefreshResult;
  if (!result.ok) {
    await blacklist(deps, result.revoked);
    // The object ended the session (theft, expiry, or an account gone or locked): its index row goes too.
    if (result.ended) {
      await deleteIndexRow(deps, loc.userId, loc.deviceId, loc.sid);
    }
    throw new ApiError(result.code);
  }
  // The strict check refuses tokens pushed out of the session at once; the blacklist follows.
  if (result.revoked.length) deps.defer(blacklist(deps, result.revoked));
  const accessToken = await signAccess(deps, result.user, loc.deviceId, result.device.sid, access, false, result.authn);
  if (result.reindex) {
    // An upsert: the row comes back if it was lost (a failed login write, or purged as expired).
    const row = indexRow(result.device);
    deps.defer(
      deps.db
        .insert(devices)
        .values({ ...row, userId: loc.userId, realm })
        // Never over the row of a newer session of the device (a re-login that raced this refresh).
        .onConflictDoUpdate({
          target: [devices.userId, devices.deviceId],
          set: row,
          setWhere: eq(devices.sessionId, row.sessionId),
        }),
    );
  }
  return tokenPair(deps, result.user, loc.deviceId, accessToken, result.refreshToken);
}

async function deleteIndexRow(deps: Deps, userId: string, deviceId: string, sid?: string | null) {
  const where = [eq(devices.userId, userId), eq(devices.deviceId, deviceId)];
  if (sid) where.push(eq(devices.sessionId, sid));
  await deps.db.delete(devices).where(and(...where));
}

/**
 * Ends one device's session at once: its refresh token stops working and its access tokens are
 * blacklisted. The index row goes by the ended session's id: a re-login of the device between the
 * object's end and this delete has written its own row, which must stay listed (else a later
 * password reset or "log out everywhere" would not find that session).
 */
export async function endSession(deps: Deps, realm: string, userId: string, deviceId: string): Promise<boolean> {
  // No device id of another shape was ever given out: no session to end, no object to wake.
  if (!DEVICE_ID.test(deviceId)) return false;
  const ended = await sessionStub(deps, realm, userId, deviceId).end({ now: deps.now });
  await Promise.all([
    blacklist(deps, ended.revoked),
    ended.sid ? deleteIndexRow(deps, userId, deviceId, ended.sid) : undefined,
  ]);
  return ended.ended;
}

/**
 * "Log out everywhere": every session of the user begun before now ends (api.md §16).
 * sessions_valid_after is written first, so a session the index does not list is refused by its
 * next refresh or strict check; then the sessions the index lists end at once.
 */
export async function endSessionsBefore(deps: Deps, realm: string, userId: string): Promise<void> {
  await setSessionsValidAfter(deps.db, userId, deps.now);
  await endAllSessions(deps, realm, userId);
}

/**
 * Keeps the caller's own session through a change that marks the account's sessions over (the
 * password change): the session counts as begun now. Called before that mark is written, so the
 * session never looks older than it.
 */
export async function reaffirmSession(deps: Deps, claims: AccessClaims): Promise<void> {
  await sessionStub(deps, claims.realm, claims.sub, claims.did).reaffirm({ sid: claims.sid, at: deps.now });
}

/** The device ids of a user's sessions, as the D1 index lists them. */
async function sessionsOf(deps: Deps, userId: string): Promise<string[]> {
  const rows = await deps.db.select({ deviceId: devices.deviceId }).from(devices).where(eq(devices.userId, userId));
  return rows.map((r) => r.deviceId);
}

/**
 * After a change to an account: its sessions (all, or those of `deviceIds`) drop their copy of the
 * account, so the next refresh puts the new email, name or roles into its tokens. The change is
 * already written, so a failure here does not fail the request: it is logged, and the copies are
 * read again within USER_MAX_AGE_MS anyway.
 */
export async function accountChanged(deps: Deps, realm: string, userId: string, deviceIds?: string[]): Promise<void> {
  try {
    const ids = deviceIds ?? (await sessionsOf(deps, userId));
    const results = await Promise.allSettled(ids.map((d) => sessionStub(deps, realm, userId, d).forgetUser()));
    const failed = results.filter((r) => r.status === "rejected").length;
    if (failed) throw new Error(`${failed} of ${ids.length} sessions unreachable`);
  } catch (e) {
    console.error(
      JSON.stringify({ level: "error", event: "account_copy_not_dropped", realm, user_id: userId, error: String(e) }),
    );
  }
}

/** Ends every session of a user, except `keepDeviceId` when given. */
export async function endAllSessions(deps: Deps, realm: string, userId: string, keepDeviceId?: string) {
  const ids = await sessionsOf(deps, userId);
  await Promise.all(ids.filter((d) => d !== keepDeviceId).map((d) => endSession(deps, realm, userId, d)));
}

/** The user's devices, newest first. */
export async function listDevices(deps: Deps, userId: string, currentDeviceId: string) {
  const rows = await deps.db.select().from(devices).where(eq(devices.userId, userId));
  const nowIso = iso(deps.now);
  return rows
    .filter((r) => r.expiresAt > nowIso)
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1))
    .map((r) => ({
      device_id: r.deviceId,
      description: r.description,
      current: r.deviceId === currentDeviceId,
      created_at: r.createdAt,
      last_seen_at: r.lastSeenAt,
      push_token: r.pushToken,
      push_token_updated_at: r.pushTokenUpdatedAt,
    }));
}

/** PUT /v1/devices/current: last-seen always moves; the push token's time only when it changed. */
export async function updateCurrentDevice(
  deps: Deps,
  claims: AccessClaims,
  input: { push_token?: string | null; description?: string | null },
) {
  const stub = sessionStub(deps, claims.realm, claims.sub, claims.did);
  const device = await stub.touch({
    sid: claims.sid,
    now: deps.now,
    pushToken: input.push_token,
    description: input.description,
  });
  if (!device) throw new ApiError("session_revoked");
  await deps.db
    .update(devices)
    .set(indexRow(device))
    .where(and(eq(devices.userId, claims.sub), eq(devices.deviceId, claims.did)));
  const row = indexRow(device);
  return {
    device_id: device.deviceId,
    description: device.description,
    current: true,
    created_at: row.createdAt,
    last_seen_at: row.lastSeenAt,
    push_token: device.pushToken,
    push_token_updated_at: row.pushTokenUpdatedAt,
  };
}
