import { secondFactorDone } from "../auth-methods/amr";
import { newSecret, timingSafeEqual } from "../crypto/random";
import {
  begunBefore,
  type CheckResult,
  type DeviceView,
  type EndResult,
  INDEX_EVERY_MS,
  KEY,
  live,
  MAX_LIVE_JTIS,
  MAX_LIVE_JTIS_IN_GRACE,
  MAX_SPENT,
  OUTBOX,
  type Owed,
  REFRESH_GRACE_MS,
  type RefreshResult,
  type SessionState,
  type StartInput,
  validAfterMs,
  view,
} from "./device-session-state";
import { SessionStore } from "./device-session-store";
import type { LiveJti } from "./revocations";

export * from "./device-session-state";

/**
 * One device's session. Single-threaded and authoritative: rotation, reuse detection and
 * logout are decided here, so no race between concurrent requests can be lost. Every method
 * runs inside blockConcurrencyWhile, so no other call interleaves with it.
 */
export class DeviceSession extends SessionStore {
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
}
