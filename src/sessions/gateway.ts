import { secondFactorDone } from "../auth-methods/amr";
import type { AccessClaims } from "../crypto/jwt";
import { ApiError } from "../errors";
import type { Deps } from "../services/deps";
import { retryInPlace } from "../services/retry";
import {
  type Authn,
  newDevice,
  type Owed,
  parseRefreshToken,
  type RefreshResult,
  type UserSnapshot,
} from "../storage/device-session";
import {
  indexedDeviceIds,
  indexIfUnchanged,
  indexRow,
  type LoginWrites,
  reindex,
  updateIndexRow,
} from "../storage/devices";
import { deviceSessionName } from "../storage/keys";
import { rememberLoginDevice } from "../storage/login-devices";
import { deleteEndedRow, forgetNotRevoked, putOnBlacklist } from "../storage/revocations";
import { findUserById } from "../storage/users";
import { DEVICE_ID, newAccess, signAccess, tokenPair } from "./tokens";

/**
 * The session gateway: the only code that talks to the device Durable Object. It carries out
 * everything an answer of the object obliges (the outbox: blacklist, revocation cache, index rows,
 * settle) and the index writes a session needs, so callers get a plain result. Token minting is
 * in tokens.ts.
 */

function sessionStub(deps: Deps, realm: string, userId: string, deviceId: string) {
  const ns = deps.env.DEVICE_SESSIONS;
  return ns.get(ns.idFromName(deviceSessionName(realm, userId, deviceId)));
}

type SessionStub = ReturnType<typeof sessionStub>;

/**
 * Carries out what a session object's answer obliges (its outbox, see Owed): the access tokens go
 * on the KV blacklist and the ended sessions' index rows are deleted; then the object is told, so
 * it drops them. A failure here fails nothing: the object keeps what was not settled and its alarm
 * carries it out, retrying with backoff, so the decision the object made (a session ended, a token
 * pushed out) holds and nothing it obliges is forgotten. Strict checks ask the object directly
 * and refuse those tokens meanwhile.
 */
async function carryOut(deps: Deps, stub: SessionStub, owed: Owed): Promise<void> {
  if (!owed.jtis.length && !owed.rows.length) return;
  const jtis = owed.jtis.map((j) => j.jti);
  // This isolate's "not revoked" answers for these tokens go, before and after the writes.
  forgetNotRevoked(jtis);
  const results = await Promise.allSettled([
    putOnBlacklist(deps.env.TOKENS, owed.jtis, deps.now),
    ...owed.rows.map((r) => deleteEndedRow(deps.db, r)),
  ]);
  forgetNotRevoked(jtis);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) {
    console.error(JSON.stringify({ level: "error", event: "outbox_deferred", error: String(failed.reason) }));
    return;
  }
  try {
    await stub.settle({ jtis, sids: owed.rows.map((r) => r.sid) });
  } catch (e) {
    // Unsettled, the object's alarm carries it out again: every step is idempotent.
    console.error(JSON.stringify({ level: "error", event: "outbox_unsettled", error: String(e) }));
  }
}

/**
 * Logs a device in after a credential check: starts (or replaces) its session and returns a
 * TokenPair whose access token is fresh. Every way of signing in comes through here from
 * the login seam (services/login.ts, completeLogin), which holds the second-factor gate. With
 * `writes`, the login's other D1 writes go in the index row's batch. The session id is drawn here, so the token is signed
 * while the object starts and the index is written.
 *
 * `user` is the account as the credential check read it. The index row is written only while the
 * account is still active and its password and sessions_valid_after unchanged since then (one
 * conditional statement): a password change, reset, deactivation or "log out everywhere" writes
 * the account first and then ends the sessions the index lists, so a login racing it either has
 * its row listed and ended, or finds the account changed and ends its own session
 * (401 invalid_credentials, or 403 account_disabled). Should a row still be lost, the session's
 * refresh and strict checks compare its start with sessions_valid_after (docs/api.md §16).
 */
export async function startSession(
  deps: Deps,
  user: UserSnapshot,
  deviceId: string,
  opts: { description?: string | null; pushToken?: string | null; amr: string[]; writes?: LoginWrites },
) {
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
        carryOut(deps, stub, r.owed),
        indexIfUnchanged(deps.db, user, device, secondFactorDone(authn.amr), opts.writes),
      ]);
      return { ...r, indexed };
    });
  const [{ refreshToken, indexed }, accessToken] = await Promise.all([
    started,
    signAccess(deps, user, deviceId, device.sid, access, true, authn),
  ]);
  // This device has now signed in to the account: its own login-throttle budget from now on.
  if (indexed && !opts.writes) deps.defer(rememberLoginDevice(deps.db, user.id, deviceId, deps.now));
  if (!indexed) {
    const ended = await stub.end({ now: deps.now, sid: device.sid });
    await carryOut(deps, stub, ended.owed);
    const now = await findUserById(deps.db, user.realm, user.id);
    throw new ApiError(now && now.status !== "active" ? `account_${now.status}` : "invalid_credentials");
  }
  return tokenPair(deps, user, deviceId, accessToken, refreshToken);
}

/**
 * Rotates a refresh token (docs/api.md §3). The Durable Object of the device decides, and keeps a copy
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
    // The object may have ended the session (theft, expiry, or an account gone or locked): its
    // tokens are blacklisted and its index row goes.
    await carryOut(deps, stub, result.owed);
    throw new ApiError(result.code);
  }
  // The strict check refuses tokens pushed out of the session at once; the blacklist follows.
  deps.defer(carryOut(deps, stub, result.owed));
  const accessToken = await signAccess(deps, result.user, loc.deviceId, result.device.sid, access, false, result.authn);
  if (result.reindex) {
    // An upsert: the row comes back if it was lost (a failed login write, or purged as expired).
    deps.defer(reindex(deps.db, loc.userId, realm, result.device));
  }
  return tokenPair(deps, result.user, loc.deviceId, accessToken, result.refreshToken);
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
  const stub = sessionStub(deps, realm, userId, deviceId);
  const ended = await stub.end({ now: deps.now });
  await carryOut(deps, stub, ended.owed);
  return ended.ended;
}

/**
 * Keeps the caller's own session through a change that marks the account's sessions over (the
 * password change): the session counts as begun now. Called before that mark is written, so the
 * session never looks older than it.
 */
export async function reaffirmSession(deps: Deps, claims: AccessClaims): Promise<void> {
  await sessionStub(deps, claims.realm, claims.sub, claims.did).reaffirm({ sid: claims.sid, at: deps.now });
}

/**
 * After a change to an account: its sessions (all, or those of `deviceIds`) drop their copy of the
 * account, so the next refresh puts the new email, name or roles into its tokens. The change is
 * already written, so a failure here does not fail the request: it is logged, and the copies are
 * read again within USER_MAX_AGE_MS anyway.
 */
export async function accountChanged(deps: Deps, realm: string, userId: string, deviceIds?: string[]): Promise<void> {
  try {
    const ids = deviceIds ?? (await indexedDeviceIds(deps.db, userId));
    const results = await Promise.allSettled(ids.map((d) => sessionStub(deps, realm, userId, d).forgetUser()));
    const failed = results.filter((r) => r.status === "rejected").length;
    if (failed) throw new Error(`${failed} of ${ids.length} sessions unreachable`);
  } catch (e) {
    console.error(
      JSON.stringify({ level: "error", event: "account_copy_not_dropped", realm, user_id: userId, error: String(e) }),
    );
  }
}

/**
 * Ends every session of a user, except `keepDeviceId` when given. Called only after the change
 * that ends them has been written (a password change, reset, deactivation or "log out
 * everywhere" sets sessions_valid_after; a deletion removes the account), so it never fails the
 * request: each step is retried in place, and a session still unreachable after that is refused
 * by its next refresh and strict check anyway (docs/api.md §16). Returns how many could not be ended.
 */
export async function endAllSessions(deps: Deps, realm: string, userId: string, keepDeviceId?: string) {
  let ids: string[];
  try {
    ids = await retryInPlace(() => indexedDeviceIds(deps.db, userId));
  } catch (e) {
    console.error(
      JSON.stringify({ level: "error", event: "sessions_not_ended", realm, user_id: userId, error: String(e) }),
    );
    return 1;
  }
  return endSessionsOf(
    deps,
    realm,
    userId,
    ids.filter((d) => d !== keepDeviceId),
  );
}

/** Ends the sessions of these devices of a user, as endAllSessions does (never throws). */
export async function endSessionsOf(deps: Deps, realm: string, userId: string, deviceIds: string[]) {
  let left = 0;
  try {
    const results = await Promise.allSettled(
      deviceIds.map((d) => retryInPlace(() => endSession(deps, realm, userId, d))),
    );
    left = results.filter((r) => r.status === "rejected").length;
    if (left) throw new Error(`${left} of ${results.length} sessions unreachable`);
  } catch (e) {
    left ||= 1;
    console.error(
      JSON.stringify({ level: "error", event: "sessions_not_ended", realm, user_id: userId, error: String(e) }),
    );
  }
  return left;
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
  await updateIndexRow(deps.db, claims.sub, claims.did, device);
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

/**
 * The strict check's part of the session (docs/api.md §2): the object's verdict on the token, and
 * when the session counts as begun, for the caller to compare with sessions_valid_after.
 */
export function checkSession(deps: Deps, claims: AccessClaims) {
  return sessionStub(deps, claims.realm, claims.sub, claims.did).checkStart({
    sid: claims.sid,
    jti: claims.jti,
    now: deps.now,
  });
}

/** The session of `claims` proved more factors (an authenticator app confirmed from it). */
export async function addSessionMethods(deps: Deps, claims: AccessClaims, amr: string[]): Promise<boolean> {
  return sessionStub(deps, claims.realm, claims.sub, claims.did).addMethods({ sid: claims.sid, amr, now: deps.now });
}
