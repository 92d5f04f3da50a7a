// The findings of a hostile review (docs/api.md §16), one test per attack.
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { loadConfig } from "../src/config";
import { runCleanup } from "../src/services/cleanup";
import { makeDeps } from "../src/services/deps";
import { endSession } from "../src/services/sessions";
import { getDb } from "../src/storage/db";
import {
  api,
  apiWithEnv,
  claimsOf,
  createRealm,
  deviceId,
  frozenClock,
  loggedNotifications,
  login,
  newSession,
  PASSWORD,
  signUp,
  uniqueEmail,
  waitFor,
  withPrefix,
} from "./helpers";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const NEW_PASSWORD = "a brand new password";

/** POST /v1/users/reset; returns the answer and the code mailed by it (null: none was sent). */
async function askReset(email: string): Promise<{ status: number; body: unknown; code: string | null }> {
  const spy = vi.spyOn(console, "log").mockImplementation(() => {});
  try {
    const res = await apiWithEnv({}, "POST", "/v1/users/reset", { body: { email } });
    const sent = loggedNotifications(spy).filter((m) => m.type === "reset" && m.to === email);
    return { status: res.status, body: res.body, code: (sent.at(-1)?.code as string | undefined) ?? null };
  } finally {
    spy.mockRestore();
  }
}

const putReset = (email: string, code: string) =>
  api("PUT", "/v1/users/reset", {
    body: { email, code, password: NEW_PASSWORD, password_confirmation: NEW_PASSWORD },
  });
const wrong = (code: string, i: number) => String((Number(code) + 1 + i) % 1e8).padStart(8, "0");

afterEach(() => {
  vi.useRealTimers();
});

describe("paths are judged as the router decodes them", () => {
  it("an encoded realm prefix is that realm (or 404), never realm default", async () => {
    const { pair } = await newSession();
    const b = await createRealm();
    // `%72` is `r`: the router routes /v1/realms/<b>/users/me, so the realm must be b.
    const encoded = await api("GET", `/v1/%72ealms/${b}/users/me`, { token: pair.access_token });
    expect(encoded.status).toBe(401);
    expect(encoded.body.error.code).toBe("invalid_token");
    const unknown = await api("GET", "/v1/%72ealms/no-such-realm/users/me", { token: pair.access_token });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("realm_not_found");
    // Encoding inside the realm name decodes too: a user of realm b is found under %-escapes of b.
    const email = uniqueEmail();
    await signUp(email, {}, `/v1/realms/${b}`);
    const escaped = [...b].map((ch) => `%${ch.charCodeAt(0).toString(16)}`).join("");
    const login = await api("POST", withPrefix(`/v1/realms/${escaped}`, "/v1/tokens"), {
      body: { email, password: "correct horse battery" },
    });
    expect(login.status).toBe(200);
    expect(login.body.user.realm).toBe(b);
  });
});

describe("reset codes: interval, daily cap and failures across codes", () => {
  it("a request within 60 s keeps the pending code (still 202 {}, no email); the code still works", async () => {
    const clock = frozenClock(Date.parse("2031-05-01T08:00:00.000Z"));
    const email = uniqueEmail();
    await signUp(email);
    const first = await askReset(email);
    expect(first).toMatchObject({ status: 202, body: {} });
    expect(first.code).toMatch(/^\d{8}$/);
    clock.advance(59 * SECOND);
    const again = await askReset(email);
    expect(again).toEqual({ status: 202, body: {}, code: null });
    expect((await putReset(email, first.code as string)).status).toBe(204);
  });

  it("the guessing loop: 10 failed tries a day across codes, then even a fresh right code is 400 invalid_code; 10 emails a day", async () => {
    const clock = frozenClock(Date.parse("2031-05-02T06:00:00.000Z"));
    const email = uniqueEmail();
    await signUp(email);
    const codes: string[] = [];
    for (let round = 0; round < 25; round++) {
      const asked = await askReset(email);
      expect(asked).toMatchObject({ status: 202, body: {} });
      if (asked.code) codes.push(asked.code);
      if (round === 2) {
        // Two codes' worth of wrong guesses (10) were judged: this fresh code, never tried, is refused.
        const refused = await putReset(email, asked.code as string);
        expect(refused.status).toBe(400);
        expect(refused.body.error.code).toBe("invalid_code");
      }
      const last = codes.at(-1) as string;
      for (let i = 0; i < 5; i++) {
        const res = await putReset(email, wrong(last, i));
        expect(res.status).toBe(400);
        expect(res.body.error.code).toBe("invalid_code");
      }
      clock.advance(61 * SECOND);
    }
    // One email per 61 s round, capped at 10 for the day.
    expect(codes).toHaveLength(10);
    expect((await putReset(email, codes.at(-1) as string)).status).toBe(400);

    // A new UTC day: a new code, and new tries.
    clock.set(Date.parse("2031-05-03T00:00:30.000Z"));
    const next = await askReset(email);
    expect(next.code).toMatch(/^\d{8}$/);
    expect((await putReset(email, next.code as string)).status).toBe(204);
  });

  it("a right code after a few failures still works, and gives its reserved try back", async () => {
    frozenClock(Date.parse("2031-05-04T06:00:00.000Z"));
    const email = uniqueEmail();
    await signUp(email);
    const { code } = await askReset(email);
    for (let i = 0; i < 4; i++) expect((await putReset(email, wrong(code as string, i))).status).toBe(400);
    expect((await putReset(email, code as string)).status).toBe(204);
  });
});

describe("daily caps survive cleanup", () => {
  it("a number capped for the day stays capped after cleanup removed its expired code", async () => {
    const clock = frozenClock(Date.parse("2031-06-01T09:00:00.000Z"));
    const phone = `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, "0")}`;
    const send = () => api("POST", "/v1/otp", { body: { phone_number: phone } });
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    for (let i = 0; i < 10; i++) {
      expect((await send()).status).toBe(202);
      clock.advance(61 * SECOND);
    }
    const capped = await send();
    expect(capped.status).toBe(429);
    const retryAfter = Number(capped.headers.get("Retry-After"));

    // The last code expires (5 min) and the hourly cleanup removes its row.
    clock.advance(10 * MINUTE);
    const config = loadConfig(env);
    if (!config.ok) throw new Error("config");
    const report = await runCleanup(getDb(env.DB), config.config, clock.now);
    expect(report.codes).toBeGreaterThanOrEqual(1);
    const row = await env.DB.prepare("SELECT 1 FROM verification_codes WHERE purpose = 'otp' AND subject = ?")
      .bind(phone)
      .first();
    expect(row).toBeNull();

    for (let i = 0; i < 3; i++) {
      const again = await send();
      expect(again.status).toBe(429);
      expect(again.body.error.code).toBe("too_many_attempts");
      expect(Number(again.headers.get("Retry-After"))).toBeLessThanOrEqual(retryAfter);
    }
    expect(loggedNotifications(log).filter((m) => m.to === phone)).toHaveLength(10);
    log.mockRestore();
  });

  it("an address capped for email verification codes stays capped after cleanup", async () => {
    const clock = frozenClock(Date.parse("2031-06-04T09:00:00.000Z"));
    const email = uniqueEmail();
    const sent = async () => {
      const spy = vi.spyOn(console, "log").mockImplementation(() => {});
      try {
        const res = await apiWithEnv({}, "POST", "/v1/users/verification", { body: { email } });
        expect(res).toMatchObject({ status: 202, body: {} });
        return loggedNotifications(spy).filter((m) => m.type === "verify_email" && m.to === email).length;
      } finally {
        spy.mockRestore();
      }
    };
    await signUp(email);
    let total = 1; // sign-up sends the first code
    for (let i = 0; i < 12; i++) {
      clock.advance(61 * SECOND);
      total += await sent();
    }
    expect(total).toBe(10);
    clock.advance(40 * MINUTE);
    const config = loadConfig(env);
    if (!config.ok) throw new Error("config");
    await runCleanup(getDb(env.DB), config.config, clock.now);
    const row = await env.DB.prepare("SELECT 1 FROM verification_codes WHERE subject LIKE ?")
      .bind(`%${email}%`)
      .first();
    expect(row).toBeNull();
    expect(await sent()).toBe(0);
  });

  it("a reset-capped account stays capped after cleanup; the counters go once their day is over", async () => {
    const clock = frozenClock(Date.parse("2031-06-02T09:00:00.000Z"));
    const email = uniqueEmail();
    await signUp(email);
    for (let i = 0; i < 10; i++) {
      expect((await askReset(email)).code).toMatch(/^\d{8}$/);
      clock.advance(61 * SECOND);
    }
    clock.advance(20 * MINUTE);
    const config = loadConfig(env);
    if (!config.ok) throw new Error("config");
    await runCleanup(getDb(env.DB), config.config, clock.now);
    expect(await askReset(email)).toEqual({ status: 202, body: {}, code: null });
    // Next day: the old day's counters are removed, and codes flow again.
    clock.set(Date.parse("2031-06-03T00:10:00.000Z"));
    const next = await runCleanup(getDb(env.DB), config.config, clock.now);
    expect(next.codeCounters).toBeGreaterThanOrEqual(1);
    expect((await askReset(email)).code).toMatch(/^\d{8}$/);
  });
});

/**
 * env.DB, with every statement that deletes from the device index held back until `release()`:
 * `reached` resolves when the first one is waiting. Drives the logout/re-login race deterministically.
 */
function holdIndexDeletes() {
  let release!: () => void;
  let reachedNow!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const reached = new Promise<void>((r) => {
    reachedNow = r;
  });
  const held = (stmt: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(stmt, {
      get(target, prop) {
        const value = Reflect.get(target, prop);
        if (prop === "bind") return (...args: unknown[]) => held(value.apply(target, args));
        if (["run", "all", "raw", "first"].includes(String(prop))) {
          return async (...args: unknown[]) => {
            reachedNow();
            await gate;
            return value.apply(target, args);
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  const DB = new Proxy(env.DB, {
    get(target, prop) {
      const value = Reflect.get(target, prop);
      if (prop === "prepare") {
        return (query: string) => {
          const stmt = value.call(target, query);
          return /^delete from "devices"/i.test(query) ? held(stmt) : stmt;
        };
      }
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { DB, reached, release };
}

const refreshWith = (refreshToken: string) =>
  api("POST", "/v1/tokens/refresh", { body: { refresh_token: refreshToken } });

async function indexedSession(userId: string, device: string): Promise<string | null> {
  const row = await env.DB.prepare("SELECT session_id FROM devices WHERE user_id = ? AND device_id = ?")
    .bind(userId, device)
    .first<{ session_id: string }>();
  return row?.session_id ?? null;
}

describe("no session survives a password reset", () => {
  it("a re-login racing a logout keeps its index row, and a reset then ends it", async () => {
    const device = deviceId("race");
    const { email, user } = await newSession({ device_id: device });
    // The logout ends the old session in its object, and its index delete is held back...
    const held = holdIndexDeletes();
    const d = await makeDeps({ ...env, DB: held.DB }, Date.now(), (p) => void p.catch(() => {}));
    const loggingOut = endSession(d, "default", user.id, device);
    await held.reached;
    // ...while the same device logs in again and writes its own row.
    const again = await login(email, { device_id: device });
    const sid = claimsOf(again.access_token).sid;
    expect(await indexedSession(user.id, device)).toBe(sid);
    held.release();
    expect(await loggingOut).toBe(true);
    // The late delete was for the old session: the new one stays listed.
    expect(await indexedSession(user.id, device)).toBe(sid);

    const { code } = await askReset(email);
    expect((await putReset(email, code as string)).status).toBe(204);
    const refreshed = await refreshWith(again.refresh_token);
    expect(refreshed.status).toBe(401);
    expect(refreshed.body.error.code).toBe("session_revoked");
  });

  it.each([
    ["a password reset", "reset"],
    ["a password change on another device", "change"],
    ["log out everywhere from another device", "logout_all"],
  ] as const)("a session whose index row was lost ends at %s (its refresh and strict checks)", async (_n, how) => {
    const lost = deviceId("lost");
    const { email, user, pair } = await newSession({ device_id: lost });
    const other = await login(email, { device_id: deviceId("other") });
    await env.DB.prepare("DELETE FROM devices WHERE user_id = ? AND device_id = ?").bind(user.id, lost).run();
    if (how === "reset") {
      const { code } = await askReset(email);
      expect((await putReset(email, code as string)).status).toBe(204);
    } else if (how === "change") {
      const res = await api("PUT", "/v1/users/me/password", {
        token: other.access_token,
        body: {
          password: NEW_PASSWORD,
          password_confirmation: NEW_PASSWORD,
          current_password: "correct horse battery",
        },
      });
      expect(res.status).toBe(204);
      // The device that changed the password goes on.
      expect((await refreshWith(other.refresh_token)).status).toBe(200);
    } else {
      expect((await api("POST", "/v1/logout", { token: other.access_token, body: { all: true } })).status).toBe(204);
    }
    const strict = await api("DELETE", `/v1/devices/${"Z".repeat(32)}`, { token: pair.access_token });
    expect(strict.status).toBe(401);
    expect(strict.body.error.code).toBe("session_revoked");
    const refreshed = await refreshWith(pair.refresh_token);
    expect(refreshed.status).toBe(401);
    expect(refreshed.body.error.code).toBe("session_revoked");
  });
});

describe("familiar-device lockout", () => {
  const tryLogin = (email: string, password: string, opts: { device_id?: string; token?: string } = {}) =>
    api("POST", "/v1/tokens", { body: { email, password, device_id: opts.device_id }, token: opts.token });
  const familiarRow = (userId: string, device: string) =>
    env.DB.prepare("SELECT 1 AS one FROM login_devices WHERE user_id = ? AND device_id = ?")
      .bind(userId, device)
      .first();

  it("strangers' failures lock strangers out, not a device that signed in before (by device_id or public token)", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const known = deviceId("known");
    await login(email, { device_id: known });
    const pub = await api("POST", "/v1/tokens/public", { body: {} });
    expect((await tryLogin(email, PASSWORD, { token: pub.body.token })).status).toBe(200);
    await waitFor(() => familiarRow(user.id, known));
    await waitFor(() => familiarRow(user.id, pub.body.device_id));

    // Five wrong passwords from devices the account never signed in from (none, random ids).
    for (let i = 0; i < 5; i++) {
      const res = await tryLogin(email, "wrong password!", i % 2 ? { device_id: deviceId(`s${i}`) } : {});
      expect(res.status).toBe(401);
    }
    const stranger = await tryLogin(email, PASSWORD, { device_id: deviceId("late") });
    expect(stranger.status).toBe(429);
    expect(stranger.body.error.code).toBe("too_many_attempts");
    expect(Number(stranger.headers.get("Retry-After"))).toBeGreaterThan(0);

    // The devices that signed in before still get in with the right password...
    expect((await tryLogin(email, PASSWORD, { device_id: known })).status).toBe(200);
    expect((await tryLogin(email, PASSWORD, { token: pub.body.token })).status).toBe(200);
    // ...and the strangers stay locked (a familiar success does not lift their lock).
    expect((await tryLogin(email, PASSWORD)).status).toBe(429);
  });

  it("a familiar device has its own budget: its failures lock it, not the other familiar devices", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const a = deviceId("fa");
    const b = deviceId("fb");
    await login(email, { device_id: a });
    await login(email, { device_id: b });
    await waitFor(() => familiarRow(user.id, a));
    await waitFor(() => familiarRow(user.id, b));
    for (let i = 0; i < 5; i++) expect((await tryLogin(email, "wrong password!", { device_id: a })).status).toBe(401);
    expect((await tryLogin(email, PASSWORD, { device_id: a })).status).toBe(429);
    expect((await tryLogin(email, PASSWORD, { device_id: b })).status).toBe(200);
    expect((await tryLogin(email, PASSWORD)).status).toBe(200);
  });

  it("a completed reset lifts the locks of the email and of its familiar devices", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const a = deviceId("ra");
    await login(email, { device_id: a });
    await waitFor(() => familiarRow(user.id, a));
    for (let i = 0; i < 5; i++) {
      await tryLogin(email, "wrong password!");
      await tryLogin(email, "wrong password!", { device_id: a });
    }
    expect((await tryLogin(email, PASSWORD, { device_id: a })).status).toBe(429);
    const { code } = await askReset(email);
    expect((await putReset(email, code as string)).status).toBe(204);
    expect((await tryLogin(email, NEW_PASSWORD, { device_id: a })).status).toBe(200);
    expect((await tryLogin(email, NEW_PASSWORD)).status).toBe(200);
  });
});

describe("GET /v1/audit", () => {
  it("admins read the realm's events with their actors; login_failed names the account; cursor pages", async () => {
    // An admin made in D1 (the bootstrap seat needs a verified email, which is not what this tests).
    const adminEmail = uniqueEmail();
    const made = await signUp(adminEmail);
    await env.DB.prepare(`UPDATE users SET roles = '["admin","user"]' WHERE id = ?`).bind(made.id).run();
    const admin = await login(adminEmail);
    const adminId = admin.user.id as string;
    const email = uniqueEmail("audited.example");
    const { user } = await newSession({ email });
    // An authority token manages only users whose address is verified (api.md §6).
    await env.DB.prepare("UPDATE user_emails SET verified_at = ? WHERE user_id = ?")
      .bind(new Date().toISOString(), user.id)
      .run();
    // A failed login for an existing account, and one for an unknown email.
    expect((await api("POST", "/v1/tokens", { body: { email, password: "wrong password!" } })).status).toBe(401);
    const nobody = uniqueEmail();
    expect((await api("POST", "/v1/tokens", { body: { email: nobody, password: "wrong password!" } })).status).toBe(
      401,
    );
    // An admin changes roles; an authority token deactivates.
    const roles = await api("PUT", `/v1/users/${user.id}/roles`, {
      token: admin.access_token,
      body: { roles: ["user", "staff"] },
    });
    expect(roles.status).toBe(200);
    const authority = await api("POST", "/v1/domains/audited.example/authority-token", {
      token: admin.access_token,
      body: { expires_in_days: 1 },
    });
    expect(authority.status).toBe(201);
    const off = await api("POST", `/v1/users/${user.id}/deactivate`, { token: authority.body.token });
    expect(off.status).toBe(200);
    await api("POST", `/v1/users/${user.id}/activate`, { token: admin.access_token });

    const wanted = ["signup", "login", "login_failed", "roles_changed", "user_deactivated", "user_activated"];
    const listed = await waitFor(async () => {
      const res = await api("GET", `/v1/audit?user_id=${user.id}&limit=100`, { token: admin.access_token });
      expect(res.status).toBe(200);
      const types = res.body.events.map((e: { type: string }) => e.type);
      return wanted.every((t) => types.includes(t)) && res.body;
    });
    const byType = (t: string) => listed.events.find((e: { type: string }) => e.type === t);
    expect(byType("login_failed")).toMatchObject({ user_id: user.id, actor: { kind: "user", id: null } });
    expect(byType("login")).toMatchObject({ user_id: user.id, actor: { kind: "user", id: user.id } });
    expect(byType("signup")).toMatchObject({ actor: { kind: "user", id: user.id } });
    expect(byType("roles_changed")).toMatchObject({ actor: { kind: "admin", id: adminId } });
    expect(byType("user_activated")).toMatchObject({ actor: { kind: "admin", id: adminId } });
    expect(byType("user_deactivated")).toMatchObject({ actor: { kind: "authority", id: authority.body.id } });
    for (const e of listed.events) {
      expect(e).toMatchObject({ id: expect.any(String), at: expect.any(String), realm: "default", user_id: user.id });
      expect(["user", "admin", "authority", "system"]).toContain(e.actor.kind);
    }
    // Newest first.
    const ats = listed.events.map((e: { at: string }) => e.at);
    expect([...ats].sort().reverse()).toEqual(ats);

    // The unknown email's failure names nobody.
    const failures = await waitFor(async () => {
      const res = await api("GET", "/v1/audit?type=login_failed&limit=100", { token: admin.access_token });
      return res.body.events.length >= 2 && res.body.events;
    });
    expect(failures.every((e: { type: string }) => e.type === "login_failed")).toBe(true);
    expect(failures.some((e: { user_id: string | null }) => e.user_id === null)).toBe(true);

    // Cursor pages of 2 give every event once, in the same order.
    const all = (await api("GET", "/v1/audit?limit=100", { token: admin.access_token })).body.events;
    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      const page = await api("GET", `/v1/audit?limit=2${q}`, { token: admin.access_token });
      expect(page.status).toBe(200);
      expect(page.body.events.length).toBeLessThanOrEqual(2);
      paged.push(...page.body.events.map((e: { id: string }) => e.id));
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(paged.slice(0, all.length)).toEqual(all.map((e: { id: string }) => e.id));

    // since: nothing before it.
    const since = all.at(0)?.at as string;
    const recent = await api("GET", `/v1/audit?since=${encodeURIComponent(since)}`, { token: admin.access_token });
    expect(recent.body.events.every((e: { at: string }) => e.at >= since)).toBe(true);

    // Bad input, and anyone but an admin.
    for (const bad of ["cursor=nope", "limit=101", "since=yesterday", "type=DROP%20TABLE"]) {
      const res = await api("GET", `/v1/audit?${bad}`, { token: admin.access_token });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
    }
    // The audited user itself (its session ended at deactivation: log in again) is no admin.
    const self = await login(email);
    expect((await api("GET", "/v1/audit", { token: self.access_token })).status).toBe(403);
    const other = await newSession();
    const refused = await api("GET", "/v1/audit", { token: other.pair.access_token });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("forbidden");
    expect((await api("GET", "/v1/audit")).status).toBe(401);

    const doc = await api("GET", "/openapi.json");
    expect(doc.body.paths["/v1/audit"]?.get).toBeTruthy();
  });
});
