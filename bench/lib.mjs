// Shared pieces of the benchmark scripts: build the bundle, serve it in Miniflare with local
// D1, KV and Durable Objects, and apply the D1 migrations.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Miniflare } from "miniflare";

export const root = new URL("..", import.meta.url).pathname;

/** Builds the worker with `wrangler deploy --dry-run --outdir` and returns the bundle's path and the size line. */
export function buildBundle(outdir = join(root, "dist")) {
  const out = execFileSync(process.execPath, [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir], {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  const m = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(out);
  return { script: join(outdir, "index.js"), kib: m ? Number(m[1]) : null, gzipKib: m ? Number(m[2]) : null };
}

/** A new P-256 private JWK for JWT_PRIVATE_KEYS. */
export async function benchKey() {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  return { ...(await crypto.subtle.exportKey("jwk", pair.privateKey)), kid: "bench" };
}

/** Starts Miniflare with user-registry (plus extra workers) and applies the migrations. */
export async function startRegistry({ script, extraWorkers = [], bindings = {} }) {
  const key = await benchKey();
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    workers: [
      {
        name: "user-registry",
        modules: true,
        scriptPath: script,
        compatibilityDate: "2026-08-01",
        compatibilityFlags: ["nodejs_compat"],
        d1Databases: { DB: "bench-db" },
        kvNamespaces: { TOKENS: "bench-kv" },
        durableObjects: { DEVICE_SESSIONS: { className: "DeviceSession", useSQLite: true } },
        bindings: {
          ISSUER: "https://user-registry.bench",
          ENVIRONMENT: "development",
          JWT_PRIVATE_KEYS: JSON.stringify([key]),
          ...bindings,
        },
      },
      ...extraWorkers,
    ],
  });
  const url = await mf.ready;
  const db = await mf.getD1Database("DB", "user-registry");
  for (const file of readdirSync(join(root, "drizzle")).filter((f) => f.endsWith(".sql")).sort()) {
    const sql = readFileSync(join(root, "drizzle", file), "utf8");
    for (const stmt of sql.split("--> statement-breakpoint").map((s) => s.trim()).filter(Boolean)) {
      await db.prepare(stmt).run();
    }
  }
  return { mf, url: url.toString().replace(/\/$/, ""), db };
}

/** Percentile of a sorted-ascending array. */
export const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** Runs fn n times sequentially and returns the sorted durations in ms. */
export async function timeSequential(n, fn) {
  const times = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn(i);
    times.push(performance.now() - t0);
  }
  return times.sort((a, b) => a - b);
}
