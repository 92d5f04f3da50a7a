import { DurableObject } from "cloudflare:workers";
import { b64url, fromB64url, utf8 } from "../crypto/encoding";
import { hmacKey, hmacSign } from "../crypto/random";
import type { Env } from "../env";
import { getDb } from "./db";
import {
  type EndResult,
  KEY,
  live,
  OUTBOX,
  OUTBOX_RETRY_MS,
  type Outbox,
  type Owed,
  type SessionState,
  USER_MAX_AGE_MS,
  type UserSnapshot,
  userSnapshot,
} from "./device-session-state";
import { deleteEndedRow, type EndedRow, type LiveJti, putOnBlacklist } from "./revocations";
import { findUserById } from "./users";

/**
 * The device session object's own storage (its state, its outbox of obligations, the alarm) and
 * the refresh token's MAC. Its RPC methods, which decide, are in DeviceSession (device-session.ts).
 */
export abstract class SessionStore extends DurableObject<Env> {
  /**
   * The session as this instance last read or wrote it (undefined: not read yet; null: none).
   * Storage is written only through this object, and a call that throws resets the object (and
   * this copy with it), so the copy is what storage holds; it saves decoding the state on every call.
   */
  protected session: SessionState | null | undefined;
  /** The alarm this instance set (ms). Expiry only moves later, and an early alarm sets itself again. */
  protected alarmAt: number | undefined;
  /** The session secret's HMAC key, imported once. */
  protected macKey: { secret: string; key: Promise<CryptoKey> } | undefined;

  protected read(): SessionState | undefined {
    if (this.session === undefined) this.session = this.ctx.storage.kv.get<SessionState>(KEY) ?? null;
    return this.session ?? undefined;
  }

  protected async write(s: SessionState): Promise<void> {
    this.ctx.storage.kv.put(KEY, s);
    this.session = s;
    // A rotation renews the expiry every time; the alarm moves only when it would fire too late.
    if (this.alarmAt === undefined || this.alarmAt > s.expiresAt) {
      await this.ctx.storage.setAlarm(s.expiresAt);
      this.alarmAt = s.expiresAt;
    }
  }

  /** Ends the session's state; an unsettled outbox stays, with the alarm that carries it out. */
  protected async wipe(): Promise<void> {
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

  protected outbox(): Outbox | undefined {
    return this.ctx.storage.kv.get<Outbox>(OUTBOX);
  }

  protected owedNow(): Owed {
    const box = this.outbox();
    return { jtis: box?.jtis ?? [], rows: box?.rows ?? [] };
  }

  /**
   * Records obligations that an answer hands to the caller (see Outbox), and makes sure the alarm
   * comes to carry them out should the caller never settle them.
   */
  protected async owe(jtis: LiveJti[], row?: EndedRow): Promise<void> {
    if (!jtis.length && !row) return;
    const box = this.outbox() ?? { jtis: [], rows: [], attempt: 0 };
    const known = new Set(box.jtis.map((j) => j.jti));
    box.jtis.push(...jtis.filter((j) => !known.has(j.jti)));
    if (row && !box.rows.some((r) => r.sid === row.sid)) box.rows.push(row);
    this.ctx.storage.kv.put(OUTBOX, box);
    await this.alarmBy(Date.now() + (OUTBOX_RETRY_MS[box.attempt] ?? 3_600_000));
  }

  /** Moves the alarm earlier to `at` when it is later (or unset). */
  protected async alarmBy(at: number): Promise<void> {
    if (this.alarmAt === undefined || this.alarmAt > at) {
      await this.ctx.storage.setAlarm(at);
      this.alarmAt = at;
    }
  }

  /** The alarm's part: carry out an unsettled outbox, or back off and come again. */
  protected async deliverOutbox(box: Outbox, now: number): Promise<void> {
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
  protected async mac(s: SessionState, counter: number): Promise<Uint8Array<ArrayBuffer>> {
    if (this.macKey?.secret !== s.secret) {
      // The secret is the object's own (newSecret), so always valid base64url.
      this.macKey = { secret: s.secret, key: hmacKey(fromB64url(s.secret) as Uint8Array<ArrayBuffer>) };
    }
    return hmacSign(await this.macKey.key, `${s.sid}.${counter}`);
  }

  protected async refreshToken(s: SessionState, counter: number): Promise<string> {
    const body = b64url(utf8([s.realm, s.userId, s.deviceId, s.sid, counter].join("|")));
    return `rt1.${body}.${b64url(await this.mac(s, counter))}`;
  }

  protected serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.ctx.blockConcurrencyWhile(fn);
  }

  /** The account: the kept copy while it is younger than USER_MAX_AGE_MS, else read from D1 (and kept). */
  protected async currentUser(s: SessionState, now: number): Promise<UserSnapshot | null> {
    if (s.user && s.userAt !== undefined && now >= s.userAt && now - s.userAt < USER_MAX_AGE_MS) return s.user;
    const found = await findUserById(getDb(this.env.DB), s.realm, s.userId);
    if (!found) return null;
    s.user = userSnapshot(found);
    s.userAt = now;
    return s.user;
  }

  protected endResult(s: SessionState, now: number): Omit<EndResult, "owed"> {
    return { ended: true, sid: s.sid, revoked: s.jtis.filter((j) => live(j, now)) };
  }

  /** Ends the session, recording what its end obliges (its live tokens, its index row) in the outbox. */
  protected async endOwing(s: SessionState, now: number): Promise<EndResult> {
    const result = this.endResult(s, now);
    await this.owe(result.revoked, { userId: s.userId, deviceId: s.deviceId, sid: s.sid });
    await this.wipe();
    return { ...result, owed: this.owedNow() };
  }
}
