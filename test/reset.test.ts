import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { randomDigits, randomString } from "../src/crypto/random";
import {
  api,
  apiWithEnv,
  claimsOf,
  deviceId,
  frozenClock,
  loggedNotifications,
  login,
  PASSWORD,
  signUp,
  uniqueEmail,
  waitFor,
} from "./helpers";

const NEW_PASSWORD = "reset to this password";

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

const logged = loggedNotifications;

/** Asks for a reset code and returns it, as read from the development log. */
async function requestCode(email: string, headers: Record<string, string> = {}): Promise<string> {
  const spy = vi.spyOn(console, "log").mockImplementation(() => {});
  try {
    // apiWithEnv waits for the deferred delivery (waitUntil) before returning.
    const res = await apiWithEnv({}, "POST", "/v1/users/reset", { body: { email }, headers });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({});
    const msgs = logged(spy).filter((m) => m.type === "reset" && m.to === email);
    expect(msgs).toHaveLength(1);
    const msg = msgs[0] as Record<string, any>;
    expect(msg).toMatchObject({ channel: "email", realm: "default", code: expect.stringMatching(/^\d{8}$/) });
    expect(res.text).not.toContain(msg.code);
    return msg.code;
  } finally {
    spy.mockRestore();
  }
}

const reset = (email: string, code: string, password = NEW_PASSWORD, extra: Record<string, unknown> = {}) =>
  api("PUT", "/v1/users/reset", { body: { email, code, password, password_confirmation: password, ...extra } });

const wrongCode = (code: string) => String((Number(code) + 1) % 1e8).padStart(8, "0");

async function codeRow(userId: string) {
  return env.DB.prepare(
    "SELECT * FROM verification_codes WHERE realm = 'default' AND purpose = 'reset' AND subject = ?",
  )
    .bind(userId)
    .first<Record<string, any>>();
}

function expectInvalid(res: { status: number; body: any }) {
  expect(res.status).toBe(400);
  expect(res.body.error.code).toBe("invalid_code");
}

describe("POST /v1/users/reset", () => {
  it("answers 202 {} for known and unknown emails alike, in about the same time", async () => {
    const known = uniqueEmail();
    await signUp(known);
    const unknown = uniqueEmail("nowhere.example");
    vi.spyOn(console, "log").mockImplementation(() => {});
    const times: Record<"known" | "unknown", number[]> = { known: [], unknown: [] };
    const bodies = new Set<string>();
    // Warm up both paths once, then alternate so drift hits both equally.
    for (let i = 0; i < 11; i++) {
      for (const [kind, email] of [
        ["known", known],
        ["unknown", unknown],
      ] as const) {
        const start = performance.now();
        const res = await api("POST", "/v1/users/reset", { body: { email } });
        const ms = performance.now() - start;
        expect(res.status).toBe(202);
        bodies.add(res.text);
        if (i > 0) times[kind].push(ms);
      }
    }
    expect([...bodies]).toEqual(["{}"]);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const [k, u] = [median(times.known), median(times.unknown)];
    expect(k).toBeGreaterThan(0);
    expect(u).toBeGreaterThan(0);
    // Both paths do the same work (lookup, draw and hash a code, one D1 write; delivery after the
    // response), so the medians are close (about 10 ms each locally). 3x leaves room for CI noise
    // on millisecond timings while still catching one path doing much more, such as a PBKDF2
    // hash (tens of ms) or an inline webhook round trip on one side only.
    expect(Math.max(k, u) / Math.min(k, u)).toBeLessThan(3);
  });

  it("stores only a keyed hash of the code, for 15 minutes, under the user id", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const code = await requestCode(email);
    const row = await codeRow(user.id);
    expect(row).not.toBeNull();
    expect(row?.code_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(row)).not.toContain(code);
    // Not a bare SHA-256 of the code either (8 digits would be inverted in a second).
    const bare = [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(code)))]
      .map((b) => b.toString(16).padStart(2, "0"))
      .join("");
    expect(row?.code_hash).not.toBe(bare);
    expect(row?.attempts).toBe(0);
    expect(Date.parse(row?.expires_at) - Date.parse(row?.sent_at)).toBe(15 * 60 * 1000);
    const byEmail = await env.DB.prepare(
      "SELECT count(*) AS n FROM verification_codes WHERE subject = ? AND purpose = 'reset'",
    )
      .bind(email)
      .first<{ n: number }>();
    expect(byEmail?.n).toBe(0);
  });

  // v1.1 (api.md §16): within 60 s of a send, a new request keeps the pending code (and sends nothing).
  it("replaces the previous code with a new request made 60 s after it", async () => {
    const clock = frozenClock();
    const email = uniqueEmail();
    await signUp(email);
    const first = await requestCode(email);
    clock.advance(60_000);
    const second = await requestCode(email);
    if (first !== second) expectInvalid(await reset(email, first));
    expect((await reset(email, second)).status).toBe(204);
  });
});

describe("PUT /v1/users/reset", () => {
  it("sets the password with the code and logs out every device", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const one = await login(email, { device_id: deviceId("one") });
    const two = await login(email, { device_id: deviceId("two") });
    const code = await requestCode(email);

    const res = await reset(email, code);
    expect(res.status).toBe(204);
    expect(res.text).toBe("");

    for (const pair of [one, two]) {
      const refresh = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: pair.refresh_token } });
      expect(refresh.status).toBe(401);
      expect(refresh.body.error.code).toBe("session_revoked");
      const me = await api("GET", "/v1/users/me", { token: pair.access_token });
      expect(me.status).toBe(401);
      expect(me.body.error.code).toBe("token_revoked");
    }
    await expect(login(email)).rejects.toThrow(/401/);
    await login(email, { password: NEW_PASSWORD });
  });

  it("is single use: the same code again is invalid_code", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const code = await requestCode(email);
    expect((await reset(email, code)).status).toBe(204);
    expectInvalid(await reset(email, code, "yet another password"));
    await login(email, { password: NEW_PASSWORD });
  });

  it("lets exactly one of two concurrent uses of a code win", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const code = await requestCode(email);
    const results = await Promise.all([reset(email, code, "first racer pw"), reset(email, code, "second racer pw")]);
    expect(results.map((r) => r.status).sort()).toEqual([204, 400]);
    const winner = results[0]?.status === 204 ? "first racer pw" : "second racer pw";
    await login(email, { password: winner });
  });

  it("allows 5 tries: after 5 wrong codes the right one is invalid_code too", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const code = await requestCode(email);
    for (let i = 0; i < 5; i++) expectInvalid(await reset(email, wrongCode(code)));
    expect((await codeRow(user.id))?.attempts).toBe(5);
    expectInvalid(await reset(email, code));
    expect((await codeRow(user.id))?.attempts).toBe(5);
    await login(email); // the password did not change
  });

  it("never counts more than 5 tries, even when they arrive at once", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const code = await requestCode(email);
    const results = await Promise.all(Array.from({ length: 12 }, () => reset(email, wrongCode(code))));
    for (const r of results) expectInvalid(r);
    expect((await codeRow(user.id))?.attempts).toBe(5);
    expectInvalid(await reset(email, code));
    await login(email);
  });

  it("the 5th try may still be the right one", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const code = await requestCode(email);
    for (let i = 0; i < 4; i++) expectInvalid(await reset(email, wrongCode(code)));
    expect((await reset(email, code)).status).toBe(204);
  });

  it("expires codes after 15 minutes", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const base = Date.now();
    vi.setSystemTime(base);
    const early = uniqueEmail();
    const late = uniqueEmail();
    await signUp(early);
    await signUp(late);
    const earlyCode = await requestCode(early);
    const lateCode = await requestCode(late);

    vi.setSystemTime(base + 15 * 60 * 1000 - 1000);
    expect((await reset(early, earlyCode)).status).toBe(204);
    vi.setSystemTime(base + 15 * 60 * 1000 + 1000);
    expectInvalid(await reset(late, lateCode));
    vi.useRealTimers();
    await login(late);
  });

  it("refuses a code with another email, and an unknown email, alike", async () => {
    const a = uniqueEmail();
    const b = uniqueEmail();
    await signUp(a);
    await signUp(b);
    const codeA = await requestCode(a);
    // b has no code, then a code of its own: neither makes a's code good for b.
    expectInvalid(await reset(b, codeA));
    const codeB = await requestCode(b);
    if (codeB !== codeA) expectInvalid(await reset(b, codeA));
    expectInvalid(await reset(uniqueEmail("nowhere.example"), codeA));
    await login(b);
    // a's code still works for a (a wrong try on another account spends nothing of a's).
    expect((await reset(a, codeA)).status).toBe(204);
  });

  it("drops an outstanding code when the email changes", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const { access_token } = await login(email);
    const code = await requestCode(email);
    const next = uniqueEmail();
    expect(
      (
        await api("PUT", "/v1/users/me/email", {
          token: access_token,
          body: { email: next, current_password: PASSWORD },
        })
      ).status,
    ).toBe(200);
    expectInvalid(await reset(next, code));
    expectInvalid(await reset(email, code));
  });

  it("validates the new password before spending a try", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const code = await requestCode(email);
    const mismatch = await reset(email, code, NEW_PASSWORD, { password_confirmation: "something else" });
    expect(mismatch.status).toBe(400);
    expect(mismatch.body.error.code).toBe("validation_failed");
    const short = await reset(email, code, "short");
    expect(short.status).toBe(400);
    expect(short.body.error.code).toBe("validation_failed");
    expect((await codeRow(user.id))?.attempts).toBe(0);
    const malformed = await reset(email, "12ab", NEW_PASSWORD);
    expectInvalid(malformed);
    expect((await reset(email, code)).status).toBe(204);
  });
});

describe("reset codes", () => {
  it("are 8 digits drawn uniformly (leading zeros kept)", () => {
    const counts = new Array(10).fill(0);
    for (let i = 0; i < 2000; i++) {
      const c = randomDigits(8);
      expect(c).toMatch(/^\d{8}$/);
      for (const ch of c) counts[Number(ch)]++;
    }
    // 16,000 digits: each expected 1,600 (sd ≈ 38); 1,400..1,800 is beyond 5 sd either way.
    for (const n of counts) {
      expect(n).toBeGreaterThan(1400);
      expect(n).toBeLessThan(1800);
    }
  });
});

describe("random identifiers", () => {
  it("draw each of the 62 letters and digits uniformly (no modulo bias)", () => {
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const counts = new Map<string, number>();
    for (let i = 0; i < 2000; i++) {
      const s = randomString(32);
      expect(s).toMatch(/^[A-Za-z0-9]{32}$/);
      for (const ch of s) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    }
    // 64,000 characters: each expected ~1,032 (sd ≈ 32). Taking bytes modulo 62 would give the
    // first eight ~1,240; 880..1,190 is beyond 4.5 sd either way.
    expect(counts.size).toBe(alphabet.length);
    for (const ch of alphabet) {
      expect(counts.get(ch), ch).toBeGreaterThan(880);
      expect(counts.get(ch), ch).toBeLessThan(1190);
    }
  });
});

describe("audit trail", () => {
  it("records reset requested, failed and completed with IP and device, and never the code or password", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const ip = "198.51.100.231";
    const pub = await api("POST", "/v1/tokens/public", { body: {} });
    const did = pub.body.device_id;
    const code = await requestCode(email, { "CF-Connecting-IP": ip, Authorization: `Bearer ${pub.body.token}` });
    const unknown = uniqueEmail("nowhere.example");
    await api("POST", "/v1/users/reset", { body: { email: unknown }, headers: { "CF-Connecting-IP": ip } });
    expectInvalid(
      await api("PUT", "/v1/users/reset", {
        headers: { "CF-Connecting-IP": ip },
        body: { email, code: wrongCode(code), password: NEW_PASSWORD, password_confirmation: NEW_PASSWORD },
      }),
    );
    const done = await api("PUT", "/v1/users/reset", {
      headers: { "CF-Connecting-IP": ip },
      body: { email, code, password: NEW_PASSWORD, password_confirmation: NEW_PASSWORD },
    });
    expect(done.status).toBe(204);

    const want = ["reset_requested", "reset_failed", "reset_completed"];
    const rows = await waitFor(async () => {
      const { results } = await env.DB.prepare("SELECT * FROM audit_events WHERE user_id = ? ORDER BY id")
        .bind(user.id)
        .all();
      return want.every((t) => results.some((r) => r.type === t)) && results;
    });
    for (const type of want) expect(rows.find((r) => r.type === type)).toMatchObject({ realm: "default", ip });
    expect(rows.find((r) => r.type === "reset_requested")).toMatchObject({ device_id: did });
    expect(JSON.parse(String(rows.find((r) => r.type === "reset_failed")?.detail))).toEqual({ reason: "mismatch" });

    const anonymous = await waitFor(async () => {
      const { results } = await env.DB.prepare(
        "SELECT * FROM audit_events WHERE type = 'reset_requested' AND user_id IS NULL AND ip = ? AND detail = ?",
      )
        .bind(ip, JSON.stringify({ known: false }))
        .all();
      return results.length > 0 && results;
    });
    const all = JSON.stringify([...rows, ...anonymous]);
    for (const secret of [code, NEW_PASSWORD, PASSWORD, pub.body.token, email, unknown])
      expect(all).not.toContain(secret);
    expect(claimsOf(pub.body.token).did).toBe(did);
  });
});
