// Device sessions (api.md §2, §3): public tokens, login, refresh rotation with a 10 s grace and
// reuse detection, logout, devices. Every test makes its own users and devices.
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { afterEach, describe, expect, it, vi } from "vitest";
import { b64url, fromB64url } from "../src/crypto/encoding";
import { ApiError } from "../src/errors";
import { makeDeps } from "../src/services/deps";
import { startSession } from "../src/services/sessions";
import { INDEX_EVERY_MS, USER_MAX_AGE_MS } from "../src/storage/device-session";
import { findUserById } from "../src/storage/users";
import { api, claimsOf, deviceId, login, newSession, PASSWORD, signUp, uniqueEmail, waitFor } from "./helpers";
import {
  codeOf,
  DAY,
  deviceStub,
  frozenClock,
  listDevices,
  MINUTE,
  me,
  refresh,
  SECOND,
  strictProbe,
  verifyRpc,
} from "./session-helpers";

afterEach(() => {
  vi.useRealTimers();
});

const DEVICE_ID = /^[A-Za-z0-9]{32}$/;

/** A 401 with `code`; on bearer routes (not the refresh body) with WWW-Authenticate naming the rejected token. */
function expect401(res: { status: number; body: any; headers: Headers }, code: string, bearerRoute = true) {
  expect({ status: res.status, code: codeOf(res) }).toEqual({ status: 401, code });
  if (bearerRoute) expect(res.headers.get("WWW-Authenticate")).toContain('error="invalid_token"');
}

/** A user logged in on `n` devices; pairs[i] belongs to devices[i]. */
async function userOnDevices(n: number) {
  const email = uniqueEmail();
  const user = await signUp(email);
  const devices = Array.from({ length: n }, (_, i) => deviceId(`d${i}`));
  const pairs = [];
  for (const d of devices) pairs.push(await login(email, { device_id: d, description: `device ${d.slice(0, 4)}` }));
  return { email, user, devices, pairs };
}

describe("POST /v1/tokens/public", () => {
  it("returns 201 with a public token carrying did and no sub", async () => {
    const did = deviceId("pub");
    const res = await api("POST", "/v1/tokens/public", { body: { device_id: did } });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ token: expect.any(String), device_id: did, expires_in: 30 * 24 * 3600 });
    const claims = claimsOf(res.body.token);
    expect(claims.type).toBe("public");
    expect(claims.did).toBe(did);
    expect(claims).not.toHaveProperty("sub");
    expect(claims).not.toHaveProperty("sid");
    expect(claims.realm).toBe("default");
    expect(claims.exp - claims.iat).toBe(res.body.expires_in);
  });

  it.each([
    ["too short", "abc"],
    ["too long", "A".repeat(33)],
    ["wrong characters", `${"a".repeat(31)}-`],
    ["unicode", "é".repeat(32)],
  ])("replaces a bad device_id (%s) with a generated one", async (_label, bad) => {
    const res = await api("POST", "/v1/tokens/public", { body: { device_id: bad } });
    expect(res.status).toBe(201);
    expect(res.body.device_id).toMatch(DEVICE_ID);
    expect(res.body.device_id).not.toBe(bad);
    expect(claimsOf(res.body.token).did).toBe(res.body.device_id);
  });

  it("generates a different device id for each call without one", async () => {
    const [a, b] = await Promise.all([
      api("POST", "/v1/tokens/public", { body: {} }),
      api("POST", "/v1/tokens/public", { body: {} }),
    ]);
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(a.body.device_id).toMatch(DEVICE_ID);
    expect(b.body.device_id).toMatch(DEVICE_ID);
    expect(a.body.device_id).not.toBe(b.body.device_id);
  });

  it("is refused on an access route (401 invalid_token)", async () => {
    const res = await api("POST", "/v1/tokens/public", { body: {} });
    expect401(await me(res.body.token), "invalid_token");
    expect401(await listDevices(res.body.token), "invalid_token");
  });

  it("gives its device id to a login that presents it", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const pub = await api("POST", "/v1/tokens/public", { body: {} });
    const res = await api("POST", "/v1/tokens", {
      token: pub.body.token,
      body: { email, password: "correct horse battery", device_id: deviceId("ignored") },
    });
    expect(res.status).toBe(200);
    expect(res.body.device_id).toBe(pub.body.device_id);
    expect(claimsOf(res.body.access_token).did).toBe(pub.body.device_id);
  });
});

describe("login", () => {
  it("returns a TokenPair whose access token is fresh and stores the description", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const did = deviceId("login");
    const pair = await login(email, { device_id: did, description: "Pixel 9, work" });
    expect(pair).toMatchObject({
      token_type: "Bearer",
      expires_in: 900,
      refresh_expires_in: 30 * 24 * 3600,
      device_id: did,
      user: { id: user.id, email },
    });
    expect(pair.user).not.toHaveProperty("password_hash");
    const claims = claimsOf(pair.access_token);
    expect(claims).toMatchObject({ type: "access", sub: user.id, did, fresh: true, realm: "default" });
    expect(claims.sid).toEqual(expect.any(String));
    expect(pair.refresh_token).not.toMatch(/^eyJ/); // opaque, not a JWT
    const list = await listDevices(pair.access_token);
    expect(list.status).toBe(200);
    expect(list.body.devices).toEqual([
      expect.objectContaining({ device_id: did, description: "Pixel 9, work", current: true, push_token: null }),
    ]);
  });

  it("re-login on the same device replaces that device's session", async () => {
    const did = deviceId("relog");
    const { email, pair: first } = await newSession({ device_id: did });
    const second = await login(email, { device_id: did });
    expect(claimsOf(second.access_token).sid).not.toBe(claimsOf(first.access_token).sid);

    expect401(await refresh(first.refresh_token), "session_revoked", false);
    // Strict routes ask the device's object: the old session is gone.
    expect401(await strictProbe(first.access_token), "session_revoked");
    expect(await verifyRpc(first.access_token, { strict: true })).toMatchObject({ ok: false, code: "session_revoked" });
    // Other routes read the blacklist.
    expect401(await me(first.access_token), "token_revoked");

    // The new session is untouched, and the device is listed once.
    expect((await me(second.access_token)).status).toBe(200);
    expect((await strictProbe(second.access_token)).status).toBe(404);
    const list = await listDevices(second.access_token);
    expect(list.body.devices.map((d: any) => d.device_id)).toEqual([did]);
    expect((await refresh(second.refresh_token)).status).toBe(200);
  });
});

describe("access tokens", () => {
  it("a refresh token used as an access token is 401 invalid_token", async () => {
    const { pair } = await newSession();
    expect401(await me(pair.refresh_token), "invalid_token");
    expect401(await strictProbe(pair.refresh_token), "invalid_token");
  });

  it("a blacklisted access token is rejected, on plain and strict routes", async () => {
    const { pair } = await newSession();
    const other = await login(pair.user.email, { device_id: deviceId("other") });
    expect((await me(pair.access_token)).status).toBe(200);
    const out = await api("POST", "/v1/logout", { token: pair.access_token, body: {} });
    expect(out.status).toBe(204);
    expect401(await me(pair.access_token), "token_revoked");
    expect401(await listDevices(pair.access_token), "token_revoked");
    expect401(await strictProbe(pair.access_token), "session_revoked");
    expect((await me(other.access_token)).status).toBe(200);
  });

  it("expires after 15 minutes (401 token_expired)", async () => {
    const clock = frozenClock();
    const { pair } = await newSession();
    clock.advance(14 * MINUTE);
    expect((await me(pair.access_token)).status).toBe(200);
    clock.advance(2 * MINUTE);
    expect401(await me(pair.access_token), "token_expired");
    expect401(await strictProbe(pair.access_token), "token_expired");
    // The session itself lives on: the refresh token still gives a new access token.
    const next = await refresh(pair.refresh_token);
    expect(next.status).toBe(200);
    expect((await me(next.body.access_token)).status).toBe(200);
  });
});

describe("refresh rotation", () => {
  it("rotates: a new refresh token, an access token that is not fresh, the same session", async () => {
    const { pair, user } = await newSession();
    const res = await refresh(pair.refresh_token);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ token_type: "Bearer", device_id: pair.device_id, user: { id: user.id } });
    expect(res.body.refresh_token).toEqual(expect.any(String));
    expect(res.body.refresh_token).not.toBe(pair.refresh_token);
    const before = claimsOf(pair.access_token);
    const after = claimsOf(res.body.access_token);
    expect(before.fresh).toBe(true);
    expect(after).toMatchObject({ type: "access", fresh: false, sub: user.id, did: pair.device_id, sid: before.sid });
    expect(after.jti).not.toBe(before.jti);
    expect((await me(res.body.access_token)).status).toBe(200);
    expect((await strictProbe(res.body.access_token)).status).toBe(404);
    // The login's access token belongs to the same live session.
    expect((await strictProbe(pair.access_token)).status).toBe(404);
    // And the new refresh token rotates in turn.
    const again = await refresh(res.body.refresh_token);
    expect(again.status).toBe(200);
    expect(again.body.refresh_token).not.toBe(res.body.refresh_token);
  });

  it("replay more than 10 s after rotation is theft: 401 refresh_token_reused and the session ends", async () => {
    const clock = frozenClock();
    const { email, pair } = await newSession();
    const watcher = await login(email, { device_id: deviceId("watch") });
    const rotated = await refresh(pair.refresh_token);
    expect(rotated.status).toBe(200);

    clock.advance(11 * SECOND);
    expect401(await refresh(pair.refresh_token), "refresh_token_reused", false);

    // The newest refresh token is dead too, and so are the session's access tokens.
    expect401(await refresh(rotated.body.refresh_token), "session_revoked", false);
    for (const token of [pair.access_token, rotated.body.access_token]) {
      expect401(await me(token), "token_revoked");
      expect401(await strictProbe(token), "session_revoked");
    }
    // The device is gone from the list; the user's other device is untouched.
    const list = await listDevices(watcher.access_token);
    expect(list.body.devices.map((d: any) => d.device_id)).toEqual([watcher.device_id]);
    expect((await refresh(watcher.refresh_token)).status).toBe(200);
  });

  it("replay inside the 10 s grace window returns the token the rotation produced and revokes nothing", async () => {
    const clock = frozenClock();
    const { pair } = await newSession();
    const rotated = await refresh(pair.refresh_token);
    expect(rotated.status).toBe(200);

    clock.advance(9 * SECOND);
    const retry = await refresh(pair.refresh_token);
    expect(retry.status).toBe(200);
    expect(retry.body.refresh_token).toBe(rotated.body.refresh_token);
    expect(retry.body.access_token).not.toBe(rotated.body.access_token);
    expect(claimsOf(retry.body.access_token).fresh).toBe(false);

    for (const token of [pair.access_token, rotated.body.access_token, retry.body.access_token]) {
      expect((await me(token)).status).toBe(200);
      expect((await strictProbe(token)).status).toBe(404);
    }
    const next = await refresh(rotated.body.refresh_token);
    expect(next.status).toBe(200);
    expect(next.body.refresh_token).not.toBe(rotated.body.refresh_token);
  });

  it("a token rotated away less than 10 s ago, though not the last one, gets the one token that works", async () => {
    const clock = frozenClock();
    const { pair } = await newSession();
    const r1 = await refresh(pair.refresh_token);
    clock.advance(2 * SECOND);
    const r2 = await refresh(r1.body.refresh_token);
    expect(r2.status).toBe(200);
    clock.advance(2 * SECOND);
    const late = await refresh(pair.refresh_token);
    expect(late.status).toBe(200);
    expect(late.body.refresh_token).toBe(r2.body.refresh_token);
    // Once the first rotation is more than 10 s old, that token is theft again.
    clock.advance(7 * SECOND);
    expect401(await refresh(pair.refresh_token), "refresh_token_reused", false);
  });

  it("10 concurrent refreshes with one token all succeed and all hold the same single working token", async () => {
    const clock = frozenClock();
    const { pair } = await newSession();
    const results = await Promise.all(Array.from({ length: 10 }, () => refresh(pair.refresh_token)));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    const refreshTokens = new Set(results.map((r) => r.body.refresh_token));
    expect(refreshTokens.size).toBe(1);
    const [winner] = [...refreshTokens] as [string];
    expect(winner).not.toBe(pair.refresh_token);
    expect(new Set(results.map((r) => r.body.access_token)).size).toBe(10);

    // Not revoked: every access token handed out passes the strict check.
    for (const r of results) expect((await strictProbe(r.body.access_token)).status).toBe(404);

    // Exactly one refresh token works afterwards: the one they all hold.
    const next = await refresh(winner);
    expect(next.status).toBe(200);
    clock.advance(11 * SECOND);
    expect401(await refresh(pair.refresh_token), "refresh_token_reused", false);
    expect401(await refresh(next.body.refresh_token), "session_revoked", false);
  });

  it("a refresh token expires after 30 days without rotation, and each rotation renews it", async () => {
    const clock = frozenClock();
    const a = await newSession();
    const b = await newSession();

    // a rotates every 29 days and lives on.
    clock.advance(29 * DAY);
    const a1 = await refresh(a.pair.refresh_token);
    expect(a1.status).toBe(200);
    clock.advance(29 * DAY);
    const a2 = await refresh(a1.body.refresh_token);
    expect(a2.status).toBe(200);

    // b never rotated: 58 days later its token has expired, and the session with it.
    expect401(await refresh(b.pair.refresh_token), "token_expired", false);
    expect401(await refresh(b.pair.refresh_token), "session_revoked", false);
  });

  it("expires exactly past 30 days", async () => {
    const clock = frozenClock();
    const { pair } = await newSession();
    clock.advance(30 * DAY + SECOND);
    expect401(await refresh(pair.refresh_token), "token_expired", false);
  });
});

/** A refresh token with its parts changed. */
function tamper(token: string, change: { counter?: (c: string) => string; mac?: (m: string) => string }) {
  const [prefix, body, mac] = token.split(".") as [string, string, string];
  let newBody = body;
  if (change.counter) {
    const fields = new TextDecoder().decode(fromB64url(body)!).split("|");
    fields[4] = change.counter(fields[4]!);
    newBody = b64url(new TextEncoder().encode(fields.join("|")));
  }
  return [prefix, newBody, change.mac ? change.mac(mac) : mac].join(".");
}

const flipChar = (s: string, i: number) => s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);

describe("the account kept by the session (refresh without D1)", () => {
  const setInD1 = (sql: string, ...args: unknown[]) =>
    env.DB.prepare(sql)
      .bind(...args)
      .run();

  it("a change made through the API reaches the next refresh at once", async () => {
    const { pair } = await newSession();
    const rotated = (await refresh(pair.refresh_token)).body;
    const patched = await api("PATCH", "/v1/users/me", { token: pair.access_token, body: { full_name: "Renamed" } });
    expect(patched.status).toBe(200);
    const next = await refresh(rotated.refresh_token);
    expect(next.status).toBe(200);
    expect(claimsOf(next.body.access_token).name).toBe("Renamed");
    expect(next.body.user).toMatchObject({ full_name: "Renamed", updated_at: patched.body.updated_at });
  });

  it("the first refresh reads the account: a change between login and that refresh is never missed", async () => {
    const { pair, user } = await newSession();
    // Written straight into D1, past every API route: no session hears of it.
    await setInD1("UPDATE users SET full_name = ? WHERE id = ?", "Since login", user.id);
    const first = await refresh(pair.refresh_token);
    expect(claimsOf(first.body.access_token).name).toBe("Since login");
  });

  it("reads the account from D1 at most once a minute: a write behind its back shows after USER_MAX_AGE_MS", async () => {
    const clock = frozenClock();
    const { pair, user } = await newSession();
    const kept = await refresh(pair.refresh_token);
    expect(claimsOf(kept.body.access_token).name).toBe(user.full_name);
    await setInD1("UPDATE users SET full_name = ? WHERE id = ?", "Behind", user.id);
    clock.advance(USER_MAX_AGE_MS - SECOND);
    const cached = await refresh(kept.body.refresh_token);
    expect(cached.status).toBe(200);
    expect(claimsOf(cached.body.access_token).name).toBe(user.full_name);

    clock.advance(2 * SECOND);
    const reread = await refresh(cached.body.refresh_token);
    expect(claimsOf(reread.body.access_token).name).toBe("Behind");
    expect(reread.body.user.full_name).toBe("Behind");
  });

  it("a password change keeps this device's session and gives its next refresh the account's new updated_at", async () => {
    const clock = frozenClock();
    const { pair } = await newSession();
    const kept = (await refresh(pair.refresh_token)).body;
    clock.advance(5 * SECOND);
    const changed = await api("PUT", "/v1/users/me/password", {
      token: pair.access_token,
      body: {
        password: "another horse battery",
        password_confirmation: "another horse battery",
        current_password: PASSWORD,
      },
    });
    expect(changed.status).toBe(204);
    const current = (await me(kept.access_token)).body;
    expect(current.updated_at).not.toBe(kept.user.updated_at);
    const next = await refresh(kept.refresh_token);
    expect(next.status).toBe(200);
    expect(next.body.user.updated_at).toBe(current.updated_at);
  });

  it("an account found disabled or gone when re-read ends the session: 401 session_revoked, tokens and index row go", async () => {
    const clock = frozenClock();
    for (const change of ["UPDATE users SET status = 'disabled' WHERE id = ?", "DELETE FROM users WHERE id = ?"]) {
      const { email, pair, user } = await newSession();
      const watcher = await login(email, { device_id: deviceId("watch") });
      await setInD1(change, user.id);
      clock.advance(USER_MAX_AGE_MS);
      expect401(await refresh(pair.refresh_token), "session_revoked", false);
      // The object ended the session: its access token is blacklisted and its index row is gone.
      expect401(await strictProbe(pair.access_token), "session_revoked");
      expect401(await me(pair.access_token), "token_revoked");
      const rows = await env.DB.prepare("SELECT device_id FROM devices WHERE user_id = ?").bind(user.id).all();
      expect(rows.results.map((r) => r.device_id)).not.toContain(pair.device_id);
      expect(rows.results.length).toBe(change.startsWith("DELETE") ? 0 : 1);
      // The other device of the account meets the same answer on its next refresh.
      expect401(await refresh(watcher.refresh_token), "session_revoked", false);
    }
  });

  it("moves the device index's last_seen_at at most once a minute from refresh", async () => {
    const clock = frozenClock();
    const { pair } = await newSession();
    const iso = (ms: number) => new Date(ms).toISOString();
    const lastSeen = async (token: string) => (await listDevices(token)).body.devices[0].last_seen_at;
    const loggedInAt = iso(clock.now);

    clock.advance(INDEX_EVERY_MS - SECOND);
    const early = await refresh(pair.refresh_token);
    expect(early.status).toBe(200);
    // An index write would run after the response: give one time to land, then look.
    await new Promise((r) => setTimeout(r, 200));
    expect(await lastSeen(early.body.access_token)).toBe(loggedInAt);

    const later = clock.advance(SECOND);
    const due = await refresh(early.body.refresh_token);
    expect(due.status).toBe(200);
    await waitFor(async () => (await lastSeen(due.body.access_token)) === iso(later));
  });

  it("a refresh puts back an index row that was lost, so log-out-everywhere still finds the session", async () => {
    const clock = frozenClock();
    const { email, pair, user } = await newSession();
    await setInD1("DELETE FROM devices WHERE user_id = ? AND device_id = ?", user.id, pair.device_id);
    clock.advance(INDEX_EVERY_MS);
    const rotated = await refresh(pair.refresh_token);
    expect(rotated.status).toBe(200);
    await waitFor(async () => (await listDevices(rotated.body.access_token)).body.devices.length === 1);

    const other = await login(email, { device_id: deviceId("other") });
    const out = await api("POST", "/v1/logout", { token: other.access_token, body: { all: true } });
    expect(out.status).toBe(204);
    expect401(await refresh(rotated.body.refresh_token), "session_revoked", false);
  });
});

describe("a login racing a password change or a deactivation", () => {
  // The race itself cannot be timed through HTTP; these call startSession as the login route
  // does, with the account as its credential check read it, after the change has landed.
  async function staleLogin(change: (user: { id: string; token: string }) => Promise<unknown>) {
    const { user, pair } = await newSession();
    const deps = await makeDeps(env, Date.now(), () => {});
    const asRead = await findUserById(deps.db, "default", user.id);
    if (!asRead) throw new Error("no user");
    await change({ id: user.id, token: pair.access_token });
    const device = deviceId("racing");
    const outcome = await startSession(deps, asRead, device, { amr: ["pwd"] }).then(
      () => "started",
      (e: unknown) => (e instanceof ApiError ? e.code : String(e)),
    );
    const rows = await env.DB.prepare("SELECT count(*) AS n FROM devices WHERE user_id = ? AND device_id = ?")
      .bind(user.id, device)
      .first<{ n: number }>();
    return { device, outcome, indexed: rows?.n, session: await deviceStub(user.id, device).get() };
  }

  it("a password changed after the check: no session, 401 invalid_credentials", async () => {
    const result = await staleLogin(({ token }) =>
      api("PUT", "/v1/users/me/password", {
        token,
        body: {
          password: "a changed password",
          password_confirmation: "a changed password",
          current_password: PASSWORD,
        },
      }).then((r) => expect(r.status).toBe(204)),
    );
    expect(result).toMatchObject({ outcome: "invalid_credentials", indexed: 0, session: null });
  });

  it("an account disabled after the check: no session, 403 account_disabled", async () => {
    const result = await staleLogin(({ id }) =>
      env.DB.prepare("UPDATE users SET status = 'disabled' WHERE id = ?").bind(id).run(),
    );
    expect(result).toMatchObject({ outcome: "account_disabled", indexed: 0, session: null });
  });

  it("an account unchanged since the check (a profile edit is not a credential): the session starts", async () => {
    const result = await staleLogin(({ token }) =>
      api("PATCH", "/v1/users/me", { token, body: { full_name: "Edited" } }).then((r) => expect(r.status).toBe(200)),
    );
    expect(result).toMatchObject({ outcome: "started", indexed: 1, session: { deviceId: result.device } });
  });
});

describe("tampered and garbage refresh tokens", () => {
  it("a tampered token is 401 invalid_token and does not revoke the session", async () => {
    const { pair } = await newSession();
    const r1 = await refresh(pair.refresh_token);
    expect(r1.status).toBe(200);
    const current = r1.body.refresh_token as string;
    const variants = [
      tamper(current, { mac: (m) => flipChar(m, 10) }), // a MAC character flipped
      tamper(current, { mac: (m) => flipChar(m, m.length - 1) }), // the last one (spare bits)
      tamper(current, { counter: (c) => String(Number(c) + 1) }), // a counter not reached yet
      tamper(current, { counter: (c) => String(Number(c) - 1) }), // the previous counter, current MAC
      tamper(current, { counter: (c) => `0${c}` }), // the same counter spelled with a leading zero
      tamper(current, { counter: (c) => `${c} ` }),
      `${current}A`,
      current.slice(0, -1),
    ];
    for (const bad of variants) {
      expect(bad).not.toBe(current);
      const res = await refresh(bad);
      expect({ bad, status: res.status, code: codeOf(res) }).toEqual({ bad, status: 401, code: "invalid_token" });
    }
    // Nothing was revoked: the access tokens pass the strict check and the real token rotates.
    expect((await strictProbe(r1.body.access_token)).status).toBe(404);
    expect((await strictProbe(pair.access_token)).status).toBe(404);
    const ok = await refresh(current);
    expect(ok.status).toBe(200);
  });

  it("never answers 5xx: garbage gives 401 invalid_token or 400", async () => {
    const { pair } = await newSession();
    const [, body] = pair.refresh_token.split(".") as [string, string];
    const shapes: unknown[] = [
      "x",
      "rt1",
      "rt1..",
      "rt1.a.b",
      "rt1.!!!.???",
      `rt1.${body}`,
      `rt1.${body}.`,
      `rt2.${body}.${"A".repeat(43)}`,
      `rt1.${body}.${"A".repeat(42)}`,
      `rt1.${body}.${"A".repeat(44)}`,
      `rt1.${b64url(new TextEncoder().encode("default|u|d|s|0"))}.${"A".repeat(43)}`,
      `rt1.${b64url(new TextEncoder().encode(`default|u|${"a".repeat(32)}|s|99999999999`))}.${"A".repeat(43)}`,
      `rt1.${b64url(new TextEncoder().encode(`default|u|${"a".repeat(32)}|s|-1`))}.${"A".repeat(43)}`,
      `rt1.${b64url(new Uint8Array([0xff, 0xfe, 0x7c, 0x7c]))}.${"A".repeat(43)}`,
      `rt1.${"A".repeat(600)}.${"A".repeat(43)}`,
      "A".repeat(1024),
      "\u0000\u0001",
      "🔑".repeat(100),
      pair.access_token,
      "",
      "A".repeat(1025),
      null,
      123,
      true,
      {},
      [],
      [pair.refresh_token],
    ];
    for (const shape of shapes) {
      const res = await refresh(shape);
      expect(res.status, `${JSON.stringify(shape)?.slice(0, 80)} → ${res.text}`).toBeLessThan(500);
      expect([
        [401, "invalid_token"],
        [400, "validation_failed"],
      ]).toContainEqual([res.status, codeOf(res)]);
    }
    const odd = [
      api("POST", "/v1/tokens/refresh", { body: {} }),
      api("POST", "/v1/tokens/refresh", { body: null }),
      api("POST", "/v1/tokens/refresh", { raw: "{not json", headers: { "Content-Type": "application/json" } }),
      api("POST", "/v1/tokens/refresh", { raw: "", headers: { "Content-Type": "application/json" } }),
      api("POST", "/v1/tokens/refresh", {
        body: { refresh_token: pair.refresh_token, extra: 1 },
        headers: { "Content-Type": "text/plain" },
      }),
    ];
    for (const res of await Promise.all(odd)) {
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
    }
    // None of it touched the real session.
    expect((await refresh(pair.refresh_token)).status).toBe(200);
  });

  it("property: random strings and one-character mutations of a real token never get 5xx, 200 or a revocation", async () => {
    const { pair } = await newSession();
    const token = pair.refresh_token as string;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.|=+/ ";
    const mutation = fc
      .record({ at: fc.nat({ max: token.length - 1 }), ch: fc.constantFrom(...alphabet) })
      .map(({ at, ch }) => token.slice(0, at) + ch + token.slice(at + 1))
      .filter((t) => t !== token);
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 600 }), mutation), async (candidate) => {
        const res = await refresh(candidate);
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        expect(["invalid_token", "validation_failed", "session_revoked"]).toContain(codeOf(res));
      }),
      { numRuns: 60 },
    );
    // The real session was never disturbed.
    expect((await strictProbe(pair.access_token)).status).toBe(404);
    expect((await refresh(token)).status).toBe(200);
  });

  it("a well-formed token for a session that does not exist is 401 (never 5xx)", async () => {
    const { pair, user } = await newSession();
    const forged = [
      // Another device of a real user: no such session.
      `rt1.${b64url(new TextEncoder().encode(`default|${user.id}|${deviceId("nope")}|abc|0`))}.${pair.refresh_token.split(".")[2]}`,
      // A user that does not exist.
      `rt1.${b64url(new TextEncoder().encode(`default|nobody|${deviceId("x")}|abc|0`))}.${b64url(new Uint8Array(32))}`,
      // Another realm's token on the default realm's route.
      `rt1.${b64url(new TextEncoder().encode(`other|${user.id}|${pair.device_id}|abc|0`))}.${b64url(new Uint8Array(32))}`,
    ];
    const codes = [];
    for (const token of forged) {
      const res = await refresh(token);
      expect(res.status).toBe(401);
      codes.push(codeOf(res));
    }
    expect(codes).toEqual(["session_revoked", "session_revoked", "invalid_token"]);
    expect((await refresh(pair.refresh_token)).status).toBe(200);
  });
});

describe("logout", () => {
  it("logging out one device leaves the others working", async () => {
    const { devices, pairs } = await userOnDevices(3);
    const [a, b, c] = pairs as [any, any, any];
    expect((await api("POST", "/v1/logout", { token: a.access_token, body: {} })).status).toBe(204);

    expect401(await refresh(a.refresh_token), "session_revoked", false);
    expect401(await me(a.access_token), "token_revoked");
    expect401(await strictProbe(a.access_token), "session_revoked");
    for (const p of [b, c]) {
      expect((await me(p.access_token)).status).toBe(200);
      expect((await strictProbe(p.access_token)).status).toBe(404);
    }
    const list = await listDevices(b.access_token);
    expect(list.body.devices.map((d: any) => d.device_id).sort()).toEqual([devices[1], devices[2]].sort());
    expect((await refresh(c.refresh_token)).status).toBe(200);
  });

  it("logout with all: true ends every device", async () => {
    const { email, pairs } = await userOnDevices(3);
    expect((await api("POST", "/v1/logout", { token: pairs[1].access_token, body: { all: true } })).status).toBe(204);
    for (const p of pairs) {
      expect401(await refresh(p.refresh_token), "session_revoked", false);
      expect401(await me(p.access_token), "token_revoked");
      expect401(await strictProbe(p.access_token), "session_revoked");
    }
    const fresh = await login(email, { device_id: deviceId("new") });
    const list = await listDevices(fresh.access_token);
    expect(list.body.devices.map((d: any) => d.device_id)).toEqual([fresh.device_id]);
  });
});

describe("devices", () => {
  it("GET /v1/devices lists only the caller's devices, with current on the calling one", async () => {
    const mine = await userOnDevices(2);
    const theirs = await userOnDevices(1);
    const fromFirst = await listDevices(mine.pairs[0].access_token);
    expect(fromFirst.status).toBe(200);
    const byId = Object.fromEntries(fromFirst.body.devices.map((d: any) => [d.device_id, d]));
    expect(Object.keys(byId).sort()).toEqual([...mine.devices].sort());
    expect(byId[mine.devices[0]!]).toMatchObject({
      current: true,
      description: `device ${mine.devices[0]!.slice(0, 4)}`,
    });
    expect(byId[mine.devices[1]!]).toMatchObject({ current: false });
    for (const d of fromFirst.body.devices) {
      expect(d).toEqual({
        device_id: expect.any(String),
        description: expect.any(String),
        current: expect.any(Boolean),
        created_at: expect.stringMatching(/Z$/),
        last_seen_at: expect.stringMatching(/Z$/),
        push_token: null,
        push_token_updated_at: null,
      });
    }
    const fromSecond = await listDevices(mine.pairs[1].access_token);
    expect(fromSecond.body.devices.find((d: any) => d.current).device_id).toBe(mine.devices[1]);
    const other = await listDevices(theirs.pairs[0].access_token);
    expect(other.body.devices.map((d: any) => d.device_id)).toEqual(theirs.devices);
  });

  it("PUT /v1/devices/current: last_seen_at always moves, push_token_updated_at only when the token changed", async () => {
    const clock = frozenClock();
    const { pair } = await newSession();
    const put = (body: unknown) => api("PUT", "/v1/devices/current", { token: pair.access_token, body });
    const iso = (ms: number) => new Date(ms).toISOString();

    const t1 = clock.advance(SECOND);
    const first = await put({ push_token: "fcm-1" });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({
      device_id: pair.device_id,
      current: true,
      push_token: "fcm-1",
      last_seen_at: iso(t1),
      push_token_updated_at: iso(t1),
    });

    const t2 = clock.advance(5 * SECOND);
    const same = await put({ push_token: "fcm-1" });
    expect(same.status).toBe(200);
    expect(same.body).toMatchObject({ push_token: "fcm-1", last_seen_at: iso(t2), push_token_updated_at: iso(t1) });

    const t3 = clock.advance(5 * SECOND);
    const seen = await put({});
    expect(seen.body).toMatchObject({ push_token: "fcm-1", last_seen_at: iso(t3), push_token_updated_at: iso(t1) });

    const t4 = clock.advance(5 * SECOND);
    const changed = await put({ push_token: "fcm-2", description: "renamed" });
    expect(changed.body).toMatchObject({
      push_token: "fcm-2",
      description: "renamed",
      last_seen_at: iso(t4),
      push_token_updated_at: iso(t4),
    });

    // The listing shows the same.
    const list = await listDevices(pair.access_token);
    expect(list.body.devices[0]).toMatchObject({
      push_token: "fcm-2",
      description: "renamed",
      last_seen_at: iso(t4),
      push_token_updated_at: iso(t4),
    });
  });

  it("a device logged out by another device: refresh is session_revoked and its access token dies at once", async () => {
    const { devices, pairs } = await userOnDevices(2);
    const [victim, actor] = pairs as [any, any];
    const del = await api("DELETE", `/v1/devices/${devices[0]}`, { token: actor.access_token });
    expect(del.status).toBe(204);

    expect401(await refresh(victim.refresh_token), "session_revoked", false);
    // Strict checks ask the object: immediate.
    expect401(await strictProbe(victim.access_token), "session_revoked");
    expect(await verifyRpc(victim.access_token, { strict: true })).toMatchObject({
      ok: false,
      code: "session_revoked",
    });
    // The KV blacklist.
    expect401(await me(victim.access_token), "token_revoked");
    expect(await verifyRpc(victim.access_token)).toMatchObject({ ok: false, code: "token_revoked" });

    // The actor is fine and no longer sees the device; deleting it again is 404.
    expect((await strictProbe(actor.access_token)).status).toBe(404);
    const list = await listDevices(actor.access_token);
    expect(list.body.devices.map((d: any) => d.device_id)).toEqual([devices[1]]);
    const again = await api("DELETE", `/v1/devices/${devices[0]}`, { token: actor.access_token });
    expect({ status: again.status, code: codeOf(again) }).toEqual({ status: 404, code: "not_found" });
  });

  it("DELETE of another user's device id is 404 not_found and leaves that user's session alone", async () => {
    const victim = await newSession();
    const attacker = await newSession();
    const res = await api("DELETE", `/v1/devices/${victim.pair.device_id}`, { token: attacker.pair.access_token });
    expect({ status: res.status, code: codeOf(res) }).toEqual({ status: 404, code: "not_found" });

    expect((await me(victim.pair.access_token)).status).toBe(200);
    expect((await strictProbe(victim.pair.access_token)).status).toBe(404);
    expect((await listDevices(victim.pair.access_token)).body.devices).toHaveLength(1);
    expect((await refresh(victim.pair.refresh_token)).status).toBe(200);
  });

  it("DELETE of a device id of another shape is 404 not_found", async () => {
    const { pair } = await newSession();
    for (const id of ["current", "x", "a".repeat(64)]) {
      const res = await api("DELETE", `/v1/devices/${id}`, { token: pair.access_token });
      expect({ id, status: res.status, code: codeOf(res) }).toEqual({ id, status: 404, code: "not_found" });
    }
    expect((await me(pair.access_token)).status).toBe(200);
  });
});
