import { sql } from "drizzle-orm";
import type { Config } from "../config";
import { DAY_MS, iso } from "../time";
import { changedRows, type Db } from "./db";
import { INDEX_EVERY_MS } from "./device-session";

/** Rows removed per table per run: a run stays short, and a backlog drains over a few runs. */
const CLEANUP_BATCH = 500;

export interface CleanupReport {
  /** One-time codes of every kind: verification codes, second-step mfa_tokens, WebAuthn challenges. */
  codes: number;
  codeCounters: number;
  authorityTokens: number;
  devices: number;
  auditEvents: number;
  loginThrottle: number;
  loginDevices: number;
  /** Expired single-use records of the identity provider flows (states, one-time codes, spent nonces). */
  oauthRecords: number;
}

/** A device that has not signed in to an account for this long is no longer familiar to it. */
export const FAMILIAR_DEVICE_DAYS = 90;

/**
 * The scheduled cleanup: expired verification codes, code counters of past UTC days, mfa_tokens and WebAuthn challenges, expired authority tokens, device-index rows
 * of sessions that have expired (their Durable Objects delete themselves by alarm), audit events
 * older than AUDIT_RETENTION_DAYS, idle unlocked login-throttle rows, and devices that have not
 * signed in to an account for FAMILIAR_DEVICE_DAYS, and expired records of the
 * identity provider flows. Idempotent and bounded:
 * each table loses at most `batch` rows per run.
 */
export async function runCleanup(db: Db, config: Config, now: number, batch = CLEANUP_BATCH): Promise<CleanupReport> {
  const nowIso = iso(now);
  const auditBefore = iso(now - config.AUDIT_RETENTION_DAYS * DAY_MS);
  const idleBefore = iso(now - DAY_MS);
  // D1 builds SQLite without DELETE ... LIMIT, so each delete picks its rows in a bounded subquery.
  const purge = async (table: string, where: ReturnType<typeof sql>) => {
    const res = await db.run(
      sql`DELETE FROM ${sql.identifier(table)} WHERE rowid IN (SELECT rowid FROM ${sql.identifier(table)} WHERE ${where} LIMIT ${batch})`,
    );
    return changedRows(res);
  };
  // Each table once, with the report field its count goes to (the one-time codes of three kinds add up).
  const jobs: [keyof CleanupReport, string, ReturnType<typeof sql>][] = [
    ["codes", "verification_codes", sql`expires_at <= ${nowIso}`],
    // The daily caps live here: a day's counters go only once that UTC day is over.
    ["codeCounters", "code_counters", sql`day < ${nowIso.slice(0, 10)}`],
    ["codes", "mfa_tokens", sql`expires_at <= ${nowIso}`],
    ["codes", "webauthn_challenges", sql`expires_at <= ${nowIso}`],
    ["authorityTokens", "authority_tokens", sql`expires_at <= ${nowIso}`],
    // With a margin: a refresh moves the row's expiry at most every INDEX_EVERY_MS, so a live
    // session's row may say it expired up to that long ago. A failed index write waits for the
    // next refresh after INDEX_EVERY_MS; a session idle since then can lose its row here, and
    // that next refresh puts it back.
    ["devices", "devices", sql`expires_at <= ${iso(now - 2 * INDEX_EVERY_MS)}`],
    ["auditEvents", "audit_events", sql`at < ${auditBefore}`],
    [
      "loginThrottle",
      "login_throttle",
      sql`updated_at < ${idleBefore} AND (locked_until IS NULL OR locked_until <= ${nowIso})`,
    ],
    ["loginDevices", "login_devices", sql`last_login_at < ${iso(now - FAMILIAR_DEVICE_DAYS * DAY_MS)}`],
    ["oauthRecords", "oauth_records", sql`expires_at <= ${nowIso}`],
  ];
  const counts = await Promise.all(jobs.map(([, table, where]) => purge(table, where)));
  const report = {} as CleanupReport;
  jobs.forEach(([field], i) => {
    report[field] = (report[field] ?? 0) + (counts[i] ?? 0);
  });
  return report;
}
