// The DeviceSession Durable Object itself: durable storage, the expiry alarm, the strict check's
// verdicts, and what it keeps (never a refresh token).
import { evictDurableObject, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { b64url } from "../src/crypto/encoding";
import { MAX_LIVE_JTIS, parseRefreshToken, type SessionState } from "../src/storage/device-session";
import { apiWithEnv, claimsOf, newSession } from "./helpers";
import { codeOf, DAY, deviceStub, frozenClock, MINUTE, me, refresh, SECOND, strictProbe } from "./session-helpers";

afterEach(() => {
  vi.useRealTimers();
});

type Stub = ReturnType<typeof deviceStub>;

/** What the object keeps in storage, and its alarm. */
const stored = (stub: Stub) =>
  runInDurableObject(stub, async (_instance, state) => ({
    session: state.storage.kv.get<SessionState>("session"),
    keys: [...(await state.storage.list()).keys()],
    alarm: await state.storage.getAlarm(),
  }));

async function loggedIn() {
  const { user, pair } = await newSession();
  return { user, pair, stub: deviceStub(user.id, pair.device_id) };
}

describe("DeviceSession storage", () => {
  it("survives eviction: the refresh token and the session's access tokens still work", async () => {
    const { pair, stub } = await loggedIn();
    const before = await stub.get();
    expect(before).not.toBeNull();
    // A mark in memory shows that the instance really goes away.
    await runInDurableObject(stub, (instance) => {
      (instance as unknown as { mark?: number }).mark = 1;
    });
    await evictDurableObject(stub);
    expect(
      await runInDurableObject(stub, (instance) => (instance as unknown as { mark?: number }).mark),
    ).toBeUndefined();

    expect(await stub.get()).toEqual(before);
    expect((await strictProbe(pair.access_token)).status).toBe(404);
    const res = await refresh(pair.refresh_token);
    expect(res.status).toBe(200);
    expect(claimsOf(res.body.access_token).sid).toBe(before!.sid);

    await evictDurableObject(stub);
    expect((await refresh(res.body.refresh_token)).status).toBe(200);
  });

  it("keeps no refresh token, only the per-session secret and the counter", async () => {
    const { pair, stub } = await loggedIn();
    const r1 = await refresh(pair.refresh_token);
    const { session, keys } = await stored(stub);
    expect(keys).toEqual(["session"]);
    expect(session).toMatchObject({ counter: 1, deviceId: pair.device_id, secret: expect.any(String) });
    const text = JSON.stringify(session);
    for (const token of [pair.refresh_token, r1.body.refresh_token]) {
      expect(text).not.toContain(token);
      expect(text).not.toContain(token.split(".")[2]);
    }
    // 256 bits of secret.
    expect(Buffer.from(session!.secret, "base64url").byteLength).toBe(32);
  });

  it("keeps the account as its first refresh read it, without the password hash", async () => {
    const { user, pair, stub } = await loggedIn();
    // The login's own read of the account is not kept: the first refresh reads D1.
    expect((await stored(stub)).session).not.toHaveProperty("user");
    await refresh(pair.refresh_token);
    const { session } = await stored(stub);
    expect(session?.user).toMatchObject({ id: user.id, email: user.email, roles: user.roles, status: "active" });
    expect(session?.user).not.toHaveProperty("passwordHash");
    expect(JSON.stringify(session)).not.toContain("pbkdf2");
  });

  it("keeps the jtis of live access tokens and drops expired ones", async () => {
    const clock = frozenClock();
    const { pair, stub } = await loggedIn();
    const r1 = await refresh(pair.refresh_token);
    const jti = (t: string) => claimsOf(t).jti;
    expect((await stored(stub)).session!.jtis.map((j) => j.jti)).toEqual([
      jti(pair.access_token),
      jti(r1.body.access_token),
    ]);

    clock.advance(16 * MINUTE);
    const r2 = await refresh(r1.body.refresh_token);
    expect((await stored(stub)).session!.jtis.map((j) => j.jti)).toEqual([jti(r2.body.access_token)]);

    // Ending the session hands back the live ones, for the blacklist, and keeps them (with the
    // index row to delete) in its outbox until the caller settles them; then nothing is left.
    const ended = await stub.end({ now: clock.now });
    expect(ended).toMatchObject({ ended: true, revoked: [{ jti: jti(r2.body.access_token) }] });
    expect(ended.owed.jtis.map((j) => j.jti)).toEqual([jti(r2.body.access_token)]);
    expect(ended.owed.rows).toEqual([
      { userId: pair.user.id, deviceId: pair.device_id, sid: claimsOf(pair.access_token).sid },
    ]);
    expect((await stored(stub)).keys).toEqual(["outbox"]);
    await stub.settle({ jtis: ended.owed.jtis.map((j) => j.jti), sids: ended.owed.rows.map((r) => r.sid) });
    expect((await stored(stub)).keys).toEqual([]);
  });

  it("keeps at most MAX_LIVE_JTIS access tokens: a refresh past that revokes the oldest", async () => {
    const { pair, stub } = await loggedIn();
    const jti = (t: string) => claimsOf(t).jti;
    const tokens = [pair.access_token];
    let refreshToken = pair.refresh_token;
    for (let i = 0; i < MAX_LIVE_JTIS + 2; i++) {
      // Waits for the work done after the answer (the blacklist writes) before the next call.
      const r = await apiWithEnv({}, "POST", "/v1/tokens/refresh", { body: { refresh_token: refreshToken } });
      expect(r.status).toBe(200);
      tokens.push(r.body.access_token);
      refreshToken = r.body.refresh_token;
    }
    // The state stays bounded: the newest MAX_LIVE_JTIS, in order.
    const kept = (await stored(stub)).session!.jtis.map((j) => j.jti);
    expect(kept).toEqual(tokens.slice(-MAX_LIVE_JTIS).map(jti));
    // The three pushed out are revoked everywhere, strict or not; the ones kept still work.
    for (const old of tokens.slice(0, 3)) {
      expect(codeOf(await me(old))).toBe("token_revoked");
      expect(codeOf(await strictProbe(old))).toBe("token_revoked");
    }
    expect((await me(tokens[3] as string)).status).toBe(200);
    expect((await strictProbe(tokens.at(-1) as string)).status).toBe(404);
    // Ending the session hands back only what it kept.
    expect((await stub.end({ now: Date.now() })).revoked.map((j) => j.jti)).toEqual(kept);
  });

  it("replays within the grace window revoke nothing, even more of them than MAX_LIVE_JTIS", async () => {
    const { pair, stub } = await loggedIn();
    const burst = await Promise.all(Array.from({ length: MAX_LIVE_JTIS + 8 }, () => refresh(pair.refresh_token)));
    expect(burst.map((r) => r.status).every((s) => s === 200)).toBe(true);
    const tokens = [pair.access_token, ...burst.map((r) => r.body.access_token as string)];
    expect((await stored(stub)).session!.jtis).toHaveLength(tokens.length);
    for (const token of tokens) expect((await strictProbe(token)).status).toBe(404);
  });

  it("a refresh with a wrong MAC changes nothing", async () => {
    const { pair, stub } = await loggedIn();
    const before = (await stored(stub)).session;
    const loc = parseRefreshToken(pair.refresh_token)!;
    const wrong = new Uint8Array(loc.mac);
    wrong[0]! ^= 1;
    const res = await stub.refresh({
      sid: loc.sid,
      counter: loc.counter,
      mac: wrong,
      now: Date.now(),
      refreshTtlMs: 30 * DAY,
      access: { jti: "x", exp: Math.floor(Date.now() / 1000) + 900 },
    });
    expect(res).toEqual({ ok: false, code: "invalid_token", revoked: [], owed: { jtis: [], rows: [] } });
    expect((await stored(stub)).session).toEqual(before);
  });
});

describe("DeviceSession alarm", () => {
  it("is set to the session's expiry, and after expiry removes everything", async () => {
    const clock = frozenClock();
    const { pair, stub } = await loggedIn();
    const { session, alarm } = await stored(stub);
    expect(session!.expiresAt).toBe(clock.now + 30 * DAY);
    expect(alarm).toBe(session!.expiresAt);

    clock.advance(30 * DAY + SECOND);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stored(stub)).toEqual({ session: undefined, keys: [], alarm: null });
    expect(await stub.get()).toBeNull();

    const res = await refresh(pair.refresh_token);
    expect({ status: res.status, code: codeOf(res) }).toEqual({ status: 401, code: "session_revoked" });
  });

  it("before expiry keeps the session and sets itself again", async () => {
    const clock = frozenClock();
    const { pair, stub } = await loggedIn();
    const { session: before } = await stored(stub);

    clock.advance(DAY);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const after = await stored(stub);
    expect(after.session).toEqual(before);
    expect(after.alarm).toBe(before!.expiresAt);

    const res = await refresh(pair.refresh_token);
    expect(res.status).toBe(200);
    // Rotation renews the expiry; the alarm stays where it was and, firing then, sets itself again.
    const renewed = await stored(stub);
    expect(renewed.session!.expiresAt).toBe(clock.now + 30 * DAY);
    expect(renewed.alarm).toBe(before!.expiresAt);
    clock.advance(before!.expiresAt - clock.now + SECOND);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await stored(stub)).toMatchObject({ session: renewed.session, alarm: renewed.session!.expiresAt });
    expect((await refresh(res.body.refresh_token)).status).toBe(200);
    // Past the latest expiry it ends the session.
    clock.advance((await stored(stub)).session!.expiresAt - clock.now + SECOND);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect((await stored(stub)).keys).toEqual([]);
  });
});

describe("DeviceSession strict check", () => {
  it("tells a session that is gone or replaced from a revoked token in a live session", async () => {
    const { pair, stub } = await loggedIn();
    const claims = claimsOf(pair.access_token);
    const now = Date.now();
    expect(await stub.check({ sid: claims.sid, jti: claims.jti, now })).toBe("ok");
    expect(await stub.check({ sid: claims.sid, jti: "not-one-of-ours", now })).toBe("token_revoked");
    expect(await stub.check({ sid: "another-session", jti: claims.jti, now })).toBe("session_revoked");
    expect(await stub.check({ sid: claims.sid, jti: claims.jti, now: now + 31 * DAY })).toBe("session_revoked");

    // Over HTTP: drop the login's jti from the live session; that token alone is refused, as token_revoked.
    const r1 = await refresh(pair.refresh_token);
    await runInDurableObject(stub, (_instance, state) => {
      const s = state.storage.kv.get<SessionState>("session")!;
      state.storage.kv.put("session", { ...s, jtis: s.jtis.filter((j) => j.jti !== claims.jti) });
    });
    // The object keeps the state in memory too; a new instance reads what was written behind its back.
    await evictDurableObject(stub);
    const refused = await strictProbe(pair.access_token);
    expect({ status: refused.status, code: codeOf(refused) }).toEqual({ status: 401, code: "token_revoked" });
    expect((await strictProbe(r1.body.access_token)).status).toBe(404);

    await stub.end({ now: Date.now() });
    expect(await stub.check({ sid: claims.sid, jti: claims.jti, now: Date.now() })).toBe("session_revoked");
    const gone = await strictProbe(r1.body.access_token);
    expect({ status: gone.status, code: codeOf(gone) }).toEqual({ status: 401, code: "session_revoked" });
  });
});

describe("parseRefreshToken", () => {
  it("reads a real token and refuses every non-canonical spelling of it", async () => {
    const { pair, user } = await newSession();
    const token = pair.refresh_token as string;
    const loc = parseRefreshToken(token);
    expect(loc).toMatchObject({ realm: "default", userId: user.id, deviceId: pair.device_id, counter: 0 });
    expect(loc!.mac.byteLength).toBe(32);
    expect(loc!.sid).toBe(claimsOf(pair.access_token).sid);

    const [, body, mac] = token.split(".") as [string, string, string];
    const fields = Buffer.from(body, "base64url").toString("utf8").split("|");
    const withCounter = (c: string) =>
      `rt1.${b64url(new TextEncoder().encode([...fields.slice(0, 4), c].join("|")))}.${mac}`;
    expect(parseRefreshToken(withCounter("0"))).not.toBeNull();
    for (const bad of [
      withCounter("00"),
      withCounter("+0"),
      withCounter("0x0"),
      withCounter("1e0"),
      withCounter(" 0"),
      withCounter("-0"),
      withCounter("1234567890"),
      `rt1.${body}=.${mac}`,
      `rt1.${body}.${mac}=`,
      `RT1.${body}.${mac}`,
      `rt1.${body}.${mac}.x`,
      `rt1.${body}.${mac.slice(0, -1)}`,
      `rt1.${body.slice(0, -1)}.${mac}`,
    ]) {
      expect(parseRefreshToken(bad), bad).toBeNull();
    }
    // The last base64url character of the MAC carries 2 spare bits: a spelling that only changes
    // them decodes to the same bytes, and must be refused.
    const last = mac.at(-1)!;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const i = alphabet.indexOf(last);
    const alias = `rt1.${body}.${mac.slice(0, -1)}${alphabet[(i & ~3) | ((i + 1) & 3)]}`;
    expect(alias).not.toBe(token);
    expect(Buffer.from(alias.split(".")[2]!, "base64url")).toEqual(Buffer.from(mac, "base64url"));
    expect(parseRefreshToken(alias)).toBeNull();
  });
});
