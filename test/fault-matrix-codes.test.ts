import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { Faults, faultyApi, type Operation, runMatrix } from "./faults";
import {
  api,
  apiWithEnv,
  createRealm,
  deviceId,
  loggedCode,
  login,
  PASSWORD,
  phoneCode,
  signUp,
  signUpVerified,
  uniqueEmail,
  withPrefix,
} from "./helpers";
import { codeOf, refresh, strictProbe } from "./session-helpers";

/**
 * The fault matrix (test/faults.ts `runMatrix`, docs/reliability.md) for the operations that
 * issue, spend or deliver one-time codes, and for deactivation: password reset (request and
 * confirm), OTP send and verify, a sign-up that proves a phone number, an admin creating a user
 * (with its welcome code), and an admin deactivating one. The notifier posts to a webhook here, and Turnstile is on for the OTP send,
 * so their outbound fetches are failed in turn too.
 *
 * Audit rows and the login throttle's reset are written as their own statements after the change:
 * a fault there loses them (docs/reliability.md), so no check here asserts that an audit row exists.
 */
const HOOK = "https://hooks.test/fault-matrix";
const WEBHOOK = { NOTIFY_WEBHOOK_URL: HOOK, NOTIFY_WEBHOOK_SECRET: "fault-matrix-webhook-secret" };
const WITH_CAPTCHA = { ...WEBHOOK, TURNSTILE_SECRET: "fault-matrix-turnstile-secret" };
const NEW_PASSWORD = "a reset good password";
const DELIVERY = { delivery_failed: 502 };

let seq = 0;
const newPhone = () => `+1556${String((Math.floor(Math.random() * 1e7) + seq++) % 1e7).padStart(7, "0")}`;

/** The payloads the webhook received for one address, oldest first. */
async function delivered(to: string, type: string): Promise<Record<string, any>[]> {
  const res = await env.DOUBLE.fetch("http://double/__double/received");
  const all = (await res.json()) as { url: string; body: string }[];
  return all
    .filter((r) => r.url === HOOK)
    .map((r) => JSON.parse(r.body) as Record<string, any>)
    .filter((p) => p.to === to && p.type === type);
}

const row = <T>(sql: string, ...binds: unknown[]) =>
  env.DB.prepare(sql)
    .bind(...binds)
    .first<T>();

/** The code row of a subject: null, or its hash ("-" once spent or withdrawn) and tries. */
const codeRow = (realm: string, purpose: string, subject: string) =>
  row<{ code_hash: string; attempts: number; sent_at: string }>(
    "SELECT code_hash, attempts, sent_at FROM verification_codes WHERE realm = ? AND purpose = ? AND subject = ?",
    realm,
    purpose,
    subject,
  );

const counters = (realm: string, purpose: string, subject: string) =>
  row<{ sends: number; failures: number }>(
    "SELECT SUM(sends) AS sends, SUM(failures) AS failures FROM code_counters WHERE realm = ? AND purpose = ? AND subject = ?",
    realm,
    purpose,
    subject,
  );

const canLogIn = async (email: string, password = PASSWORD, prefix = "") =>
  (await api("POST", withPrefix(prefix, "/v1/tokens"), { body: { email, password } })).status;

/** strictProbe and refresh in a realm of its own. */
const realmProbe = (prefix: string, token: string) =>
  api("DELETE", withPrefix(prefix, `/v1/devices/${"Z".repeat(32)}`), { token });
const realmRefresh = (prefix: string, refreshToken: string) =>
  api("POST", withPrefix(prefix, "/v1/tokens/refresh"), { body: { refresh_token: refreshToken } });

/** A realm of its own with a bootstrapped admin (root@admin.test is in BOOTSTRAP_ADMIN_EMAILS). */
async function realmWithAdmin() {
  const realm = await createRealm();
  const prefix = `/v1/realms/${realm}`;
  await signUpVerified("root@admin.test", {}, prefix);
  const pair = await login("root@admin.test", { prefix });
  return { realm, prefix, token: pair.access_token as string };
}

const resetRequest: Operation<{ email: string; userId: string }> = {
  name: "password reset: request a code",
  setup: async () => {
    const email = uniqueEmail();
    return { email, userId: (await signUp(email)).id };
  },
  run: (f, s) => faultyApi(f, "POST", "/v1/users/reset", { body: { email: s.email }, env: WEBHOOK }),
  ok: 202,
  done: async (s, failed) => {
    const code = await codeRow("default", "reset", s.userId);
    expect(code?.code_hash).toMatch(/^[0-9a-f]{64}$/);
    // Sent after the response: a failed post is logged, not reported (no hint that the email exists).
    if (failed?.kind !== "fetch") expect((await delivered(s.email, "reset")).length).toBeGreaterThan(0);
  },
  untouched: async (s) => {
    // No code that was never sent holds the resend interval: the retry below sends at once.
    expect(await delivered(s.email, "reset")).toHaveLength(0);
    expect((await counters("default", "reset", s.userId))?.sends ?? 0).toBe(0);
  },
  again: (s) => apiWithEnv(WEBHOOK, "POST", "/v1/users/reset", { body: { email: s.email } }),
};

const resetConfirm: Operation<{ email: string; userId: string; code: string; other: any }> = {
  name: "password reset: confirm",
  setup: async () => {
    const email = uniqueEmail();
    const userId = (await signUp(email)).id;
    const other = await login(email);
    const spy = vi.spyOn(console, "log");
    try {
      expect((await api("POST", "/v1/users/reset", { body: { email } })).status).toBe(202);
      return { email, userId, other, code: await loggedCode(spy, "reset", email) };
    } finally {
      spy.mockRestore();
    }
  },
  run: (f, s) =>
    faultyApi(f, "PUT", "/v1/users/reset", {
      body: { email: s.email, code: s.code, password: NEW_PASSWORD, password_confirmation: NEW_PASSWORD },
    }),
  ok: 204,
  done: async (s) => {
    expect(await canLogIn(s.email, NEW_PASSWORD)).toBe(200);
    expect(codeOf(await refresh(s.other.refresh_token))).toBe("session_revoked");
    expect(await codeRow("default", "reset", s.userId)).toBeNull();
    // A follow-up, retried in place: the code went to the address, so it counts as verified.
    const mark = await row<{ verified_at: string | null }>(
      "SELECT verified_at FROM user_emails WHERE user_id = ? AND email = ?",
      s.userId,
      s.email,
    );
    expect(mark?.verified_at).toEqual(expect.any(String));
  },
  untouched: async (s) => {
    expect(await canLogIn(s.email)).toBe(200);
    // A strict check (not a refresh, which would rotate the token the checks below use).
    expect((await strictProbe(s.other.access_token)).status).toBe(404);
    // The code still works, and no failed try is left counted against the account.
    expect((await codeRow("default", "reset", s.userId))?.code_hash).toMatch(/^[0-9a-f]{64}$/);
    expect((await counters("default", "reset", s.userId))?.failures ?? 0).toBe(0);
  },
  again: (s) =>
    api("PUT", "/v1/users/reset", {
      body: { email: s.email, code: s.code, password: NEW_PASSWORD, password_confirmation: NEW_PASSWORD },
    }),
};

const otpSend: Operation<{ phone: string }> = {
  name: "OTP send (Turnstile on, webhook)",
  setup: async () => ({ phone: newPhone() }),
  run: (f, s) =>
    faultyApi(f, "POST", "/v1/otp", { body: { phone_number: s.phone, captcha_token: "ok" }, env: WITH_CAPTCHA }),
  ok: 202,
  fetchErrors: { ...DELIVERY, captcha_unavailable: 503 },
  done: async (s) => {
    expect((await codeRow("default", "otp", s.phone))?.code_hash).toMatch(/^[0-9a-f]{64}$/);
    expect((await delivered(s.phone, "otp")).length).toBeGreaterThan(0);
  },
  untouched: async (s, failed) => {
    // No usable code is left, and none holds the 60 s resend interval (the retry below sends at once).
    const code = await codeRow("default", "otp", s.phone);
    expect(code === null || code.code_hash === "-").toBe(true);
    // A post that failed may still have sent the SMS: it counts towards the day's limit (docs/api.md §5).
    if (failed?.kind !== "fetch" || failed.what.startsWith("challenges."))
      expect((await counters("default", "otp", s.phone))?.sends ?? 0).toBe(0);
  },
  again: (s) => apiWithEnv(WITH_CAPTCHA, "POST", "/v1/otp", { body: { phone_number: s.phone, captcha_token: "ok" } }),
};

const otpVerify: Operation<{ phone: string; code: string; device: string }> = {
  name: "OTP verify (sign-up by phone)",
  setup: async () => {
    const phone = newPhone();
    return { phone, code: await phoneCode(phone), device: deviceId("otpfault") };
  },
  run: (f, s) =>
    faultyApi(f, "POST", "/v1/otp/verify", { body: { phone_number: s.phone, otp: s.code, device_id: s.device } }),
  ok: 200,
  done: async (s) => {
    const users = await env.DB.prepare("SELECT id FROM users WHERE realm = 'default' AND phone_number = ?")
      .bind(s.phone)
      .all<{ id: string }>();
    expect(users.results).toHaveLength(1);
    expect((await codeRow("default", "otp", s.phone))?.code_hash).toBe("-");
  },
  untouched: async (s) => {
    // The code was not used up; a user created before the fault is found again by the retry.
    expect((await codeRow("default", "otp", s.phone))?.code_hash).toMatch(/^[0-9a-f]{64}$/);
    const sessions = await row<{ n: number }>(
      "SELECT COUNT(*) AS n FROM devices JOIN users ON users.id = devices.user_id WHERE users.phone_number = ?",
      s.phone,
    );
    expect(sessions?.n).toBe(0);
  },
  again: async (s) => {
    const res = await api("POST", "/v1/otp/verify", {
      body: { phone_number: s.phone, otp: s.code, device_id: s.device },
    });
    if (res.status === 200) expect((await refresh(res.body.refresh_token)).status).toBe(200);
    return res;
  },
};

const phoneSignUp: Operation<{ phone: string; code: string; email: string }> = {
  name: "sign-up with a proven phone number",
  setup: async () => {
    const phone = newPhone();
    return { phone, code: await phoneCode(phone), email: uniqueEmail() };
  },
  run: (f, s) =>
    faultyApi(f, "POST", "/v1/users", {
      body: { email: s.email, password: PASSWORD, full_name: "Phone", phone_number: s.phone, phone_otp: s.code },
    }),
  ok: 201,
  done: async (s) => {
    expect(await canLogIn(s.email)).toBe(200);
    const user = await row<{ phone_number: string }>("SELECT phone_number FROM users WHERE email = ?", s.email);
    expect(user?.phone_number).toBe(s.phone);
    expect((await codeRow("default", "otp", s.phone))?.code_hash).toBe("-");
  },
  untouched: async (s) => {
    expect(await row("SELECT id FROM users WHERE email = ?", s.email)).toBeNull();
    // The phone's code was not used up by the sign-up that was not written.
    expect((await codeRow("default", "otp", s.phone))?.code_hash).toMatch(/^[0-9a-f]{64}$/);
  },
  again: (s) =>
    api("POST", "/v1/users", {
      body: { email: s.email, password: PASSWORD, full_name: "Phone", phone_number: s.phone, phone_otp: s.code },
    }),
};

type AdminCase = Awaited<ReturnType<typeof realmWithAdmin>> & { email: string };

const adminCreate: Operation<AdminCase> = {
  name: "admin creates a user (welcome code)",
  setup: async () => ({ ...(await realmWithAdmin()), email: uniqueEmail() }),
  run: (f, s) =>
    faultyApi(f, "POST", withPrefix(s.prefix, "/v1/users"), {
      token: s.token,
      body: { email: s.email, full_name: "Welcome" },
      env: WEBHOOK,
    }),
  ok: 201,
  fetchErrors: DELIVERY,
  done: async (s) => {
    const user = await row<{ id: string }>("SELECT id FROM users WHERE realm = ? AND email = ?", s.realm, s.email);
    expect(user).not.toBeNull();
    expect((await codeRow(s.realm, "reset", user?.id ?? ""))?.code_hash).toMatch(/^[0-9a-f]{64}$/);
    expect((await delivered(s.email, "welcome")).length).toBeGreaterThan(0);
  },
  untouched: async (s) => {
    expect(await row("SELECT id FROM users WHERE realm = ? AND email = ?", s.realm, s.email)).toBeNull();
    expect(await row("SELECT 1 FROM user_emails WHERE email = ?", s.email)).toBeNull();
    const orphans = await row<{ n: number }>(
      "SELECT COUNT(*) AS n FROM verification_codes WHERE realm = ? AND purpose = 'reset' AND subject NOT IN (SELECT id FROM users)",
      s.realm,
    );
    expect(orphans?.n).toBe(0);
  },
  again: (s) =>
    apiWithEnv(WEBHOOK, "POST", withPrefix(s.prefix, "/v1/users"), {
      token: s.token,
      body: { email: s.email, full_name: "Welcome" },
    }),
};

const deactivation: Operation<AdminCase & { userId: string; pairs: any[] }> = {
  name: "deactivation (by an admin)",
  setup: async () => {
    const r = await realmWithAdmin();
    const email = uniqueEmail();
    const userId = (await signUp(email, {}, r.prefix)).id;
    const pairs = [await login(email, { prefix: r.prefix }), await login(email, { prefix: r.prefix })];
    return { ...r, email, userId, pairs };
  },
  run: (f, s) => faultyApi(f, "POST", withPrefix(s.prefix, `/v1/users/${s.userId}/deactivate`), { token: s.token }),
  ok: 200,
  done: async (s) => {
    expect(await canLogIn(s.email, PASSWORD, s.prefix)).toBe(403);
    for (const p of s.pairs) {
      expect((await realmProbe(s.prefix, p.access_token)).status).toBe(401);
      expect((await realmRefresh(s.prefix, p.refresh_token)).status).toBe(401);
    }
  },
  untouched: async (s) => {
    expect((await row<{ status: string }>("SELECT status FROM users WHERE id = ?", s.userId))?.status).toBe("active");
    for (const p of s.pairs) expect((await realmProbe(s.prefix, p.access_token)).status).toBe(404);
  },
  again: (s) => api("POST", withPrefix(s.prefix, `/v1/users/${s.userId}/deactivate`), { token: s.token }),
};

describe("faults: the code-bearing operations and deactivation, each call failed in turn", () => {
  for (const op of [
    resetRequest,
    resetConfirm,
    otpSend,
    otpVerify,
    phoneSignUp,
    adminCreate,
    deactivation,
  ] as Operation<any>[]) {
    it(op.name, { timeout: 240_000 }, async () => {
      const outcomes = await runMatrix(op);
      console.log(`fault points of ${op.name}: ${outcomes.join(", ")}`);
    });
  }

  it("the wrapper counts outbound fetches: a reset's webhook post is one call", async () => {
    const faults = new Faults();
    const email = uniqueEmail();
    await signUp(email);
    expect((await faultyApi(faults, "POST", "/v1/users/reset", { body: { email }, env: WEBHOOK })).status).toBe(202);
    expect(faults.calls.filter((c) => c.kind === "fetch").map((c) => c.what)).toEqual(["hooks.test/fault-matrix"]);
  });
});
