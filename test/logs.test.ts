import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { apiWithEnv, configuredKey, uniqueEmail } from "./helpers";

const HOOK = { NOTIFY_WEBHOOK_URL: "https://hooks.test/logs", NOTIFY_WEBHOOK_SECRET: "log-test-webhook-secret-value" };

afterEach(() => vi.restoreAllMocks());

/** Everything the worker writes to its log while `fn` runs. */
async function captureLogs(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  for (const level of ["log", "info", "warn", "error", "debug"] as const) {
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      lines.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
    });
  }
  await fn();
  return lines;
}

async function webhookCode(to: string, type: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const all = (await (await env.DOUBLE.fetch("http://double/__double/received")).json()) as {
      url: string;
      body: string;
    }[];
    const hit = all
      .filter((r) => r.url.startsWith("https://hooks.test/logs"))
      .map((r) => JSON.parse(r.body))
      .find((b) => b.to === to && b.type === type);
    if (hit) return hit.code as string;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no ${type} code for ${to}`);
}

describe("structured logs", () => {
  it("a full flow logs one line per request and never a secret it used", async () => {
    const email = uniqueEmail();
    const phone = `+1646${Math.floor(1e6 + Math.random() * 8e6)}`;
    const password = "first Pa55word for logs";
    const newPassword = "second Pa55word for logs";
    const secrets: string[] = [password, newPassword, HOOK.NOTIFY_WEBHOOK_SECRET, configuredKey().d as string];
    const call = (method: string, path: string, opts: Parameters<typeof apiWithEnv>[3] = {}) =>
      apiWithEnv(HOOK, method, path, { ...opts, headers: { "CF-Connecting-IP": "203.0.113.9", ...opts.headers } });
    let requests = 0;

    const lines = await captureLogs(async () => {
      const signed = await call("POST", "/v1/users", { body: { email, password, full_name: "Logged" } });
      expect(signed.status).toBe(201);
      const pair = (await call("POST", "/v1/tokens", { body: { email, password, description: "laptop" } })).body;
      secrets.push(pair.access_token, pair.refresh_token);
      const me = await call("GET", "/v1/users/me", { token: pair.access_token });
      expect(me.status).toBe(200);
      const refreshed = (await call("POST", "/v1/tokens/refresh", { body: { refresh_token: pair.refresh_token } }))
        .body;
      secrets.push(refreshed.access_token, refreshed.refresh_token);
      expect((await call("POST", "/v1/logout", { token: refreshed.access_token, body: {} })).status).toBe(204);
      expect((await call("POST", "/v1/users/reset", { body: { email } })).status).toBe(202);
      const code = await webhookCode(email, "reset");
      secrets.push(code);
      const reset = await call("PUT", "/v1/users/reset", {
        body: { email, code, password: newPassword, password_confirmation: newPassword },
      });
      expect(reset.status).toBe(204);
      expect((await call("POST", "/v1/otp", { body: { phone_number: phone } })).status).toBe(202);
      const otp = await webhookCode(phone, "otp");
      secrets.push(otp);
      const otpPair = (await call("POST", "/v1/otp/verify", { body: { phone_number: phone, otp, name: "Phone" } }))
        .body;
      secrets.push(otpPair.access_token, otpPair.refresh_token);
      requests = 9;
    });

    const row = await env.DB.prepare("SELECT password_hash FROM users WHERE email = ?")
      .bind(email)
      .first<{ password_hash: string }>();
    const hashParts = (row?.password_hash ?? "").split("$");
    secrets.push(row?.password_hash as string, hashParts[2] as string, hashParts[3] as string);

    const text = lines.join("\n");
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(5);
      expect(text.includes(secret), `a secret of length ${secret.length} appears in the log`).toBe(false);
    }
    // No part of a token either: its signature, or the refresh token's MAC.
    for (const token of secrets.filter((s) => s.split(".").length === 3)) {
      expect(text.includes(token.split(".")[2] as string)).toBe(false);
    }

    const requestLines = lines.filter((l) => l.includes('"event":"request"')).map((l) => JSON.parse(l));
    expect(requestLines).toHaveLength(requests);
    for (const r of requestLines) {
      expect(r).toMatchObject({ level: "info", realm: "default", ip: "203.0.113.9" });
      expect(r.request_id).toMatch(/.+/);
      expect(typeof r.duration_ms).toBe("number");
      expect(r).toHaveProperty("colo");
    }
    const me = requestLines.find((r) => r.route === "/v1/users/me");
    expect(requestLines.map((r) => r.route).join(" ")).toContain("/v1/users/me");
    expect(me).toMatchObject({ method: "GET", status: 200 });
    expect(me.user_id).toMatch(/.+/);
    expect(me.device_id).toMatch(/^[A-Za-z0-9]{32}$/);

    const security = lines.filter((l) => l.includes('"event":"security"')).map((l) => JSON.parse(l).type);
    expect(security).toEqual(
      expect.arrayContaining(["signup", "login", "logout", "reset_requested", "reset_completed", "otp_sent"]),
    );
  });
});
