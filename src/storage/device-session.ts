import { DurableObject } from "cloudflare:workers";
import { secondFactorDone } from "../auth-methods/amr";
import { b64url, fromB64url, utf8 } from "../crypto/encoding";
import { hmacKey, hmacSign, newSecret, randomString, timingSafeEqual } from "../crypto/random";
import type { Env } from "../env";
import { getDb } from "./db";
import { deleteEndedRow, type EndedRow, type LiveJti, putOnBlacklist } from "./revocations";
import { findUserById, type UserRecord } from "./users";

export type { EndedRow, LiveJti } from "./revocations";

/** A retry of the refresh token rotated away less than this long ago succeeds (docs/api.md §3). */
const REFRESH_GRACE_MS = 10_000;

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
const live = (j: LiveJti, nowMs: number) => j.exp * 1000 > nowMs;

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
const MAX_SPENT = 16;

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
const MAX_LIVE_JTIS_IN_GRACE = 4 * MAX_LIVE_JTIS;

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

const KEY = "session";

/**
 * What the object's answers oblige the caller to do and the caller has not yet confirmed:
 * access tokens to put on the blacklist and index rows of ended sessions to delete. Recorded in
 * the same storage write as the decision that created it (an ended session, a token pushed out),
 * so it cannot be lost: the session gateway carries it out and then `settle`s it; whatever is
 * not settled by OUTBOX_RETRY_MS[0], the object's alarm carries out itself, retrying with backoff.
 */
interface Outbox {
  jtis: LiveJti[];
  rows: EndedRow[];
  /** Failed attempts of the alarm so far. */
  attempt: number;
}
const OUTBOX = "outbox";
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
const begunBefore = (s: SessionState, validAfter: number | null) =>
  validAfter !== null && (s.validFrom ?? s.createdAt) < validAfter;

/** The account without its password hash. */
function userSnapshot(u: UserSnapshot & { passwordHash?: unknown }): UserSnapshot {
  const { passwordHash: _, ...rest } = u;
  return rest;
}

function view(s: SessionState): DeviceView {
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

/**
 * One device's session. Single-threaded and authoritative: rotation, reuse detection and
 * logout are decided here, so no race between concurrent requests can be lost. Every method
 * runs inside blockConcurrencyWhile, so no other call interleaves with it.
 */
export class DeviceSession extends DurableObject<Env> {
  /**
   * The session as this instance last read or wrote it (undefined: not read yet; null: none).
   * Storage is written only through this object, and a call that throws resets the object (and
   * this copy with it), so the copy is what storage holds; it saves decoding the state on every call.
   */
  private session: SessionState | null | undefined;
  /** The alarm this instance set (ms). Expiry only moves later, and an early alarm sets itself again. */
  private alarmAt: number | undefined;
  /** The session secret's HMAC key, imported once. */
  private macKey: { secret: string; key: Promise<CryptoKey> } | undefined;

  private read(): SessionState | undefined {
    if (this.session === undefined) this.session = this.ctx.storage.kv.get<SessionState>(KEY) ?? null;
    return this.session ?? undefined;
  }

  private async write(s: SessionState): Promise<void> {
    this.ctx.storage.kv.put(KEY, s);
    this.session = s;
    // A rotation renews the expiry every time; the alarm moves only when it would fire too late.
    if (this.alarmAt === undefined || this.alarmAt > s.expiresAt) {
      await this.ctx.storage.setAlarm(s.expiresAt);
      this.alarmAt = s.expiresAt;
    }
  }

  /** Ends the session's state; an unsettled outbox stays, with the alarm that carries it out. */
  private async wipe(): Promise<void> {
    if (this.outbox()) {
      this.ctx.storage.kv.delete(KEY);
      this.session = null;
      return;
    }
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    this.session = null;
    this.alarmAt = undefined;
  }

  private outbox(): Outbox | undefined {
    return this.ctx.storage.kv.get<Outbox>(OUTBOX);
  }

  private owedNow(): Owed {
    const box = this.outbox();
    return { jtis: box?.jtis ?? [], rows: box?.rows ?? [] };
  }

  /**
   * Records obligations that an answer hands to the caller (see Outbox), and makes sure the alarm
   * comes to carry them out should the caller never settle them.
   */
  private async owe(jtis: LiveJti[], row?: EndedRow): Promise<void> {
    if (!jtis.length && !row) return;
    const box = this.outbox() ?? { jtis: [], rows: [], attempt: 0 };
    const known = new Set(box.jtis.map((j) => j.jti));
    box.jtis.push(...jtis.filter((j) => !known.has(j.jti)));
    if (row && !box.rows.some((r) => r.sid === row.sid)) box.rows.push(row);
    this.ctx.storage.kv.put(OUTBOX, box);
    await this.alarmBy(Date.now() + (OUTBOX_RETRY_MS[box.attempt] ?? 3_600_000));
  }

  /** Moves the alarm earlier to `at` when it is later (or unset). */
  private async alarmBy(at: number): Promise<void> {
    if (this.alarmAt === undefined || this.alarmAt > at) {
      await this.ctx.storage.setAlarm(at);
      this.alarmAt = at;
    }
  }

  /** Obligations of `owe` the caller has carried out: they leave the outbox. */
  settle(input: { jtis: string[]; sids: string[] }): Promise<void> {
    return this.serial(async () => {
      const box = this.outbox();
      if (!box) return;
      const jtis = new Set(input.jtis);
      const sids = new Set(input.sids);
      box.jtis = box.jtis.filter((j) => !jtis.has(j.jti));
      box.rows = box.rows.filter((r) => !sids.has(r.sid));
      if (box.jtis.length || box.rows.length) this.ctx.storage.kv.put(OUTBOX, box);
      else {
        this.ctx.storage.kv.delete(OUTBOX);
        if (!this.read()) await this.wipe();
      }
    });
  }

  /** The alarm's part: carry out an unsettled outbox, or back off and come again. */
  private async deliverOutbox(box: Outbox, now: number): Promise<void> {
    const jtis = box.jtis.filter((j) => live(j, now));
    try {
      await Promise.all([
        putOnBlacklist(this.env.TOKENS, jtis, now),
        ...box.rows.map((r) => deleteEndedRow(getDb(this.env.DB), r)),
      ]);
      this.ctx.storage.kv.delete(OUTBOX);
    } catch (e) {
      box.attempt += 1;
      box.jtis = jtis;
      this.ctx.storage.kv.put(OUTBOX, box);
      const retryAt = now + (OUTBOX_RETRY_MS[box.attempt] ?? 3_600_000);
      await this.ctx.storage.setAlarm(retryAt);
      this.alarmAt = retryAt;
      console.error(JSON.stringify({ level: "error", event: "outbox_retry", attempt: box.attempt, error: String(e) }));
    }
  }

  /** HMAC-SHA-256 under the session's secret: the MAC of refresh token `counter`. */
  private async mac(s: SessionState, counter: number): Promise<Uint8Array<ArrayBuffer>> {
    if (this.macKey?.secret !== s.secret) {
      // The secret is the object's own (newSecret), so always valid base64url.
      this.macKey = { secret: s.secret, key: hmacKey(fromB64url(s.secret) as Uint8Array<ArrayBuffer>) };
    }
    return hmacSign(await this.macKey.key, `${s.sid}.${counter}`);
  }

  private async refreshToken(s: SessionState, counter: number): Promise<string> {
    const body = b64url(utf8([s.realm, s.userId, s.deviceId, s.sid, counter].join("|")));
    return `rt1.${body}.${b64url(await this.mac(s, counter))}`;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.ctx.blockConcurrencyWhile(fn);
  }

  /** Starts (or replaces) the session of this device; returns the first refresh token. */
  start(input: StartInput): Promise<{ refreshToken: string; replaced: Omit<EndResult, "owed">; owed: Owed }> {
    return this.serial(async () => {
      const d = input.device;
      const old = this.read();
      const replaced: Omit<EndResult, "owed"> = old
        ? this.endResult(old, d.createdAt)
        : { ended: false, sid: null, revoked: [] };
      // The replaced session's tokens; its index row is overwritten by the new session's.
      await this.owe(replaced.revoked);
      const s: SessionState = {
        ...d,
        realm: input.realm,
        userId: input.userId,
        secret: newSecret(32),
        counter: 0,
        spent: [],
        jtis: [input.access],
        indexedAt: d.createdAt,
        authn: input.authn,
      };
      await this.write(s);
      return { refreshToken: await this.refreshToken(s, 0), replaced, owed: this.owedNow() };
    });
  }

  /**
   * Rotates a refresh token (docs/api.md §3): the current one rotates; one rotated away less than
   * 10 s ago gets the current token again, without rotating (retries, concurrent calls), so
   * every caller ends up holding the one token that works; one rotated away longer ago is
   * theft and ends the whole session. A token that fails its MAC changes nothing.
   */
  refresh(input: {
    sid: string;
    counter: number;
    mac: Uint8Array<ArrayBuffer>;
    now: number;
    refreshTtlMs: number;
    access: LiveJti;
  }): Promise<RefreshResult> {
    return this.serial(async () => {
      const s = this.read();
      if (!s || s.sid !== input.sid) return { ok: false, code: "session_revoked", revoked: [], owed: this.owedNow() };
      if (input.counter > s.counter) return { ok: false, code: "invalid_token", revoked: [], owed: this.owedNow() };
      // Constant time: the MAC is the secret part of the token.
      if (!timingSafeEqual(await this.mac(s, input.counter), input.mac)) {
        return { ok: false, code: "invalid_token", revoked: [], owed: this.owedNow() };
      }
      if (input.now >= s.expiresAt) {
        const ended = await this.endOwing(s, input.now);
        return { ok: false, code: "token_expired", ended: true, revoked: ended.revoked, owed: ended.owed };
      }
      const user = await this.currentUser(s, input.now);
      // Begun before the account's last password change, reset, deactivation or "log out
      // everywhere" (docs/api.md §16), or with one factor while the account now has two: over, even
      // if the device index never listed this session.
      if (
        user?.status !== "active" ||
        begunBefore(s, validAfterMs(user.sessionsValidAfter)) ||
        (user.totpOn && !secondFactorDone(s.authn?.amr))
      ) {
        // The account is gone or locked: the session cannot continue.
        const ended = await this.endOwing(s, input.now);
        return { ok: false, code: "session_revoked", ended: true, revoked: ended.revoked, owed: ended.owed };
      }
      const inGrace = (s.spent ?? []).filter((x) => input.now - x.at < REFRESH_GRACE_MS);
      const rotates = input.counter === s.counter;
      if (rotates) {
        inGrace.push({ counter: s.counter, at: input.now });
        s.spent = inGrace.slice(-MAX_SPENT);
        s.counter += 1;
        s.expiresAt = input.now + input.refreshTtlMs;
      } else if (inGrace.some((x) => x.counter === input.counter)) {
        s.spent = inGrace;
      } else {
        // Rotated away more than 10 s ago: someone else holds (or held) this session's tokens.
        const ended = await this.endOwing(s, input.now);
        return { ok: false, code: "refresh_token_reused", ended: true, revoked: ended.revoked, owed: ended.owed };
      }
      s.lastSeenAt = input.now;
      const jtis = [...s.jtis.filter((j) => live(j, input.now)), input.access];
      const keep = rotates ? MAX_LIVE_JTIS : MAX_LIVE_JTIS_IN_GRACE;
      const revoked = jtis.splice(0, Math.max(0, jtis.length - keep));
      s.jtis = jtis;
      await this.owe(revoked);
      const reindex = input.now - (s.indexedAt ?? 0) >= INDEX_EVERY_MS;
      if (reindex) s.indexedAt = input.now;
      await this.write(s);
      return {
        ok: true,
        refreshToken: await this.refreshToken(s, s.counter),
        device: view(s),
        user,
        reindex,
        revoked,
        authn: s.authn ?? { amr: [], authTime: Math.floor(s.createdAt / 1000) },
        owed: this.owedNow(),
      };
    });
  }

  /**
   * The strict check: is this access token one of the live session's own? With `validAfter` (the
   * account's sessions_valid_after, ms), a session begun before it is `session_revoked`.
   */
  check(input: { sid: string; jti: string; now: number; validAfter?: number | null }): Promise<CheckResult> {
    return this.serial(async () => {
      const s = this.read();
      if (!s || s.sid !== input.sid || input.now >= s.expiresAt) return "session_revoked";
      if (begunBefore(s, input.validAfter ?? null)) return "session_revoked";
      return s.jtis.some((j) => j.jti === input.jti) ? "ok" : "token_revoked";
    });
  }

  /**
   * The strict check without the account: the verdict on the token, and when the session counts
   * as begun (ms), for the caller to compare with sessions_valid_after it reads meanwhile (so the
   * D1 read and this call run at the same time).
   */
  checkStart(input: { sid: string; jti: string; now: number }): Promise<{ verdict: CheckResult; begun: number }> {
    return this.serial(async () => {
      const s = this.read();
      if (!s || s.sid !== input.sid || input.now >= s.expiresAt) return { verdict: "session_revoked", begun: 0 };
      const verdict = s.jtis.some((j) => j.jti === input.jti) ? "ok" : "token_revoked";
      return { verdict, begun: s.validFrom ?? s.createdAt };
    });
  }

  /**
   * Keeps session `sid` through a change that ends the account's sessions begun before `at` (the
   * password change keeps the caller's own): it counts as begun at `at`. False when `sid` is not live.
   */
  reaffirm(input: { sid: string; at: number }): Promise<boolean> {
    return this.serial(async () => {
      const s = this.read();
      if (!s || s.sid !== input.sid) return false;
      s.validFrom = Math.max(s.validFrom ?? s.createdAt, input.at);
      await this.write(s);
      return true;
    });
  }

  /** Ends the session (only if it is `sid`, when given); returns the access tokens to blacklist. */
  end(input: { now: number; sid?: string }): Promise<EndResult> {
    return this.serial(async () => {
      const s = this.read();
      if (!s || (input.sid && s.sid !== input.sid))
        return { ended: false, sid: null, revoked: [], owed: this.owedNow() };
      return this.endOwing(s, input.now);
    });
  }

  /** Records that the device was seen; replaces the push token (and its time) only when it changed. */
  touch(input: {
    sid: string;
    now: number;
    pushToken?: string | null;
    description?: string | null;
  }): Promise<DeviceView | null> {
    return this.serial(async () => {
      const s = this.read();
      if (!s || s.sid !== input.sid || input.now >= s.expiresAt) return null;
      s.lastSeenAt = input.now;
      if (input.pushToken !== undefined && input.pushToken !== s.pushToken) {
        s.pushToken = input.pushToken;
        s.pushTokenUpdatedAt = input.now;
      }
      if (input.description !== undefined) s.description = input.description;
      s.indexedAt = input.now;
      await this.write(s);
      return view(s);
    });
  }

  /**
   * The session's user proved more factors (an authenticator app confirmed from it): its `amr`
   * gains them, so it survives the refresh check for accounts with a second factor.
   */
  addMethods(input: { sid: string; amr: string[]; now: number }): Promise<boolean> {
    return this.serial(async () => {
      const s = this.read();
      if (!s || s.sid !== input.sid || input.now >= s.expiresAt) return false;
      const prev = s.authn ?? { amr: [], authTime: Math.floor(s.createdAt / 1000) };
      s.authn = { amr: [...new Set([...prev.amr, ...input.amr])], authTime: prev.authTime };
      delete s.user;
      delete s.userAt;
      await this.write(s);
      return true;
    });
  }

  /** The account changed: the next refresh reads it from D1 again. */
  forgetUser(): Promise<void> {
    return this.serial(async () => {
      const s = this.read();
      if (!s?.user) return;
      delete s.user;
      delete s.userAt;
      this.ctx.storage.kv.put(KEY, s);
    });
  }

  /** The session as it is, or null when none is live. */
  get(): Promise<DeviceView | null> {
    return this.serial(async () => {
      const s = this.read();
      return s ? view(s) : null;
    });
  }

  /** Runs when the session expires: removes everything it kept. */
  override async alarm(): Promise<void> {
    const box = this.outbox();
    if (box) await this.deliverOutbox(box, Date.now());
    const s = this.read();
    if (this.outbox()) return; // retrying later; the session's own expiry is checked then too
    if (s && Date.now() < s.expiresAt) {
      await this.ctx.storage.setAlarm(s.expiresAt);
      this.alarmAt = s.expiresAt;
      return;
    }
    await this.ctx.storage.deleteAll();
    this.session = null;
    this.alarmAt = undefined;
  }

  /** The account: the kept copy while it is younger than USER_MAX_AGE_MS, else read from D1 (and kept). */
  private async currentUser(s: SessionState, now: number): Promise<UserSnapshot | null> {
    if (s.user && s.userAt !== undefined && now >= s.userAt && now - s.userAt < USER_MAX_AGE_MS) return s.user;
    const found = await findUserById(getDb(this.env.DB), s.realm, s.userId);
    if (!found) return null;
    s.user = userSnapshot(found);
    s.userAt = now;
    return s.user;
  }

  private endResult(s: SessionState, now: number): Omit<EndResult, "owed"> {
    return { ended: true, sid: s.sid, revoked: s.jtis.filter((j) => live(j, now)) };
  }

  /** Ends the session, recording what its end obliges (its live tokens, its index row) in the outbox. */
  private async endOwing(s: SessionState, now: number): Promise<EndResult> {
    const result = this.endResult(s, now);
    await this.owe(result.revoked, { userId: s.userId, deviceId: s.deviceId, sid: s.sid });
    await this.wipe();
    return { ...result, owed: this.owedNow() };
  }
}
