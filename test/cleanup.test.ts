import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { loadConfig } from "../src/config";
import worker from "../src/index";
import { runCleanup } from "../src/services/cleanup";
import { getDb } from "../src/storage/db";
import { newSession } from "./helpers";

const NOW = Date.parse("2026-06-01T12:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();
const MINUTE = 60_000;
const DAY = 86_400_000;

async function count(table: string, where = "1=1") {
  const row = await env.DB.prepare(`SELECT count(*) AS n FROM ${table} WHERE ${where}`).first<{ n: number }>();
  return row?.n ?? 0;
}

async function seed(tag: string) {
  const { user } = await newSession();
  const stmts = [
    // codes: one expired, one live
    env.DB.prepare(
      "INSERT INTO verification_codes (realm, purpose, subject, code_hash, attempts, expires_at, sent_at, day, day_count) VALUES ('default', 'otp', ?, 'h', 0, ?, ?, '2026-06-01', 1)",
    ).bind(`+1555${tag}1`, iso(NOW - 1000), iso(NOW - 301_000)),
    env.DB.prepare(
      "INSERT INTO verification_codes (realm, purpose, subject, code_hash, attempts, expires_at, sent_at, day, day_count) VALUES ('default', 'otp', ?, 'h', 0, ?, ?, '2026-06-01', 1)",
    ).bind(`+1555${tag}2`, iso(NOW + 60_000), iso(NOW)),
    env.DB.prepare(
      "INSERT INTO authority_tokens (id, realm, domain, token_hash, created_at, expires_at) VALUES (?, 'default', 'a.test', 'h', ?, ?)",
    ).bind(`old${tag}`, iso(NOW - 100 * DAY), iso(NOW - DAY)),
    env.DB.prepare(
      "INSERT INTO authority_tokens (id, realm, domain, token_hash, created_at, expires_at) VALUES (?, 'default', 'a.test', 'h', ?, ?)",
    ).bind(`new${tag}`, iso(NOW - DAY), iso(NOW + 89 * DAY)),
    env.DB.prepare(
      "INSERT INTO devices (user_id, device_id, realm, session_id, created_at, last_seen_at, expires_at) VALUES (?, ?, 'default', 's', ?, ?, ?)",
    ).bind(user.id, `expired${tag}`.padEnd(32, "x"), iso(NOW - 40 * DAY), iso(NOW - 31 * DAY), iso(NOW - DAY)),
    // Expired by its row a minute ago: the session may live a little longer (the index lags refresh).
    env.DB.prepare(
      "INSERT INTO devices (user_id, device_id, realm, session_id, created_at, last_seen_at, expires_at) VALUES (?, ?, 'default', 's', ?, ?, ?)",
    ).bind(user.id, `lagging${tag}`.padEnd(32, "x"), iso(NOW - 40 * DAY), iso(NOW - 30 * DAY), iso(NOW - MINUTE)),
    env.DB.prepare("INSERT INTO audit_events (at, realm, type) VALUES (?, 'default', ?)").bind(
      iso(NOW - 91 * DAY),
      `old${tag}`,
    ),
    env.DB.prepare("INSERT INTO audit_events (at, realm, type) VALUES (?, 'default', ?)").bind(
      iso(NOW - 89 * DAY),
      `recent${tag}`,
    ),
    env.DB.prepare(
      "INSERT INTO login_throttle (realm, subject, failures, lockouts, locked_until, updated_at) VALUES ('default', ?, 2, 0, NULL, ?)",
    ).bind(`idle${tag}@x.test`, iso(NOW - 2 * DAY)),
    env.DB.prepare(
      "INSERT INTO login_throttle (realm, subject, failures, lockouts, locked_until, updated_at) VALUES ('default', ?, 5, 1, ?, ?)",
    ).bind(`locked${tag}@x.test`, iso(NOW + 60_000), iso(NOW - 2 * DAY)),
  ];
  await env.DB.batch(stmts);
  return user;
}

describe("scheduled cleanup", () => {
  it("removes what has expired, keeps what is live, and is idempotent", async () => {
    const user = await seed("a");
    const ctx = createExecutionContext();
    const log = vi.spyOn(console, "log");
    await worker.scheduled(createScheduledController({ scheduledTime: NOW, cron: "17 * * * *" }), env, ctx);
    await waitOnExecutionContext(ctx);
    const line = log.mock.calls.map((c) => String(c[0])).find((l) => l.includes('"cleanup"'));
    log.mockRestore();
    expect(JSON.parse(line ?? "{}")).toMatchObject({
      event: "cleanup",
      codes: 1,
      authorityTokens: 1,
      devices: 1,
      auditEvents: 1,
      loginThrottle: 1,
    });

    expect(await count("verification_codes", "subject = '+1555a1'")).toBe(0);
    expect(await count("verification_codes", "subject = '+1555a2'")).toBe(1);
    expect(await count("authority_tokens", "id = 'olda'")).toBe(0);
    expect(await count("authority_tokens", "id = 'newa'")).toBe(1);
    expect(await count("devices", `user_id = '${user.id}' AND device_id LIKE 'expireda%'`)).toBe(0);
    // Kept within the margin of twice INDEX_EVERY_MS.
    expect(await count("devices", `user_id = '${user.id}' AND device_id LIKE 'lagginga%'`)).toBe(1);
    // The live session of newSession() stays (it expires in 30 days).
    expect(await count("devices", `user_id = '${user.id}'`)).toBe(2);
    expect(await count("audit_events", "type = 'olda'")).toBe(0);
    expect(await count("audit_events", "type = 'recenta'")).toBe(1);
    expect(await count("login_throttle", "subject = 'idlea@x.test'")).toBe(0);
    expect(await count("login_throttle", "subject = 'lockeda@x.test'")).toBe(1);

    const config = loadConfig(env);
    if (!config.ok) throw new Error("config");
    const again = await runCleanup(getDb(env.DB), config.config, NOW);
    expect(again).toEqual({
      codes: 0,
      codeCounters: 0,
      authorityTokens: 0,
      devices: 0,
      auditEvents: 0,
      loginThrottle: 0,
      loginDevices: 0,
      oauthRecords: 0,
    });
  });

  it("is bounded per run: a backlog drains over several runs", async () => {
    const rows = Array.from({ length: 25 }, (_, i) =>
      env.DB.prepare("INSERT INTO audit_events (at, realm, type) VALUES (?, 'default', 'backlog')").bind(
        iso(NOW - (200 + i) * DAY),
      ),
    );
    await env.DB.batch(rows);
    const config = loadConfig(env);
    if (!config.ok) throw new Error("config");
    const first = await runCleanup(getDb(env.DB), config.config, NOW, 10);
    expect(first.auditEvents).toBe(10);
    expect(await count("audit_events", "type = 'backlog'")).toBe(15);
    await runCleanup(getDb(env.DB), config.config, NOW, 10);
    await runCleanup(getDb(env.DB), config.config, NOW, 10);
    expect(await count("audit_events", "type = 'backlog'")).toBe(0);
  });

  it("respects AUDIT_RETENTION_DAYS", async () => {
    await env.DB.prepare("INSERT INTO audit_events (at, realm, type) VALUES (?, 'default', 'retention')")
      .bind(iso(NOW - 10 * DAY))
      .run();
    const config = loadConfig({ ...env, AUDIT_RETENTION_DAYS: "7" });
    if (!config.ok) throw new Error(config.problems.join());
    await runCleanup(getDb(env.DB), config.config, NOW);
    expect(await count("audit_events", "type = 'retention'")).toBe(0);
  });
});

describe("scheduled cleanup: identity provider records", () => {
  it("removes expired states, codes and spent nonces, keeps live ones", async () => {
    const insert = (key: string, kind: string, at: number) =>
      env.DB.prepare(
        "INSERT INTO oauth_records (key, kind, realm, data, expires_at) VALUES (?, ?, 'default', '{}', ?)",
      ).bind(key, kind, iso(at));
    const tag = crypto.randomUUID();
    await env.DB.batch([insert(`old-${tag}`, "nonce", NOW - 1000), insert(`live-${tag}`, "state", NOW + 60_000)]);
    const config = loadConfig(env);
    if (!config.ok) throw new Error("config");
    const report = await runCleanup(getDb(env.DB), config.config, NOW);
    expect(report.oauthRecords).toBeGreaterThanOrEqual(1);
    expect(await count("oauth_records", `key = 'old-${tag}'`)).toBe(0);
    expect(await count("oauth_records", `key = 'live-${tag}'`)).toBe(1);
  });
});
