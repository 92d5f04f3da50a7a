import { b64url, fromB64url } from "../crypto/encoding";
import { randomString } from "../crypto/random";
import type { EndedRow, LiveJti } from "./revocations";
import type { UserRecord } from "./users";

export type { EndedRow, LiveJti } from "./revocations";

/** A retry of the refresh token rotated away less than this long ago succeeds (docs/api.md §3). */
export const REFRESH_GRACE_MS = 10_000;

/** How the session's credentials were checked (docs/api.md §2, §12): kept across refreshes. */
export interface Authn {
  /** RFC 8176 method values. */
  amr: string[];
  /** When the credentials were checked (seconds since the epoch). */
  authTime: number;
}

/**
 * The account as refresh puts it into tokens and the TokenPair (no password hash). The object
 * keeps a copy, read from D1 by its own first refresh (not taken from the login, which may have
 * read the account before a change that did not reach this new session yet), so that refreshes
 * within a minute of that read need no D1 read. Every change to an account drops the copies of
 * its sessions (`forgetUser`, called by the change; a refresh that is reading D1 holds the object,
 * so the drop comes after it), and a copy older than USER_MAX_AGE_MS is read again anyway, which
 * bounds staleness if a drop ever fails or D1 is written behind the API's back.
 */
export type UserSnapshot = Omit<UserRecord, "passwordHash">;
export const USER_MAX_AGE_MS = 60_000;

/** The D1 device index gets last-seen and expiry from a refresh at most this often. */
export const INDEX_EVERY_MS = 60_000;

/** Whether an access token is still live at `nowMs`. */
export const live = (j: LiveJti, nowMs: number) => j.exp * 1000 > nowMs;

/** The state of one device's session; stored in the object's own SQLite-backed storage. */
export interface SessionState {
  realm: string;
  userId: string;
  deviceId: string;
  sid: string;
  /** Per-session HMAC key (base64url); refresh tokens are derived from it, never stored. */
  secret: string;
  /** Index of the one refresh token that rotates next. */
  counter: number;
  /** Counters rotated away less than REFRESH_GRACE_MS ago, with when (ms); older ones are theft. */
  spent?: { counter: number; at: number }[];
  createdAt: number;
  /**
   * The session counts as begun at this time for the account's sessions_valid_after (ms; absent:
   * createdAt). A password change moves it forward for the one session it keeps.
   */
  validFrom?: number;
  lastSeenAt: number;
  /** The session ends at this time unless a rotation renews it (ms). */
  expiresAt: number;
  description: string | null;
  pushToken: string | null;
  pushTokenUpdatedAt: number | null;
  /** Access tokens minted for this session that have not expired yet. */
  jtis: LiveJti[];
  /** The account, as read at `userAt` (ms); absent once a change to it dropped the copy. */
  user?: UserSnapshot;
  userAt?: number;
  /** When the D1 device index last got this session's last-seen and expiry (ms). */
  indexedAt?: number;
  /** How the login checked the credentials (absent in sessions begun before it was recorded). */
  authn?: Authn;
}

export interface DeviceView {
  deviceId: string;
  sid: string;
  description: string | null;
  createdAt: number;
  lastSeenAt: number;
  pushToken: string | null;
  pushTokenUpdatedAt: number | null;
  expiresAt: number;
}

export interface StartInput {
  realm: string;
  userId: string;
  /** The new session as newDevice() made it (the worker writes the same to the D1 index after this call). */
  device: DeviceView;
  access: LiveJti;
  authn: Authn;
}

/** A new session of a device, starting at `now`, with a new session id. */
export function newDevice(input: {
  deviceId: string;
  description: string | null;
  pushToken: string | null;
  now: number;
  refreshTtlMs: number;
}): DeviceView {
  return {
    deviceId: input.deviceId,
    sid: randomString(24),
    description: input.description,
    createdAt: input.now,
    lastSeenAt: input.now,
    pushToken: input.pushToken,
    pushTokenUpdatedAt: input.pushToken ? input.now : null,
    expiresAt: input.now + input.refreshTtlMs,
  };
}

export type RefreshResult =
  | {
      ok: true;
      refreshToken: string;
      device: DeviceView;
      user: UserSnapshot;
      /** The D1 device index should get `device`'s last-seen and expiry (see INDEX_EVERY_MS). */
      reindex: boolean;
      /** Older access tokens this refresh pushed out (MAX_LIVE_JTIS): the caller blacklists them. */
      revoked: LiveJti[];
      authn: Authn;
      owed: Owed;
    }
  | {
      ok: false;
      code: "session_revoked" | "refresh_token_reused" | "invalid_token" | "token_expired";
      /** This call ended the session (the caller drops its index row). */
      ended?: true;
      revoked: LiveJti[];
      owed: Owed;
    };

/**
 * The strict check's verdict: `ok`; `session_revoked` when the session is gone, expired or
 * replaced by another login; `token_revoked` when the session lives but this token is not one of its own.
 */
export type CheckResult = "ok" | "session_revoked" | "token_revoked";

/** How many rotated-away counters the grace window remembers (more within 10 s is abuse, not a retry). */
export const MAX_SPENT = 16;

/**
 * How many live access tokens a session keeps. A refresh that mints one more revokes the oldest
 * (the caller blacklists it), so a client refreshing in a loop cannot grow the object's state,
 * the work of every later refresh, or the blacklist writes of a logout without bound.
 */
export const MAX_LIVE_JTIS = 16;

/**
 * A replay within the grace window "revokes nothing" (docs/api.md §3), so it only adds its token; only
 * a burst of replays larger than any retry or set of concurrent callers pushes tokens out.
 */
export const MAX_LIVE_JTIS_IN_GRACE = 4 * MAX_LIVE_JTIS;

export interface EndResult {
  ended: boolean;
  sid: string | null;
  /** Access tokens of the ended session that are still live: the caller blacklists them. */
  revoked: LiveJti[];
  owed: Owed;
}

/** Everything the object's outbox holds after a call: what the caller carries out, then settles. */
export interface Owed {
  jtis: LiveJti[];
  rows: EndedRow[];
}

export const KEY = "session";

/**
 * What the object's answers oblige the caller to do and the caller has not yet confirmed:
 * access tokens to put on the blacklist and index rows of ended sessions to delete. Recorded in
 * the same storage write as the decision that created it (an ended session, a token pushed out),
 * so it cannot be lost: the session gateway carries it out and then `settle`s it; whatever is
 * not settled by OUTBOX_RETRY_MS[0], the object's alarm carries out itself, retrying with backoff.
 */
export interface Outbox {
  jtis: LiveJti[];
  rows: EndedRow[];
  /** Failed attempts of the alarm so far. */
  attempt: number;
}
export const OUTBOX = "outbox";
/** When the alarm carries out an unsettled outbox: after the first delay, then backing off (ms). */
export const OUTBOX_RETRY_MS = [30_000, 60_000, 300_000, 900_000, 3_600_000];

/** Parsed refresh token: `rt1.<b64url(realm|user|device|sid|counter)>.<b64url(hmac)>`. */
export interface RefreshLocator {
  realm: string;
  userId: string;
  deviceId: string;
  sid: string;
  counter: number;
  mac: Uint8Array<ArrayBuffer>;
}

/**
 * Reads the locator from a refresh token; null when it is not one of ours in shape. Only the
 * canonical spelling is accepted (base64url without stray bits, a counter without leading
 * zeros), so every altered token string is refused, never read as an alias of a valid one.
 */
export function parseRefreshToken(token: string): RefreshLocator | null {
  if (typeof token !== "string" || token.length > 512) return null;
  const parts = token.split(".");
  if (parts.length !== 3 || parts[0] !== "rt1") return null;
  const [, bodyText, macText] = parts as [string, string, string];
  const body = fromB64url(bodyText);
  const mac = fromB64url(macText);
  if (!body || !mac || mac.byteLength !== 32) return null;
  if (b64url(body) !== bodyText || b64url(mac) !== macText) return null;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(body);
  } catch {
    return null;
  }
  const fields = text.split("|");
  if (fields.length !== 5) return null;
  const [realm, userId, deviceId, sid, counterText] = fields as [string, string, string, string, string];
  if (!realm || !userId || !/^[A-Za-z0-9]{32}$/.test(deviceId) || !sid) return null;
  if (!/^(0|[1-9]\d{0,8})$/.test(counterText)) return null;
  return { realm, userId, deviceId, sid, counter: Number(counterText), mac };
}

/** An account's sessions_valid_after in ms, or null when it has none (or it does not parse). */
export function validAfterMs(value: string | null | undefined): number | null {
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

/** The session was begun before `validAfter` (ms) and is therefore over. */
export const begunBefore = (s: SessionState, validAfter: number | null) =>
  validAfter !== null && (s.validFrom ?? s.createdAt) < validAfter;

/** The account without its password hash. */
export function userSnapshot(u: UserSnapshot & { passwordHash?: unknown }): UserSnapshot {
  const { passwordHash: _, ...rest } = u;
  return rest;
}

export function view(s: SessionState): DeviceView {
  return {
    deviceId: s.deviceId,
    sid: s.sid,
    description: s.description,
    createdAt: s.createdAt,
    lastSeenAt: s.lastSeenAt,
    pushToken: s.pushToken,
    pushTokenUpdatedAt: s.pushTokenUpdatedAt,
    expiresAt: s.expiresAt,
  };
}
