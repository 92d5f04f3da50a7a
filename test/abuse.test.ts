import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { api, apiWithEnv, login, PASSWORD, signUp, uniqueEmail } from "./helpers";

const wrong = (email: string, headers: Record<string, string> = {}) =>
  api("POST", "/v1/tokens", { body: { email, password: "not the password" }, headers });

afterEach(() => {
  vi.useRealTimers();
});

describe("login throttling per account", () => {
  it("answers 429 after 5 failures, with a Retry-After that doubles; a success resets it", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(new Date("2026-03-01T10:00:00Z"));
    const email = uniqueEmail();
    await signUp(email);
    for (let i = 0; i < 5; i++) expect((await wrong(email)).body.error.code).toBe("invalid_credentials");
    const locked = await wrong(email);
    expect(locked.status).toBe(429);
    expect(locked.body.error.code).toBe("too_many_attempts");
    expect(locked.headers.get("Retry-After")).toBe("30");
    // Even the right password waits: the lock is about the account, not the guess.
    expect((await api("POST", "/v1/tokens", { body: { email, password: PASSWORD } })).status).toBe(429);

    vi.setSystemTime(new Date("2026-03-01T10:00:31Z"));
    for (let i = 0; i < 5; i++) expect((await wrong(email)).status).toBe(401);
    const second = await wrong(email);
    expect(second.status).toBe(429);
    expect(second.headers.get("Retry-After")).toBe("60");

    vi.setSystemTime(new Date("2026-03-01T10:01:32Z"));
    await login(email); // success resets the count and the doubling
    for (let i = 0; i < 5; i++) expect((await wrong(email)).status).toBe(401);
    expect((await wrong(email)).headers.get("Retry-After")).toBe("30");
  });

  it("caps the lock at 15 minutes", async () => {
    const { lockoutMs } = await import("../src/storage/throttle");
    expect([0, 1, 2, 3, 4, 5, 10].map(lockoutMs)).toEqual([
      30_000, 60_000, 120_000, 240_000, 480_000, 900_000, 900_000,
    ]);
  });

  it("20 parallel wrong passwords judge at most 5", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const results = await Promise.all(Array.from({ length: 20 }, () => wrong(email)));
    const judged = results.filter((r) => r.status === 401).length;
    const refused = results.filter((r) => r.status === 429).length;
    expect(judged).toBeLessThanOrEqual(5);
    expect(judged + refused).toBe(20);
  });

  it("unknown emails are throttled the same way (no enumeration through 429)", async () => {
    const ghost = uniqueEmail();
    for (let i = 0; i < 5; i++) expect((await wrong(ghost)).body.error.code).toBe("invalid_credentials");
    expect((await wrong(ghost)).status).toBe(429);
  });

  it("a password reset still works while throttled, and clears the throttle", async () => {
    const email = uniqueEmail();
    await signUp(email);
    for (let i = 0; i < 6; i++) await wrong(email);
    expect((await wrong(email)).status).toBe(429);
    const log = vi.spyOn(console, "log");
    const asked = await api("POST", "/v1/users/reset", { body: { email } });
    expect(asked.status).toBe(202);
    let code: string | undefined;
    for (let i = 0; i < 100 && !code; i++) {
      const line = log.mock.calls
        .map((c) => String(c[0]))
        .find((l) => l.includes('"notification"') && l.includes(email));
      code = line ? JSON.parse(line).code : undefined;
      if (!code) await new Promise((r) => setTimeout(r, 10));
    }
    log.mockRestore();
    expect(code).toMatch(/^\d{8}$/);
    const done = await api("PUT", "/v1/users/reset", {
      body: { email, code, password: "a new password here", password_confirmation: "a new password here" },
    });
    expect(done.status).toBe(204);
    await login(email, { password: "a new password here" });
  });
});

describe("unknown email and wrong password look alike", () => {
  it("same status and message, and medians within a factor of 2 over 20 tries each", async () => {
    // The factor: both paths run one PBKDF2 of 100,000 iterations (~20 ms here); what differs is
    // one D1 read and the comparison, well under 10% of that. 2x leaves room for CI noise while a
    // missing dummy hash (a ~1 ms answer against ~20 ms) would still fail by far.
    const email = uniqueEmail();
    await signUp(email);
    const time = async (e: string) => {
      const t0 = performance.now();
      const r = await api("POST", "/v1/tokens", { body: { email: e, password: "not the password" } });
      return { ms: performance.now() - t0, r };
    };
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 20; i++) {
      // Fresh subjects every 4 tries so the throttle never answers first.
      const k = await time(email);
      const u = await time(uniqueEmail());
      expect(k.r.status).toBe(401);
      expect(u.r.status).toBe(401);
      expect(u.r.body).toEqual(k.r.body);
      known.push(k.ms);
      unknown.push(u.ms);
      if (i % 4 === 3) await env.DB.prepare("DELETE FROM login_throttle WHERE subject = ?").bind(email).run();
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const ratio = median(known) / median(unknown);
    expect(ratio).toBeGreaterThan(0.5);
    expect(ratio).toBeLessThan(2);
  });
});

describe("per-IP rate limits", () => {
  it("limits sign-ups per client IP with a clear 429", async () => {
    const ip = `198.51.100.${Math.floor(Math.random() * 250) + 1}`;
    const statuses: number[] = [];
    // The limiter counts in fixed 60 s windows; a window may roll over during the loop, so the
    // first 429 comes after at least 10 and at most 20 sign-ups.
    for (let i = 0; i < 21 && !statuses.includes(429); i++) {
      const res = await api("POST", "/v1/users", {
        body: { email: uniqueEmail(), password: PASSWORD, full_name: "Flood" },
        headers: { "CF-Connecting-IP": ip },
      });
      statuses.push(res.status);
      if (res.status === 429) {
        expect(res.body.error.code).toBe("too_many_attempts");
        expect(res.headers.get("Retry-After")).toBe("60");
      }
    }
    const first429 = statuses.indexOf(429);
    expect(first429).toBeGreaterThanOrEqual(10);
    expect(first429).toBeLessThanOrEqual(20);
    expect(statuses.slice(0, first429).every((s) => s === 201)).toBe(true);
    // Another address is not affected.
    const other = await api("POST", "/v1/users", {
      body: { email: uniqueEmail(), password: PASSWORD, full_name: "Other" },
      headers: { "CF-Connecting-IP": "192.0.2.1" },
    });
    expect(other.status).toBe(201);
  });
});

describe("CORS and security headers", () => {
  const origins = { CORS_ORIGINS: "https://app.example.com, https://admin.example.com" };

  it("echoes a listed origin with credentials, answers preflight, ignores others", async () => {
    const pre = await apiWithEnv(origins, "OPTIONS", "/v1/tokens", {
      headers: { Origin: "https://app.example.com", "Access-Control-Request-Method": "POST" },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("Access-Control-Allow-Origin")).toBe("https://app.example.com");
    expect(pre.headers.get("Access-Control-Allow-Credentials")).toBe("true");
    expect(pre.headers.get("Access-Control-Allow-Headers")).toContain("Authorization");
    const get = await apiWithEnv(origins, "GET", "/health", { headers: { Origin: "https://admin.example.com" } });
    expect(get.headers.get("Access-Control-Allow-Origin")).toBe("https://admin.example.com");
    expect(get.headers.get("Access-Control-Expose-Headers")).toContain("X-Request-Id");
    const evil = await apiWithEnv(origins, "GET", "/health", { headers: { Origin: "https://evil.example.net" } });
    expect(evil.headers.get("Access-Control-Allow-Origin")).toBeNull();
    expect(evil.headers.get("Access-Control-Allow-Credentials")).toBeNull();
  });

  it("puts the CORS and security headers on error answers too", async () => {
    const listed = { headers: { Origin: "https://app.example.com" } };
    const unauthorized = await apiWithEnv(origins, "GET", "/v1/users/me", listed);
    const invalid = await apiWithEnv(origins, "POST", "/v1/tokens", { ...listed, body: { email: "x" } });
    const missing = await apiWithEnv(origins, "GET", "/v1/nowhere", listed);
    expect([unauthorized.status, invalid.status, missing.status]).toEqual([401, 400, 404]);
    for (const r of [unauthorized, invalid, missing]) {
      expect(r.headers.get("Access-Control-Allow-Origin")).toBe("https://app.example.com");
      expect(r.headers.get("Access-Control-Allow-Credentials")).toBe("true");
      expect(r.headers.get("Vary")).toContain("Origin");
      expect(r.headers.get("X-Request-Id")).toBeTruthy();
      expect(r.headers.get("Strict-Transport-Security")).toContain("max-age=");
      expect(r.headers.get("Cache-Control")).toBe("no-store");
    }
  });

  it("never allows credentials with *", async () => {
    const res = await apiWithEnv({ CORS_ORIGINS: "*" }, "GET", "/health", {
      headers: { Origin: "https://any.example" },
    });
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    expect(res.headers.get("Access-Control-Allow-Credentials")).toBeNull();
  });

  it("sends security headers on every response, no-store on tokens", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const res = await api("POST", "/v1/tokens", { body: { email, password: PASSWORD } });
    const notFound = await api("GET", "/nowhere");
    for (const r of [res, notFound]) {
      expect(r.headers.get("X-Content-Type-Options")).toBe("nosniff");
      expect(r.headers.get("Referrer-Policy")).toBe("no-referrer");
      expect(r.headers.get("X-Frame-Options")).toBe("DENY");
      expect(r.headers.get("Content-Security-Policy")).toContain("frame-ancestors 'none'");
    }
    expect(res.headers.get("Cache-Control")).toBe("no-store");
    // A route's own caching replaces the default.
    const jwks = await api("GET", "/.well-known/jwks.json");
    expect(jwks.headers.get("Cache-Control")).toBe("public, max-age=300");
    expect(jwks.headers.get("X-Content-Type-Options")).toBe("nosniff");
  });
});
