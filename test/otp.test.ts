import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, type MockInstance, vi } from "vitest";
import { app } from "../src/index";
import {
  api,
  claimsOf,
  createRealm,
  deviceId,
  frozenClock,
  login,
  PASSWORD,
  signUp,
  uniqueEmail,
  withPrefix,
} from "./helpers";
import { webhookReceiver } from "./webhook-receiver";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

let seq = 0;
/** A fresh E.164 number per call: +1555 and seven digits. */
const newPhone = () => `+1555${String((Math.floor(Math.random() * 1e7) + seq++) % 1e7).padStart(7, "0")}`;

const codeOf = (res: { body: any }): string | undefined => res.body?.error?.code;

let logSpy: MockInstance<typeof console.log>;
let errorSpy: MockInstance<typeof console.error>;

beforeEach(() => {
  // Without a webhook outside production the notifier logs each message: that is how tests read codes.
  logSpy = vi.spyOn(console, "log").mockImplementation(() => {});
  errorSpy = vi.spyOn(console, "error").mockImplementation(() => {});
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** The notifications the worker logged, parsed. */
function loggedNotifications(): Record<string, any>[] {
  const out: Record<string, any>[] = [];
  for (const call of logSpy.mock.calls) {
    if (typeof call[0] !== "string") continue;
    try {
      const v = JSON.parse(call[0]);
      if (v?.event === "notification") out.push(v);
    } catch {
      // not JSON
    }
  }
  return out;
}

/** The last OTP logged for a number (in a realm). */
function lastCode(phone: string, realm = "default"): string {
  const n = loggedNotifications().filter((x) => x.type === "otp" && x.to === phone && x.realm === realm);
  const code = n.at(-1)?.code;
  if (typeof code !== "string") throw new Error(`no code was logged for ${phone}`);
  return code;
}

const sendOtp = (phone: string, opts: { prefix?: string; token?: string } = {}) =>
  api("POST", withPrefix(opts.prefix ?? "", "/v1/otp"), { body: { phone_number: phone }, token: opts.token });

/** Sends a code, expects 202, and returns the code from the development log. */
async function requestCode(phone: string, prefix = ""): Promise<string> {
  const res = await sendOtp(phone, { prefix });
  if (res.status !== 202) throw new Error(`send failed: ${res.status} ${res.text}`);
  const realm = prefix ? (/^\/v1\/realms\/([^/]+)/.exec(prefix)?.[1] as string) : "default";
  return lastCode(phone, realm);
}

const verify = (body: Record<string, unknown>, opts: { prefix?: string; token?: string } = {}) =>
  api("POST", withPrefix(opts.prefix ?? "", "/v1/otp/verify"), { body, token: opts.token });

/** A code that is not `code` (same shape). */
const wrongCode = (code: string) => String((Number(code) + 1) % 1_000_000).padStart(6, "0");

async function usersWithPhone(phone: string, realm = "default") {
  const rows = await env.DB.prepare("SELECT id, status, source FROM users WHERE realm = ? AND phone_number = ?")
    .bind(realm, phone)
    .all<{ id: string; status: string; source: string }>();
  return rows.results;
}

async function codeRow(phone: string, realm = "default") {
  return env.DB.prepare("SELECT * FROM verification_codes WHERE realm = ? AND purpose = 'otp' AND subject = ?")
    .bind(realm, phone)
    .first<Record<string, any>>();
}

/** Polls until `fn` returns a truthy value (audit rows are written after the response). */
async function eventually<T>(fn: () => Promise<T>, timeoutMs = 5000): Promise<T> {
  const start = performance.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (performance.now() - start > timeoutMs) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("POST /v1/otp", () => {
  it("sends a 6-digit code by SMS and answers 202 {expires_in: 300, retry_after: 60}, never with the code", async () => {
    const phone = newPhone();
    const res = await sendOtp(phone);
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ expires_in: 300, retry_after: 60 });
    const sent = loggedNotifications().filter((n) => n.to === phone);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ type: "otp", channel: "sms", to: phone, realm: "default" });
    expect(sent[0]?.code).toMatch(/^\d{6}$/);
    expect(res.text).not.toContain(sent[0]?.code);
    expect(JSON.stringify([...res.headers])).not.toContain(sent[0]?.code);
  });

  it("stores only a keyed hash of the code", async () => {
    const phone = newPhone();
    const code = await requestCode(phone);
    const row = await codeRow(phone);
    expect(row).not.toBeNull();
    expect(row?.code_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(row)).not.toContain(code);
    const sha = [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(code)))]
      .map((b) => b.toString(16).padStart(2, "0"))
      .join("");
    expect(row?.code_hash).not.toBe(sha);
    expect(row?.attempts).toBe(0);
  });

  it("trims the number and refuses anything that is not E.164 with 400 validation_failed", async () => {
    const phone = newPhone();
    const ok = await sendOtp(`  ${phone} `);
    expect(ok.status).toBe(202);
    expect(lastCode(phone)).toMatch(/^\d{6}$/);
    for (const bad of ["14155550123", "+0123456789", "+1 415 555 0123", "+1415555012345678", "+12", "phone", ""]) {
      const res = await sendOtp(bad);
      expect({ bad, status: res.status, code: codeOf(res) }).toEqual({ bad, status: 400, code: "validation_failed" });
      expect(res.body.error.fields).toHaveProperty("phone_number");
    }
    const missing = await api("POST", "/v1/otp", { body: {} });
    expect(missing.status).toBe(400);
    expect(missing.body.error.fields).toHaveProperty("phone_number");
  });

  it("allows one send per 60 s per number (429 with Retry-After); after 61 s a new code replaces the old", async () => {
    const clock = frozenClock();
    const phone = newPhone();
    const first = await requestCode(phone);

    clock.advance(20 * SECOND);
    const again = await sendOtp(phone);
    expect(again.status).toBe(429);
    expect(codeOf(again)).toBe("too_many_attempts");
    expect(again.headers.get("Retry-After")).toBe("40");
    expect(loggedNotifications().filter((n) => n.to === phone)).toHaveLength(1);

    // Another number is not held up.
    expect((await sendOtp(newPhone())).status).toBe(202);

    clock.advance(41 * SECOND);
    const second = await requestCode(phone);
    expect(loggedNotifications().filter((n) => n.to === phone)).toHaveLength(2);

    const old = await verify({ phone_number: phone, otp: first });
    if (first !== second) {
      expect(old.status).toBe(401);
      expect(codeOf(old)).toBe("invalid_otp");
    }
    const ok = await verify({ phone_number: phone, otp: second });
    expect(ok.status).toBe(200);
  });

  it("a new code gets fresh tries", async () => {
    const clock = frozenClock();
    const phone = newPhone();
    const first = await requestCode(phone);
    for (let i = 0; i < 5; i++)
      expect(codeOf(await verify({ phone_number: phone, otp: wrongCode(first) }))).toBe("invalid_otp");
    expect(codeOf(await verify({ phone_number: phone, otp: first }))).toBe("otp_expired");

    clock.advance(61 * SECOND);
    const second = await requestCode(phone);
    expect((await codeRow(phone))?.attempts).toBe(0);
    for (let i = 0; i < 4; i++)
      expect(codeOf(await verify({ phone_number: phone, otp: wrongCode(second) }))).toBe("invalid_otp");
    expect((await verify({ phone_number: phone, otp: second })).status).toBe(200);
  });

  it("caps sends at 10 per number per UTC day; the 11th waits until midnight UTC, even across logins", async () => {
    const clock = frozenClock(Date.parse("2031-03-10T22:00:00.000Z"));
    const phone = newPhone();
    const midnight = Date.parse("2031-03-11T00:00:00.000Z");
    for (let i = 1; i <= 10; i++) {
      const res = await sendOtp(phone);
      expect({ i, status: res.status }).toEqual({ i, status: 202 });
      if (i < 10) expect(res.body.retry_after).toBe(60);
      else expect(res.body.retry_after).toBe(Math.ceil((midnight - clock.now) / 1000));
      // A successful login in between does not reset the day's count.
      if (i === 3) expect((await verify({ phone_number: phone, otp: lastCode(phone) })).status).toBe(200);
      clock.advance(61 * SECOND);
    }
    const capped = await sendOtp(phone);
    expect(capped.status).toBe(429);
    expect(codeOf(capped)).toBe("too_many_attempts");
    expect(capped.headers.get("Retry-After")).toBe(String(Math.ceil((midnight - clock.now) / 1000)));
    expect(loggedNotifications().filter((n) => n.to === phone)).toHaveLength(10);

    // The last code sent still works; the cap is about sending.
    expect((await verify({ phone_number: phone, otp: lastCode(phone) })).status).toBe(200);

    clock.set(midnight - SECOND);
    expect((await sendOtp(phone)).status).toBe(429);
    clock.set(midnight + SECOND);
    const nextDay = await sendOtp(phone);
    expect(nextDay.status).toBe(202);
    expect(nextDay.body.retry_after).toBe(60);
    expect((await codeRow(phone))?.day_count).toBe(1);
  });

  it("concurrent sends to one number send one code", async () => {
    const phone = newPhone();
    const results = await Promise.all(Array.from({ length: 6 }, () => sendOtp(phone)));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([202, 429, 429, 429, 429, 429]);
    expect(loggedNotifications().filter((n) => n.to === phone)).toHaveLength(1);
    expect((await verify({ phone_number: phone, otp: lastCode(phone) })).status).toBe(200);
  });

  it("is listed in the OpenAPI document; a wrong method is 405", async () => {
    const doc = await api("GET", "/openapi.json");
    expect(doc.status).toBe(200);
    expect(doc.body.paths["/v1/otp"]?.post).toBeDefined();
    expect(doc.body.paths["/v1/otp/verify"]?.post).toBeDefined();
    const get = await api("GET", "/v1/otp");
    expect(get.status).toBe(405);
    expect(codeOf(get)).toBe("method_not_allowed");
  });
});

describe("POST /v1/otp/verify", () => {
  it("creates the user on the first verify (created: true), then logs the same user in (created: false)", async () => {
    const clock = frozenClock();
    const phone = newPhone();
    const code = await requestCode(phone);
    const did = deviceId("otp");
    const res = await verify({
      phone_number: phone,
      otp: code,
      name: "  Grace Hopper ",
      device_id: did,
      description: "phone",
    });
    expect(res.status).toBe(200);
    const pair = res.body;
    expect(pair.created).toBe(true);
    expect(pair).toMatchObject({ token_type: "Bearer", expires_in: 900, device_id: did });
    expect(typeof pair.refresh_token).toBe("string");
    expect(pair.refresh_expires_in).toBeGreaterThan(0);
    expect(pair.user).toMatchObject({
      realm: "default",
      email: null,
      emails: [],
      phone_number: phone,
      full_name: "Grace Hopper",
      image_url: null,
      roles: ["user"],
      status: "active",
      source: "phone",
      profile: {},
    });
    expect(pair.user.created_at).toMatch(ISO);
    const claims = claimsOf(pair.access_token);
    expect(claims).toMatchObject({
      type: "access",
      sub: pair.user.id,
      realm: "default",
      did,
      fresh: true,
      roles: ["user"],
    });
    expect(claims.email ?? null).toBeNull();

    const row = await env.DB.prepare("SELECT password_hash, email FROM users WHERE id = ?").bind(pair.user.id).first();
    expect(row).toEqual({ password_hash: null, email: null });

    const me = await api("GET", "/v1/users/me", { token: pair.access_token });
    expect(me.status).toBe(200);
    expect(me.body.id).toBe(pair.user.id);

    // The refresh token works like any other.
    const refreshed = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: pair.refresh_token } });
    expect(refreshed.status).toBe(200);
    expect(claimsOf(refreshed.body.access_token).fresh).toBe(false);

    clock.advance(61 * SECOND);
    const again = await verify({ phone_number: phone, otp: await requestCode(phone), name: "Someone Else" });
    expect(again.status).toBe(200);
    expect(again.body.created).toBe(false);
    expect(again.body.user.id).toBe(pair.user.id);
    expect(again.body.user.full_name).toBe("Grace Hopper");
    expect(again.body.device_id).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(again.body.device_id).not.toBe(did);
    expect(await usersWithPhone(phone)).toHaveLength(1);
  });

  it("without a name the user's full_name is null; an empty name is 400", async () => {
    const phone = newPhone();
    const code = await requestCode(phone);
    const blank = await verify({ phone_number: phone, otp: code, name: "   " });
    expect(blank.status).toBe(400);
    expect(blank.body.error.fields).toHaveProperty("name");
    const long = await verify({ phone_number: phone, otp: code, name: "x".repeat(201) });
    expect(long.status).toBe(400);
    // Validation failures spend no try.
    expect((await codeRow(phone))?.attempts).toBe(0);
    const res = await verify({ phone_number: phone, otp: code });
    expect(res.status).toBe(200);
    expect(res.body.user.full_name).toBeNull();
  });

  it("refuses malformed codes and numbers with 400 validation_failed", async () => {
    const phone = newPhone();
    await requestCode(phone);
    for (const otp of ["12345", "1234567", "abcdef", "", 123456]) {
      const res = await verify({ phone_number: phone, otp });
      expect({ otp, status: res.status, code: codeOf(res) }).toEqual({ otp, status: 400, code: "validation_failed" });
    }
    const badPhone = await verify({ phone_number: "5550123", otp: "123456" });
    expect(badPhone.status).toBe(400);
    expect(badPhone.body.error.fields).toHaveProperty("phone_number");
  });

  it("a wrong code is 401 invalid_otp and leaves the right one usable", async () => {
    const phone = newPhone();
    const code = await requestCode(phone);
    const wrong = await verify({ phone_number: phone, otp: wrongCode(code) });
    expect(wrong.status).toBe(401);
    expect(wrong.body).toEqual({ error: { code: "invalid_otp", message: expect.any(String) } });
    expect(wrong.text).not.toContain(code);
    expect((await verify({ phone_number: phone, otp: code })).status).toBe(200);
  });

  it("allows 5 tries per code, then 401 otp_expired even for the right code until a new one is sent", async () => {
    const phone = newPhone();
    const code = await requestCode(phone);
    for (let i = 0; i < 5; i++) {
      const res = await verify({ phone_number: phone, otp: wrongCode(code) });
      expect({ i, code: codeOf(res) }).toEqual({ i, code: "invalid_otp" });
    }
    const sixth = await verify({ phone_number: phone, otp: wrongCode(code) });
    expect(sixth.status).toBe(401);
    expect(codeOf(sixth)).toBe("otp_expired");
    const right = await verify({ phone_number: phone, otp: code });
    expect(codeOf(right)).toBe("otp_expired");
    expect(await usersWithPhone(phone)).toHaveLength(0);
    expect((await codeRow(phone))?.attempts).toBe(5);
  });

  it("a code expires after 5 minutes", async () => {
    const clock = frozenClock();
    const phone = newPhone();
    const code = await requestCode(phone);
    clock.advance(5 * MINUTE + SECOND);
    const late = await verify({ phone_number: phone, otp: code });
    expect(late.status).toBe(401);
    expect(codeOf(late)).toBe("otp_expired");
    expect(await usersWithPhone(phone)).toHaveLength(0);
  });

  it("a code still works just before 5 minutes", async () => {
    const clock = frozenClock();
    const phone = newPhone();
    const code = await requestCode(phone);
    clock.advance(5 * MINUTE - SECOND);
    expect((await verify({ phone_number: phone, otp: code })).status).toBe(200);
  });

  it("a number that was never sent a code is 401 otp_expired", async () => {
    const res = await verify({ phone_number: newPhone(), otp: "123456" });
    expect(res.status).toBe(401);
    expect(codeOf(res)).toBe("otp_expired");
  });

  it("a code is single use, also when verifies race", async () => {
    const phone = newPhone();
    const code = await requestCode(phone);
    expect((await verify({ phone_number: phone, otp: code })).status).toBe(200);
    const replay = await verify({ phone_number: phone, otp: code });
    expect(replay.status).toBe(401);
    expect(codeOf(replay)).toBe("otp_expired");

    // Twenty correct verifies at once, a few times: exactly one logs in and one user exists.
    for (let round = 0; round < 3; round++) {
      const phone2 = newPhone();
      const code2 = await requestCode(phone2);
      const raced = await Promise.all(Array.from({ length: 20 }, () => verify({ phone_number: phone2, otp: code2 })));
      const ok = raced.filter((r) => r.status === 200);
      expect(ok).toHaveLength(1);
      expect(ok[0]?.body.created).toBe(true);
      for (const r of raced.filter((r) => r.status !== 200)) {
        expect({ status: r.status, code: codeOf(r) }).toEqual({ status: 401, code: "otp_expired" });
      }
      expect(await usersWithPhone(phone2)).toHaveLength(1);
    }
  });

  it("concurrent wrong tries never judge more than 5: 8 in parallel give 5 invalid_otp and 3 otp_expired", async () => {
    const phone = newPhone();
    const code = await requestCode(phone);
    const results = await Promise.all(
      Array.from({ length: 8 }, () => verify({ phone_number: phone, otp: wrongCode(code) })),
    );
    const codes = results.map(codeOf);
    expect(codes.filter((c) => c === "invalid_otp")).toHaveLength(5);
    expect(codes.filter((c) => c === "otp_expired")).toHaveLength(3);
    expect((await codeRow(phone))?.attempts).toBe(5);
    const right = await verify({ phone_number: phone, otp: code });
    expect(codeOf(right)).toBe("otp_expired");
  });

  it("five wrong and one right in parallel: at most 5 judged tries in all", async () => {
    for (let round = 0; round < 3; round++) {
      const phone = newPhone();
      const code = await requestCode(phone);
      const bodies = [...Array.from({ length: 7 }, () => wrongCode(code)), code].map((otp) => ({
        phone_number: phone,
        otp,
      }));
      const results = await Promise.all(bodies.map((b) => verify(b)));
      const judged = results.filter((r) => r.status === 200 || codeOf(r) === "invalid_otp");
      expect(judged.length).toBeLessThanOrEqual(5);
      expect(results.filter((r) => r.status === 200).length).toBeLessThanOrEqual(1);
      for (const r of results) expect([200, 401]).toContain(r.status);
      expect((await codeRow(phone))?.attempts).toBe(5);
      expect((await usersWithPhone(phone)).length).toBe(results.some((r) => r.status === 200) ? 1 : 0);
    }
  });

  it("uses the public token's device id, else a well-formed body device_id, else a new one", async () => {
    const clock = frozenClock();
    const fromToken = deviceId("pub");
    const pub = await api("POST", "/v1/tokens/public", { body: { device_id: fromToken } });
    expect(pub.status).toBe(201);
    const phone = newPhone();
    const sent = await sendOtp(phone, { token: pub.body.token });
    expect(sent.status).toBe(202);
    const withToken = await verify(
      { phone_number: phone, otp: lastCode(phone), device_id: deviceId("body") },
      { token: pub.body.token },
    );
    expect(withToken.status).toBe(200);
    expect(withToken.body.device_id).toBe(fromToken);
    expect(claimsOf(withToken.body.access_token).did).toBe(fromToken);

    clock.advance(61 * SECOND);
    const malformed = await verify({ phone_number: phone, otp: await requestCode(phone), device_id: "short!" });
    expect(malformed.status).toBe(200);
    expect(malformed.body.device_id).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(malformed.body.device_id).not.toBe("short!");

    // A bad public token is refused, as on login.
    const bad = await verify({ phone_number: phone, otp: "123456" }, { token: "not.a.token" });
    expect(bad.status).toBe(401);
    expect(codeOf(bad)).toBe("invalid_token");
  });

  it("a disabled user gets 403 account_disabled after a correct code; a pending one 403 account_pending", async () => {
    const clock = frozenClock();
    const phone = newPhone();
    const created = await verify({ phone_number: phone, otp: await requestCode(phone) });
    expect(created.status).toBe(200);
    const id = created.body.user.id;

    await env.DB.prepare("UPDATE users SET status = 'disabled' WHERE id = ?").bind(id).run();
    clock.advance(61 * SECOND);
    const code = await requestCode(phone);
    const wrong = await verify({ phone_number: phone, otp: wrongCode(code) });
    expect(codeOf(wrong)).toBe("invalid_otp");
    const disabled = await verify({ phone_number: phone, otp: code });
    expect(disabled.status).toBe(403);
    expect(codeOf(disabled)).toBe("account_disabled");
    expect(disabled.body.access_token).toBeUndefined();

    await env.DB.prepare("UPDATE users SET status = 'pending' WHERE id = ?").bind(id).run();
    clock.advance(61 * SECOND);
    const pending = await verify({ phone_number: phone, otp: await requestCode(phone) });
    expect(pending.status).toBe(403);
    expect(codeOf(pending)).toBe("account_pending");
  });

  it("in a realm that requires approval, the new user is pending and gets 403 account_pending", async () => {
    const clock = frozenClock();
    const realm = await createRealm({ approval_required: true });
    const prefix = `/v1/realms/${realm}`;
    const phone = newPhone();
    const res = await verify(
      { phone_number: phone, otp: await requestCode(phone, prefix), name: "Waiting" },
      { prefix },
    );
    expect(res.status).toBe(403);
    expect(codeOf(res)).toBe("account_pending");
    const rows = await usersWithPhone(phone, realm);
    expect(rows).toEqual([{ id: expect.any(String), status: "pending", source: "phone" }]);

    await env.DB.prepare("UPDATE users SET status = 'active' WHERE id = ?").bind(rows[0]?.id).run();
    clock.advance(61 * SECOND);
    const after = await verify({ phone_number: phone, otp: await requestCode(phone, prefix) }, { prefix });
    expect(after.status).toBe(200);
    expect(after.body.created).toBe(false);
    expect(after.body.user).toMatchObject({ id: rows[0]?.id, realm, status: "active", full_name: "Waiting" });
  });

  it("a realm closed to registration creates no phone users, but existing ones log in", async () => {
    const clock = frozenClock();
    const realm = await createRealm({ registration: "closed" });
    const prefix = `/v1/realms/${realm}`;
    const phone = newPhone();
    const res = await verify({ phone_number: phone, otp: await requestCode(phone, prefix) }, { prefix });
    expect(res.status).toBe(403);
    expect(codeOf(res)).toBe("registration_closed");
    expect(await usersWithPhone(phone, realm)).toHaveLength(0);

    const open = await createRealm();
    const openPrefix = `/v1/realms/${open}`;
    const first = await verify(
      { phone_number: phone, otp: await requestCode(phone, openPrefix) },
      { prefix: openPrefix },
    );
    expect(first.status).toBe(200);
    await env.DB.prepare("UPDATE realms SET registration = 'closed' WHERE id = ?").bind(open).run();
    clock.advance(61 * SECOND);
    const again = await verify(
      { phone_number: phone, otp: await requestCode(phone, openPrefix) },
      { prefix: openPrefix },
    );
    expect(again.status).toBe(200);
    expect(again.body.user.id).toBe(first.body.user.id);
  });

  it("one number in two realms is two users; a code of one realm does not work in the other", async () => {
    const realm = await createRealm();
    const prefix = `/v1/realms/${realm}`;
    const phone = newPhone();
    const codeDefault = await requestCode(phone);
    const codeRealm = await requestCode(phone, prefix);

    const cross = await verify({ phone_number: phone, otp: codeDefault }, { prefix });
    if (codeDefault !== codeRealm) expect(codeOf(cross)).toBe("invalid_otp");

    const a = await verify({ phone_number: phone, otp: codeDefault });
    const b = await verify({ phone_number: phone, otp: codeRealm }, { prefix });
    expect([a.status, b.status]).toEqual([200, 200]);
    expect(a.body.created).toBe(true);
    expect(b.body.created).toBe(true);
    expect(a.body.user.realm).toBe("default");
    expect(b.body.user.realm).toBe(realm);
    expect(a.body.user.id).not.toBe(b.body.user.id);
    expect(claimsOf(b.body.access_token).realm).toBe(realm);

    const foreign = await api("GET", "/v1/users/me", { token: b.body.access_token });
    expect(foreign.status).toBe(401);
    expect(codeOf(foreign)).toBe("invalid_token");
  });

  it("an unknown realm is 404 realm_not_found", async () => {
    const res = await sendOtp(newPhone(), { prefix: "/v1/realms/no-such-realm-x" });
    expect(res.status).toBe(404);
    expect(codeOf(res)).toBe("realm_not_found");
  });
});

describe("push tokens", () => {
  it("verify stores fcm_token; PUT /v1/devices/current moves push_token_updated_at only when the token changes", async () => {
    const clock = frozenClock();
    const phone = newPhone();
    const t0 = clock.now;
    const res = await verify({
      phone_number: phone,
      otp: await requestCode(phone),
      fcm_token: "fcm-token-one",
      description: "Pixel",
    });
    expect(res.status).toBe(200);
    const token = res.body.access_token;

    const list = await api("GET", "/v1/devices", { token });
    expect(list.status).toBe(200);
    expect(list.body.devices).toEqual([
      {
        device_id: res.body.device_id,
        description: "Pixel",
        current: true,
        created_at: new Date(t0).toISOString(),
        last_seen_at: new Date(t0).toISOString(),
        push_token: "fcm-token-one",
        push_token_updated_at: new Date(t0).toISOString(),
      },
    ]);

    const t1 = clock.advance(30 * SECOND);
    const same = await api("PUT", "/v1/devices/current", { token, body: { push_token: "fcm-token-one" } });
    expect(same.status).toBe(200);
    expect(same.body).toMatchObject({
      push_token: "fcm-token-one",
      last_seen_at: new Date(t1).toISOString(),
      push_token_updated_at: new Date(t0).toISOString(),
    });

    const t2 = clock.advance(30 * SECOND);
    const changed = await api("PUT", "/v1/devices/current", { token, body: { push_token: "fcm-token-two" } });
    expect(changed.status).toBe(200);
    expect(changed.body).toMatchObject({
      push_token: "fcm-token-two",
      last_seen_at: new Date(t2).toISOString(),
      push_token_updated_at: new Date(t2).toISOString(),
    });
    const after = await api("GET", "/v1/devices", { token });
    expect(after.body.devices[0]).toMatchObject({
      push_token: "fcm-token-two",
      push_token_updated_at: new Date(t2).toISOString(),
    });
  });

  it("without fcm_token the device has no push token", async () => {
    const phone = newPhone();
    const res = await verify({ phone_number: phone, otp: await requestCode(phone) });
    const list = await api("GET", "/v1/devices", { token: res.body.access_token });
    expect(list.body.devices[0]).toMatchObject({ push_token: null, push_token_updated_at: null });
  });
});

describe("audit trail", () => {
  it("records otp_sent, otp_failed, signup (source phone) and login (method otp), never the code", async () => {
    const phone = newPhone();
    const code = await requestCode(phone);
    expect(codeOf(await verify({ phone_number: phone, otp: wrongCode(code) }))).toBe("invalid_otp");
    const res = await verify({ phone_number: phone, otp: code });
    expect(res.status).toBe(200);
    const userId = res.body.user.id;

    const rows = await eventually(async () => {
      const r = await env.DB.prepare(
        "SELECT type, user_id, device_id, detail FROM audit_events WHERE realm = 'default' AND (user_id = ? OR detail LIKE ?) ORDER BY id",
      )
        .bind(userId, `%${phone}%`)
        .all<{ type: string; user_id: string | null; device_id: string | null; detail: string | null }>();
      const types = r.results.map((x) => x.type);
      return ["otp_sent", "otp_failed", "signup", "login"].every((t) => types.includes(t)) ? r.results : null;
    });
    expect(rows).not.toBeNull();
    const byType = (t: string) => rows?.find((r) => r.type === t);
    expect(JSON.parse(byType("signup")?.detail ?? "{}")).toEqual({ source: "phone" });
    expect(byType("signup")?.user_id).toBe(userId);
    expect(JSON.parse(byType("login")?.detail ?? "{}")).toEqual({ method: "otp" });
    expect(byType("login")?.device_id).toBe(res.body.device_id);
    expect(JSON.parse(byType("otp_failed")?.detail ?? "{}")).toMatchObject({ reason: "mismatch" });
    for (const r of rows ?? []) expect(JSON.stringify(r)).not.toContain(code);
  });

  it("no log line but the development notification holds the code", async () => {
    const phone = newPhone();
    const code = await requestCode(phone);
    await verify({ phone_number: phone, otp: wrongCode(code) });
    await verify({ phone_number: phone, otp: code });
    const lines = [...logSpy.mock.calls, ...errorSpy.mock.calls].map((c) => c.map(String).join(" "));
    const withCode = lines.filter((l) => l.includes(code) && l.includes(phone));
    expect(withCode).toHaveLength(1);
    expect(JSON.parse(withCode[0] as string)).toMatchObject({ event: "notification", dev_only: true, type: "otp" });
  });
});

/** Calls the worker with extra settings in its env (a webhook, a captcha secret); outbound fetches go to the test double. */
async function callWithEnv(method: string, path: string, body: unknown, extra: Record<string, string>) {
  const ctx = createExecutionContext();
  const res = await app.fetch(
    new Request(`https://registry.test${path}`, {
      method,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }),
    { ...env, ...extra },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null, text };
}

interface Received {
  url: string;
  headers: Record<string, string>;
  body: string;
}

/** What the test double received for a number (other test files post to it too). */
async function received(phone: string): Promise<Received[]> {
  const res = await env.DOUBLE.fetch("http://double/__double/received");
  const all = (await res.json()) as Received[];
  return all.filter((r) => r.body.includes(JSON.stringify(phone)));
}

describe("with a webhook (NOTIFY_WEBHOOK_URL)", () => {
  const SECRET = "otp-test-webhook-secret";
  const HOOK = "https://hooks.test/notify";
  // The double answers 500 for hosts starting with "fail.".
  const FAILING_HOOK = "https://fail.hooks.test/notify";
  const withHook = (method: string, path: string, body: unknown, url = HOOK) =>
    callWithEnv(method, path, body, { NOTIFY_WEBHOOK_URL: url, NOTIFY_WEBHOOK_SECRET: SECRET });

  it("posts the signed payload {type, channel, to, code, realm, expires_at}; the code logs a user in", async () => {
    const clock = frozenClock();
    const realm = await createRealm();
    const phone = newPhone();
    const res = await withHook("POST", `/v1/realms/${realm}/otp`, { phone_number: phone });
    expect(res.status).toBe(202);
    const posts = await received(phone);
    expect(posts).toHaveLength(1);
    const post = posts[0] as Received;
    expect(post.url).toBe(HOOK);
    expect(post.headers["content-type"]).toBe("application/json");
    expect(await webhookReceiver(SECRET, { now: () => clock.now }).accept(post.headers, post.body)).toBe("ok");
    expect(await webhookReceiver("another secret", { now: () => clock.now }).accept(post.headers, post.body)).toBe(
      "bad_signature",
    );
    const payload = JSON.parse(post.body);
    expect(payload).toEqual({
      type: "otp",
      channel: "sms",
      to: phone,
      code: expect.stringMatching(/^\d{6}$/),
      realm,
      expires_at: new Date(clock.now + 5 * MINUTE).toISOString(),
    });
    // Nothing was logged with the code when a webhook delivers it.
    expect(loggedNotifications().filter((n) => n.to === phone)).toHaveLength(0);
    expect(res.text).not.toContain(payload.code);

    const ok = await withHook("POST", `/v1/realms/${realm}/otp/verify`, { phone_number: phone, otp: payload.code });
    expect(ok.status).toBe(200);
    expect(ok.body.created).toBe(true);
    expect(ok.body.user.realm).toBe(realm);
  });

  it("a failed delivery is 502 delivery_failed, leaves no usable code, and does not start the 60 s wait", async () => {
    const clock = frozenClock();
    const phone = newPhone();
    const codeSentTo = async (url: string) => {
      const post = (await received(phone)).filter((r) => r.url === url).at(-1);
      return JSON.parse(post?.body ?? "{}").code as string;
    };

    // The webhook answers 500.
    const failed = await withHook("POST", "/v1/otp", { phone_number: phone }, FAILING_HOOK);
    expect(failed.status).toBe(502);
    expect(codeOf(failed)).toBe("delivery_failed");
    const undelivered = await codeSentTo(FAILING_HOOK);
    expect(undelivered).toMatch(/^\d{6}$/);
    const unusable = await verify({ phone_number: phone, otp: undelivered });
    expect(unusable.status).toBe(401);
    expect(codeOf(unusable)).toBe("otp_expired");

    // The webhook cannot be reached at all (a network error; only this host fails).
    const realFetch = globalThis.fetch;
    const lost: string[] = [];
    const spy = vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      if (url.startsWith("https://down.hooks.test/")) {
        lost.push(String(init?.body ?? ""));
        throw new TypeError("Network connection lost");
      }
      return realFetch(input, init);
    });
    // No 60 s lock-out for our failure: an immediate retry is attempted.
    const unreachable = await withHook("POST", "/v1/otp", { phone_number: phone }, "https://down.hooks.test/notify");
    spy.mockRestore();
    expect(unreachable.status).toBe(502);
    expect(codeOf(unreachable)).toBe("delivery_failed");
    expect(lost).toHaveLength(1);
    const lostCode = JSON.parse(lost[0] as string).code as string;
    expect(codeOf(await verify({ phone_number: phone, otp: lostCode }))).toBe("otp_expired");

    const sent = await withHook("POST", "/v1/otp", { phone_number: phone });
    expect(sent.status).toBe(202);
    const delivered = await codeSentTo(HOOK);
    expect(delivered).toMatch(/^\d{6}$/);

    // A failed resend withdraws its new code and leaves the delivered one working.
    clock.advance(61 * SECOND);
    const failedResend = await withHook("POST", "/v1/otp", { phone_number: phone }, FAILING_HOOK);
    expect(failedResend.status).toBe(502);
    const withdrawn = await codeSentTo(FAILING_HOOK);
    if (withdrawn !== delivered) {
      expect(codeOf(await verify({ phone_number: phone, otp: withdrawn }))).toBe("invalid_otp");
    }
    const ok = await verify({ phone_number: phone, otp: delivered });
    expect(ok.status).toBe(200);
    expect(ok.body.created).toBe(true);

    // Failed attempts count towards the daily cap (a timed-out webhook may have sent the SMS).
    expect((await codeRow(phone))?.day_count).toBe(4);
  });
});

describe("captcha on POST /v1/otp", () => {
  const withTurnstile = (body: Record<string, unknown>, path = "/v1/otp") =>
    callWithEnv("POST", path, body, { TURNSTILE_SECRET: "otp-test-turnstile-secret" });

  it("with TURNSTILE_SECRET set, a missing or rejected token is 400 captcha_failed and sends nothing", async () => {
    const phone = newPhone();
    const missing = await withTurnstile({ phone_number: phone });
    expect(missing.status).toBe(400);
    expect(codeOf(missing)).toBe("captcha_failed");
    const rejected = await withTurnstile({ phone_number: phone, captcha_token: "bad-token" });
    expect(rejected.status).toBe(400);
    expect(codeOf(rejected)).toBe("captcha_failed");
    expect(loggedNotifications().filter((n) => n.to === phone)).toHaveLength(0);
    expect(await codeRow(phone)).toBeNull();

    // Failing the captcha did not start the resend wait.
    const passed = await withTurnstile({ phone_number: phone, captcha_token: "good-token" });
    expect(passed.status).toBe(202);
    const checks = (await (await env.DOUBLE.fetch("http://double/__double/received")).json()) as Received[];
    expect(
      checks.some((r) => r.url.startsWith("https://challenges.cloudflare.com/") && r.body.includes("good-token")),
    ).toBe(true);
    expect((await verify({ phone_number: phone, otp: lastCode(phone) })).status).toBe(200);
  });

  it("a realm that requires a captcha without a configured secret is 503 captcha_unavailable", async () => {
    const realm = await createRealm({ captcha_required: true });
    const res = await sendOtp(newPhone(), { prefix: `/v1/realms/${realm}` });
    expect(res.status).toBe(503);
    expect(codeOf(res)).toBe("captcha_unavailable");
  });
});

describe("phone users and credentials", () => {
  it("a phone user can add an email and a password, then log in with them", async () => {
    const phone = newPhone();
    const pair = (await verify({ phone_number: phone, otp: await requestCode(phone), name: "Phone First" })).body;
    const email = uniqueEmail();
    const setEmail = await api("PUT", "/v1/users/me/email", { token: pair.access_token, body: { email } });
    expect(setEmail.status).toBe(200);
    expect(setEmail.body).toMatchObject({ id: pair.user.id, email, phone_number: phone, source: "phone" });
    const setPassword = await api("PUT", "/v1/users/me/password", {
      token: pair.access_token,
      body: { password: PASSWORD, password_confirmation: PASSWORD },
    });
    expect(setPassword.status).toBe(204);
    const byPassword = await login(email);
    expect(byPassword.user.id).toBe(pair.user.id);
    expect(byPassword.user.phone_number).toBe(phone);
  });

  it("a password user can add a phone number, then log in by OTP; one number never belongs to two users", async () => {
    const user = await signUp();
    const pair = await login(user.email);
    const phone = newPhone();
    const patched = await api("PATCH", "/v1/users/me", {
      token: pair.access_token,
      body: { phone_number: phone, phone_otp: await requestCode(phone) },
    });
    expect(patched.status).toBe(200);
    expect(patched.body.phone_number).toBe(phone);

    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 61_000); // past the resend throttle for the login code
    const loginCode = await requestCode(phone);
    const res = await verify({ phone_number: phone, otp: loginCode, name: "Ignored" });
    vi.useRealTimers();
    expect(res.status).toBe(200);
    expect(res.body.created).toBe(false);
    expect(res.body.user).toMatchObject({ id: user.id, email: user.email, source: "password", full_name: "Test User" });

    const other = await signUp();
    const otherPair = await login(other.email);
    // v1.1: without the number's code the answer is the proof's, not whether the number is taken.
    const taken = await api("PATCH", "/v1/users/me", { token: otherPair.access_token, body: { phone_number: phone } });
    expect(taken.status).toBe(400);
    expect(taken.body.error.fields).toHaveProperty("phone_otp");
    expect(await usersWithPhone(phone)).toHaveLength(1);
  });
});
