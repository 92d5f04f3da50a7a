import type { Config } from "../config";
import { loadConfig } from "../config";
import { type KeySet, loadKeySet } from "../crypto/jwt";
import type { Env } from "../env";
import { ApiError } from "../errors";
import { type Db, getDb } from "../storage/db";
import { type AuditEntry, type AuditEvent, auditEntry, recordAudit, SYSTEM_ORIGIN } from "./audit";

/** What a service needs: config, stores, keys and the time. Built per request; no globals. */
export interface Deps {
  env: Env;
  config: Config;
  db: Db;
  keys: KeySet;
  now: number;
  /** Work that may finish after the response (ExecutionContext.waitUntil). */
  defer: (p: Promise<unknown>) => void;
  /** Records a security event (docs/api.md §15) with the origin of the request these Deps serve. */
  audit: (e: AuditEvent) => void;
  /** The same event made ready for the D1 batch of the change it records (its row, and its log line). */
  auditEntry: (e: AuditEvent) => AuditEntry;
}

/** Builds Deps, or throws 503 config_invalid naming the problems (never a secret's value). */
export async function makeDeps(
  env: Env,
  now: number,
  defer: Deps["defer"],
  d1: D1Database | D1DatabaseSession = env.DB,
): Promise<Deps> {
  const loaded = loadConfig(env);
  if (!loaded.ok) throw new ApiError("config_invalid", `The service is not configured: ${loaded.problems.join("; ")}`);
  const config = loaded.config;
  let keys: KeySet;
  try {
    keys = await loadKeySet(env.JWT_PRIVATE_KEYS as string, config.JWT_PRIVATE_KEYS);
  } catch {
    throw new ApiError(
      "config_invalid",
      "The service is not configured: JWT_PRIVATE_KEYS: a key could not be imported",
    );
  }
  const deps: Deps = {
    env,
    config,
    db: getDb(d1),
    keys,
    now,
    defer,
    audit: (e) => recordAudit(deps, SYSTEM_ORIGIN, e),
    auditEntry: (e) => auditEntry(now, SYSTEM_ORIGIN, e),
  };
  return deps;
}
