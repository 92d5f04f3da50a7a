import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { matchingStep, totpCode } from "../src/auth-methods/totp";
import { runCleanup } from "../src/services/cleanup";
import { makeDeps } from "../src/services/deps";
import { startSession } from "../src/services/sessions";
import { findUserById } from "../src/storage/users";
import {
  api,
  claimsOf,
  deviceId,
  frozenClock,
  loggedNotifications,
  login,
  newSession,
  PASSWORD,
  signUpVerified,
  uniqueEmail,
} from "./helpers";
import { codeAt, enableTotp, firstStep, loginWithTotp, totpUser } from "./mfa-helpers";

const STEP = 30_000;
const mfa = (body: Record<string, unknown>, headers?: Record<string, string>) =>
  api("POST", "/v1/tokens/mfa", { body, headers });

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("TOTP algorithm (RFC 6238, SHA-1)", () => {
  // RFC 6238 Appendix B: the SHA-1 rows (key "12345678901234567890", 8 digits, T0 = 0, X = 30).
  const key = new TextEncoder().encode("12345678901234567890");
  const vectors: [number, string][] = [
    [59, "94287082"],
    [1111111109, "07081804"],
    [1111111111, "14050471"],
    [1234567890, "89005924"],
    [2000000000, "69279037"],
    [20000000000, "65353130"],
  ];
  it.each(vectors)("at %i s the code is %s", (t, expected) => {
    const step = Math.floor(t / 30);
    expect(totpCode(key, step, 8)).toBe(expected);
    // Six digits are the same number modulo 10^6 (what authenticator apps show).
    expect(totpCode(key, step)).toBe(expected.slice(2));
  });

  it("accepts the current step and one either side, not two away", () => {
    const t = 1111111111 * 1000;
    const now = Math.floor(t / STEP);
    expect(matchingStep(key, totpCode(key, now), t)).toBe(now);
    expect(matchingStep(key, totpCode(key, now - 1), t)).toBe(now - 1);
    expect(matchingStep(key, totpCode(key, now + 1), t)).toBe(now + 1);
    expect(matchingStep(key, totpCode(key, now - 2), t)).toBeNull();
    expect(matchingStep(key, totpCode(key, now + 2), t)).toBeNull();
    expect(matchingStep(key, "12345", t)).toBeNull();
  });
});

describe("enrolment", () => {
  it("needs a fresh token, and a first code before it counts", async () => {
    const { email, pair } = await newSession();
    const refreshed = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: pair.refresh_token } });
    const stale = await api("POST", "/v1/users/me/mfa/totp", { token: refreshed.body.access_token });
    expect(stale.status).toBe(401);
    expect(stale.body.error.code).toBe("fresh_token_required");

    const started = await api("POST", "/v1/users/me/mfa/totp", { token: pair.access_token });
    expect(started.status).toBe(201);
    expect(started.body.secret).toMatch(/^[A-Z2-7]{32}$/);
    const uri = new URL(started.body.otpauth_uri);
    expect(uri.protocol).toBe("otpauth:");
    expect(uri.searchParams.get("secret")).toBe(started.body.secret);
    expect(uri.searchParams.get("digits")).toBe("6");
    expect(uri.searchParams.get("period")).toBe("30");
    expect(decodeURIComponent(uri.pathname)).toContain(email);

    // Not confirmed yet: a login is still one step.
    await login(email);
    const wrong = await api("PUT", "/v1/users/me/mfa/totp", { token: pair.access_token, body: { code: "000000" } });
    expect(wrong.status).toBe(400);
    expect(wrong.body.error.code).toBe("invalid_code");
    const ok = await api("PUT", "/v1/users/me/mfa/totp", {
      token: pair.access_token,
      body: { code: codeAt(started.body.secret, Date.now()) },
    });
    expect(ok.status).toBe(200);
    expect(ok.body.recovery_codes).toHaveLength(10);
    expect(new Set(ok.body.recovery_codes).size).toBe(10);
    // Stored hashed: no code appears in D1.
    const rows = await env.DB.prepare("SELECT code_hash FROM recovery_codes").all<{ code_hash: string }>();
    const stored = JSON.stringify(rows.results);
    for (const code of ok.body.recovery_codes) expect(stored).not.toContain(code);

    const again = await api("POST", "/v1/users/me/mfa/totp", { token: pair.access_token });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("totp_already_enabled");
    await firstStep(email);
  });

  it("removal turns the second step off and takes the recovery codes with it", async () => {
    const u = await totpUser();
    const del = await api("DELETE", "/v1/users/me/mfa/totp", { token: u.pair.access_token });
    expect(del.status).toBe(204);
    await login(u.email);
    const left = await env.DB.prepare("SELECT count(*) AS n FROM recovery_codes WHERE user_id = ?")
      .bind(u.user.id)
      .first<{ n: number }>();
    expect(left?.n).toBe(0);
    const regen = await api("POST", "/v1/users/me/mfa/recovery-codes", { token: u.pair.access_token });
    expect(regen.status).toBe(409);
    expect(regen.body.error.code).toBe("totp_not_enabled");
  });
});

describe("the second step of login", () => {
  it("a correct password starts no session; the code finishes it with amr pwd+otp+mfa on the first step's device", async () => {
    const u = await totpUser();
    const device = deviceId("mfa");
    const first = await api("POST", "/v1/tokens", { body: { email: u.email, password: PASSWORD, device_id: device } });
    expect(first.status).toBe(401);
    expect(first.body).toMatchObject({ error: { code: "mfa_required" }, mfa_methods: ["totp", "recovery_code"] });
    expect(first.body.mfa_token).toMatch(/^[A-Za-z0-9]{43}$/);
    expect(first.body.access_token).toBeUndefined();
    const indexed = await env.DB.prepare("SELECT count(*) AS n FROM devices WHERE user_id = ? AND device_id = ?")
      .bind(u.user.id, device)
      .first<{ n: number }>();
    expect(indexed?.n).toBe(0);

    const done = await mfa({ mfa_token: first.body.mfa_token, code: codeAt(u.secret, Date.now()) });
    expect(done.status).toBe(200);
    expect(done.body.device_id).toBe(device);
    const claims = claimsOf(done.body.access_token);
    expect(claims.amr).toEqual(["pwd", "otp", "mfa"]);
    expect(claims.fresh).toBe(true);
    expect(typeof claims.auth_time).toBe("number");

    // Kept across refresh; fresh is not.
    const refreshed = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: done.body.refresh_token } });
    expect(refreshed.status).toBe(200);
    const after = claimsOf(refreshed.body.access_token);
    expect(after.amr).toEqual(["pwd", "otp", "mfa"]);
    expect(after.auth_time).toBe(claims.auth_time);
    expect(after.fresh).toBe(false);

    // Spent by its success.
    const spent = await mfa({ mfa_token: first.body.mfa_token, code: codeAt(u.secret, Date.now(), 1) });
    expect(spent.status).toBe(401);
    expect(spent.body.error.code).toBe("invalid_token");
  });

  it("a code works once: replayed within its window it fails; two steps away it fails; one step away it works", async () => {
    const clock = frozenClock();
    const u = await totpUser();
    await loginWithTotp(u.email, u.secret);
    const replay = await mfa({ mfa_token: await firstStep(u.email), code: codeAt(u.secret, clock.now) });
    expect(replay.status).toBe(401);
    expect(replay.body.error.code).toBe("invalid_otp");

    const token = await firstStep(u.email);
    for (const offset of [-2, 2, 3]) {
      const far = await mfa({ mfa_token: token, code: codeAt(u.secret, clock.now, offset) });
      expect(far.body.error.code, `offset ${offset}`).toBe("invalid_otp");
    }
    const next = await mfa({ mfa_token: token, code: codeAt(u.secret, clock.now, 1) });
    expect(next.status).toBe(200);
    // Step +1 is now the last one used: the current step's code (older) no longer works either.
    clock.advance(STEP);
    const older = await mfa({ mfa_token: await firstStep(u.email), code: codeAt(u.secret, clock.now - STEP) });
    expect(older.body.error.code).toBe("invalid_otp");
  });

  it("5 wrong tries use up the mfa_token, and the account's login throttle counts them", async () => {
    const clock = frozenClock();
    const u = await totpUser();
    const token = await firstStep(u.email);
    for (let i = 0; i < 5; i++) {
      const wrong = await mfa({ mfa_token: token, code: codeAt(u.secret, clock.now, 5) });
      expect(wrong.status).toBe(401);
      expect(wrong.body.error.code).toBe("invalid_otp");
    }
    const right = await mfa({ mfa_token: token, code: codeAt(u.secret, clock.now) });
    expect(right.status).toBe(401);
    expect(right.body.error.code).toBe("invalid_token");
    // Five failures lock the account, for passwords too.
    const locked = await api("POST", "/v1/tokens", { body: { email: u.email, password: PASSWORD } });
    expect(locked.status).toBe(429);
    expect(Number(locked.headers.get("Retry-After"))).toBeGreaterThan(0);
    clock.advance(31_000);
    await loginWithTotp(u.email, u.secret);
  });

  it("a correct password gives no fresh code tries: failures add up across mfa_tokens", async () => {
    const clock = frozenClock();
    const u = await totpUser();
    for (let i = 0; i < 4; i++) {
      const wrong = await mfa({ mfa_token: await firstStep(u.email), code: codeAt(u.secret, clock.now, 5) });
      expect(wrong.body.error.code).toBe("invalid_otp");
    }
    const token = await firstStep(u.email);
    expect((await mfa({ mfa_token: token, code: codeAt(u.secret, clock.now, 5) })).body.error.code).toBe("invalid_otp");
    const locked = await api("POST", "/v1/tokens", { body: { email: u.email, password: PASSWORD } });
    expect(locked.status).toBe(429);
  });

  it("an mfa_token lives 5 minutes and belongs to the device of the first step", async () => {
    const clock = frozenClock();
    const u = await totpUser();
    const device = deviceId("first");
    const pub = await api("POST", "/v1/tokens/public", { body: { device_id: deviceId("other") } });
    const token = await firstStep(u.email, { device_id: device });
    const elsewhere = await mfa(
      { mfa_token: token, code: codeAt(u.secret, clock.now) },
      { Authorization: `Bearer ${pub.body.token}` },
    );
    expect(elsewhere.status).toBe(401);
    expect(elsewhere.body.error.code).toBe("invalid_token");
    clock.advance(5 * 60_000 + 1);
    const late = await mfa({ mfa_token: token, code: codeAt(u.secret, clock.now) });
    expect(late.status).toBe(401);
    expect(late.body.error.code).toBe("invalid_token");
    const unknown = await mfa({ mfa_token: "x".repeat(43), code: "123456" });
    expect(unknown.body.error.code).toBe("invalid_token");
    const both = await mfa({ mfa_token: token, code: "123456", recovery_code: "abcde-fghij" });
    expect(both.status).toBe(400);
    expect(both.body.error.code).toBe("validation_failed");
    // The scheduled cleanup removes it.
    const count = async () =>
      (
        await env.DB.prepare("SELECT count(*) AS n FROM mfa_tokens WHERE user_id = ?")
          .bind(u.user.id)
          .first<{ n: number }>()
      )?.n;
    expect(await count()).toBe(1);
    const deps = await makeDeps(env, clock.now, () => {});
    await runCleanup(deps.db, deps.config, clock.now);
    expect(await count()).toBe(0);
  });

  it("a recovery code works once and adds kba; regeneration retires the old set", async () => {
    const u = await totpUser();
    const [first, second] = u.recoveryCodes as [string, string];
    const used = await mfa({ mfa_token: await firstStep(u.email), recovery_code: first.toUpperCase() });
    expect(used.status).toBe(200);
    expect(claimsOf(used.body.access_token).amr).toEqual(["pwd", "kba", "mfa"]);
    const twice = await mfa({ mfa_token: await firstStep(u.email), recovery_code: first });
    expect(twice.status).toBe(401);
    expect(twice.body.error.code).toBe("invalid_otp");

    const regen = await api("POST", "/v1/users/me/mfa/recovery-codes", { token: used.body.access_token });
    expect(regen.status).toBe(200);
    expect(regen.body.recovery_codes).toHaveLength(10);
    const old = await mfa({ mfa_token: await firstStep(u.email), recovery_code: second });
    expect(old.body.error.code).toBe("invalid_otp");
    const fresh = await mfa({ mfa_token: await firstStep(u.email), recovery_code: regen.body.recovery_codes[0] });
    expect(fresh.status).toBe(200);
  });
});

describe("every way into a session asks for the second factor", () => {
  it("phone code: 401 mfa_required, then the app's code; amr sms+otp+mfa", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const phone = `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, "0")}`;
    const sendAndRead = async () => {
      const before = log.mock.calls.length;
      expect((await api("POST", "/v1/otp", { body: { phone_number: phone } })).status).toBe(202);
      const sent = loggedNotifications({ mock: { calls: log.mock.calls.slice(before) } }).find((m) => m.type === "otp");
      return sent?.code as string;
    };
    const clock = frozenClock();
    const created = await api("POST", "/v1/otp/verify", { body: { phone_number: phone, otp: await sendAndRead() } });
    expect(created.status).toBe(200);
    const { secret } = await enableTotp(created.body.access_token);
    clock.advance(61_000);
    const again = await api("POST", "/v1/otp/verify", { body: { phone_number: phone, otp: await sendAndRead() } });
    expect(again.status).toBe(401);
    expect(again.body.error.code).toBe("mfa_required");
    const done = await mfa({ mfa_token: again.body.mfa_token, code: codeAt(secret, clock.now) });
    expect(done.status).toBe(200);
    expect(claimsOf(done.body.access_token).amr).toEqual(["sms", "otp", "mfa"]);
  });

  it("refresh: a session begun with one factor ends once TOTP is on; the enrolling session carries on", async () => {
    const { email, pair } = await newSession();
    const older = await login(email, { device_id: deviceId("older") });
    await enableTotp(pair.access_token);
    const stale = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: older.refresh_token } });
    expect(stale.status).toBe(401);
    expect(stale.body.error.code).toBe("session_revoked");
    const own = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: pair.refresh_token } });
    expect(own.status).toBe(200);
    expect(claimsOf(own.body.access_token).amr).toEqual(["pwd", "otp", "mfa"]);
  });

  it("a password login racing the confirmation gets no session", async () => {
    const { email, user, pair } = await newSession();
    const deps = await makeDeps(env, Date.now(), () => {});
    const asRead = await findUserById(deps.db, "default", user.id);
    if (!asRead) throw new Error("no user");
    expect(asRead.totpOn).toBe(false);
    await enableTotp(pair.access_token);
    const device = deviceId("racing");
    const outcome = await startSession(deps, asRead, device, { amr: ["pwd"] }).then(
      () => "started",
      (e: { code?: string }) => e.code,
    );
    expect(outcome).toBe("invalid_credentials");
    const rows = await env.DB.prepare("SELECT count(*) AS n FROM devices WHERE user_id = ? AND device_id = ?")
      .bind(user.id, device)
      .first<{ n: number }>();
    expect(rows?.n).toBe(0);
    await firstStep(email);
  });

  it("reset code: a new password still needs the second factor", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const u = await totpUser();
    expect((await api("POST", "/v1/users/reset", { body: { email: u.email } })).status).toBe(202);
    const sent = loggedNotifications(log).find((m) => m.type === "reset" && m.to === u.email);
    const reset = await api("PUT", "/v1/users/reset", {
      body: {
        email: u.email,
        code: sent?.code,
        password: "a brand new password",
        password_confirmation: "a brand new password",
      },
    });
    expect(reset.status).toBe(204);
    const first = await api("POST", "/v1/tokens", { body: { email: u.email, password: "a brand new password" } });
    expect(first.status).toBe(401);
    expect(first.body.error.code).toBe("mfa_required");
  });

  it("admin-created account with a welcome code: after TOTP, its logins need the second factor", async () => {
    await signUpVerified("root@admin.test");
    const admin = await login("root@admin.test");
    // After signUpVerified, which spies on the log itself and restores it.
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const email = uniqueEmail();
    const created = await api("POST", "/v1/users", {
      token: admin.access_token,
      body: { email, full_name: "Welcomed" },
    });
    expect(created.status).toBe(201);
    const welcome = loggedNotifications(log).find((m) => m.type === "welcome" && m.to === email);
    const set = await api("PUT", "/v1/users/reset", {
      body: { email, code: welcome?.code, password: PASSWORD, password_confirmation: PASSWORD },
    });
    expect(set.status).toBe(204);
    const pair = await login(email);
    await enableTotp(pair.access_token);
    await firstStep(email);
  });
});
