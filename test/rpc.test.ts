// AuthService (api.md §7), reached the way a Pages project or another Worker reaches it: a second
// worker ("consumer", test/workers/consumer.js) bound to the AuthService entrypoint through a real
// service binding. Nothing here calls the class directly.
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { api, claimsOf, createRealm, deviceId, login, newSession, PASSWORD, signUp, uniqueEmail } from "./helpers";
import { frozenClock, MINUTE, refresh, verifyRpc } from "./session-helpers";

afterEach(() => {
  vi.useRealTimers();
});

const consumer = (path: string, init?: RequestInit) => env.CONSUMER.fetch(`http://consumer${path}`, init);

describe("AuthService.verify over the service binding", () => {
  it("accepts a good access token and returns its claims", async () => {
    const { pair, user, email } = await newSession();
    const res = await verifyRpc(pair.access_token);
    expect(res).toEqual({ ok: true, claims: claimsOf(pair.access_token) });
    expect(res.claims).toMatchObject({
      type: "access",
      sub: user.id,
      did: pair.device_id,
      realm: "default",
      email,
      fresh: true,
    });
    expect(await verifyRpc(pair.access_token, { strict: true, fresh: true, roles: user.roles })).toMatchObject({
      ok: true,
    });
  });

  it("says token_revoked after logout", async () => {
    const { pair } = await newSession();
    expect((await api("POST", "/v1/logout", { token: pair.access_token, body: {} })).status).toBe(204);
    expect(await verifyRpc(pair.access_token)).toEqual({
      ok: false,
      code: "token_revoked",
      message: expect.any(String),
    });
    expect(await verifyRpc(pair.access_token, { strict: true })).toMatchObject({ ok: false, code: "session_revoked" });
  });

  it("says token_expired for an expired token", async () => {
    const clock = frozenClock();
    const { pair } = await newSession();
    clock.advance(14 * MINUTE);
    expect(await verifyRpc(pair.access_token)).toMatchObject({ ok: true });
    clock.advance(2 * MINUTE);
    expect(await verifyRpc(pair.access_token)).toEqual({
      ok: false,
      code: "token_expired",
      message: expect.any(String),
    });
  });

  it("says invalid_token for garbage and for tokens of the wrong kind or realm", async () => {
    const { pair } = await newSession();
    const pub = await api("POST", "/v1/tokens/public", { body: {} });
    const [h, p, s] = pair.access_token.split(".") as [string, string, string];
    const cases: unknown[] = [
      "garbage",
      "",
      "a.b.c",
      `${h}.${p}.${s.slice(0, -4)}AAAA`,
      pub.body.token,
      pair.refresh_token,
      null,
      12345,
      "x".repeat(5000),
    ];
    for (const token of cases) {
      expect(await verifyRpc(token), String(token).slice(0, 40)).toEqual({
        ok: false,
        code: "invalid_token",
        message: expect.any(String),
      });
    }
    expect(await verifyRpc(pair.access_token, { realm: "elsewhere" })).toMatchObject({
      ok: false,
      code: "invalid_token",
    });
  });

  it("with fresh: a token minted by refresh is fresh_token_required", async () => {
    const { pair } = await newSession();
    const refreshed = await refresh(pair.refresh_token);
    expect(refreshed.status).toBe(200);
    expect(await verifyRpc(pair.access_token, { fresh: true })).toMatchObject({ ok: true });
    expect(await verifyRpc(refreshed.body.access_token, { fresh: true })).toMatchObject({
      ok: false,
      code: "fresh_token_required",
    });
    expect(await verifyRpc(refreshed.body.access_token)).toMatchObject({ ok: true });
  });

  it("with roles: a normal user lacking admin is forbidden", async () => {
    const { pair, user } = await newSession();
    expect(user.roles).not.toContain("admin");
    expect(await verifyRpc(pair.access_token, { roles: ["admin"] })).toMatchObject({ ok: false, code: "forbidden" });
    expect(await verifyRpc(pair.access_token, { roles: [...user.roles, "admin"] })).toMatchObject({
      ok: false,
      code: "forbidden",
    });
    expect(await verifyRpc(pair.access_token, { roles: [] })).toMatchObject({ ok: true });
  });

  it("with strict: a device deleted by another device is refused at once", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const victim = await login(email, { device_id: deviceId("v") });
    const actor = await login(email, { device_id: deviceId("a") });
    expect(await verifyRpc(victim.access_token, { strict: true })).toMatchObject({ ok: true });
    const del = await api("DELETE", `/v1/devices/${victim.device_id}`, { token: actor.access_token });
    expect(del.status).toBe(204);
    expect(await verifyRpc(victim.access_token, { strict: true })).toMatchObject({
      ok: false,
      code: "session_revoked",
    });
    expect(await verifyRpc(actor.access_token, { strict: true })).toMatchObject({ ok: true });
  });
});

describe("AuthService.verify with strict: the account as it is now (api.md §16)", () => {
  it("a user disabled in D1 is account_disabled with strict (as HTTP /me says), pending is account_pending", async () => {
    const { pair, user } = await newSession();
    expect(await verifyRpc(pair.access_token, { strict: true })).toMatchObject({ ok: true });
    await env.DB.prepare("UPDATE users SET status = 'disabled' WHERE id = ?").bind(user.id).run();
    const me = await api("GET", "/v1/users/me", { token: pair.access_token });
    expect(me.status).toBe(403);
    expect(me.body.error.code).toBe("account_disabled");
    expect(await verifyRpc(pair.access_token, { strict: true })).toMatchObject({
      ok: false,
      code: "account_disabled",
    });
    await env.DB.prepare("UPDATE users SET status = 'pending' WHERE id = ?").bind(user.id).run();
    expect(await verifyRpc(pair.access_token, { strict: true })).toMatchObject({ ok: false, code: "account_pending" });
    await env.DB.prepare("DELETE FROM users WHERE id = ?").bind(user.id).run();
    expect(await verifyRpc(pair.access_token, { strict: true })).toMatchObject({ ok: false, code: "user_not_found" });
  });

  it("a demoted admin: roles are judged by the account's current roles with strict", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    await env.DB.prepare(`UPDATE users SET roles = '["admin","user"]' WHERE id = ?`).bind(user.id).run();
    const pair = await login(email);
    expect(claimsOf(pair.access_token).roles).toContain("admin");
    expect(await verifyRpc(pair.access_token, { strict: true, roles: ["admin"] })).toMatchObject({ ok: true });
    await env.DB.prepare(`UPDATE users SET roles = '["user"]' WHERE id = ?`).bind(user.id).run();
    expect(await verifyRpc(pair.access_token, { strict: true, roles: ["admin"] })).toMatchObject({
      ok: false,
      code: "forbidden",
    });
    // Without strict the token's own claims decide (documented: until the token expires).
    expect(await verifyRpc(pair.access_token, { roles: ["admin"] })).toMatchObject({ ok: true });
    expect(await verifyRpc(pair.access_token, { strict: true, roles: ["user"] })).toMatchObject({ ok: true });
  });

  it("a session begun before a password reset is session_revoked with strict, even without its index row", async () => {
    const { pair, user } = await newSession();
    await env.DB.prepare("DELETE FROM devices WHERE user_id = ?").bind(user.id).run();
    await env.DB.prepare("UPDATE users SET sessions_valid_after = ? WHERE id = ?")
      .bind(new Date(Date.now() + 1000).toISOString(), user.id)
      .run();
    expect(await verifyRpc(pair.access_token, { strict: true })).toMatchObject({
      ok: false,
      code: "session_revoked",
    });
  });
});

describe("AuthService.getUser over the service binding", () => {
  it("returns the User without the password hash, and null for an unknown id", async () => {
    const { user } = await newSession();
    const res = await consumer(`/user?id=${encodeURIComponent(user.id)}`);
    expect(res.status).toBe(200);
    const text = await res.text();
    const got = JSON.parse(text);
    expect(got).toEqual(user);
    expect(Object.keys(got).some((k) => /pass|hash/i.test(k))).toBe(false);
    expect(text).not.toContain("pbkdf2");

    // realm: a user of another realm is not found in `default`, and is found in its own.
    const realm = await createRealm();
    const other = await signUp(uniqueEmail(), {}, `/v1/realms/${realm}`);
    expect(await (await consumer(`/user?id=${other.id}`)).json()).toBeNull();
    expect(await (await consumer(`/user?id=${other.id}&realm=${realm}`)).json()).toEqual(other);

    const unknown = await consumer("/user?id=does-not-exist");
    expect(unknown.status).toBe(200);
    expect(await unknown.json()).toBeNull();
  });
});

describe("AuthService.fetch: the HTTP API over the binding", () => {
  it("forwards /api/auth/health", async () => {
    const res = await consumer("/api/auth/health");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
    expect(res.headers.get("X-Request-Id")).toBeTruthy();
  });

  it("forwards a login, and the tokens it returns work", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const res = await consumer("/api/auth/v1/tokens", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password: PASSWORD, description: "through pages" }),
    });
    expect(res.status).toBe(200);
    const pair = (await res.json()) as any;
    expect(pair).toMatchObject({ token_type: "Bearer", user: { email } });
    expect(await verifyRpc(pair.access_token, { strict: true })).toMatchObject({ ok: true });

    const meRes = await consumer("/api/auth/v1/users/me", {
      headers: { Authorization: `Bearer ${pair.access_token}` },
    });
    expect(meRes.status).toBe(200);
    expect(((await meRes.json()) as any).email).toBe(email);

    const bad = await consumer("/api/auth/v1/tokens", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password: "wrong password!" }),
    });
    expect(bad.status).toBe(401);
    expect(((await bad.json()) as any).error.code).toBe("invalid_credentials");
  });
});
