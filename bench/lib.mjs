// Shared pieces of the benchmark scripts: build the bundle, serve it in Miniflare with local
// D1, KV and Durable Objects, and apply the D1 migrations.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Miniflare } from "miniflare";

export const root = new URL("..", import.meta.url).pathname;
export const COMPATIBILITY_DATE = "2026-08-01";

/**
 * Builds a worker with `wrangler deploy --dry-run --outdir` (user-registry's wrangler.toml unless
 * `config` is given) and returns the bundle's path, its size in bytes and its gzip size (zlib's
 * default level, as wrangler reports it), and wrangler's own size line.
 */
export function buildBundle(outdir = join(root, "dist"), { config, entry = "index.js" } = {}) {
  const args = [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir];
  if (config) args.push("--config", config);
  const out = execFileSync(process.execPath, args, {
    cwd: root,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  const m = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(out);
  const script = join(outdir, entry);
  const code = readFileSync(script);
  return {
    script,
    bytes: code.byteLength,
    gzipBytes: gzipSync(code).byteLength,
    kib: m ? Number(m[1]) : null,
    gzipKib: m ? Number(m[2]) : null,
  };
}

/** A new P-256 private JWK for JWT_PRIVATE_KEYS. */
export async function benchKey() {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  return { ...(await crypto.subtle.exportKey("jwk", pair.privateKey)), kid: "bench" };
}

/**
 * user-registry as wrangler.toml describes it (without the rate limiters: the load comes from one
 * address). Another instance of it gets its own name, D1 database, KV namespace and routes.
 */
export function registryWorker(script, key, bindings = {}, { name = "user-registry", store = "bench", routes } = {}) {
  return {
    name,
    modules: true,
    scriptPath: script,
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: ["nodejs_compat"],
    ...(routes ? { routes } : {}),
    d1Databases: { DB: `${store}-db` },
    kvNamespaces: { TOKENS: `${store}-kv` },
    durableObjects: { DEVICE_SESSIONS: { className: "DeviceSession", useSQLite: true } },
    bindings: {
      ISSUER: "https://user-registry.bench",
      ENVIRONMENT: "development",
      JWT_PRIVATE_KEYS: JSON.stringify([key]),
      ...bindings,
    },
  };
}

/** Applies drizzle/*.sql to a D1 database, in order. */
export async function applyMigrations(db) {
  for (const file of readdirSync(join(root, "drizzle"))
    .filter((f) => f.endsWith(".sql"))
    .sort()) {
    const sql = readFileSync(join(root, "drizzle", file), "utf8");
    for (const stmt of sql
      .split("--> statement-breakpoint")
      .map((s) => s.trim())
      .filter(Boolean)) {
      await db.prepare(stmt).run();
    }
  }
}

/**
 * What workerd prints (one JSON log line per request, among others) is read and dropped, so the
 * load tool does not spend its core on printing; lines that look like errors are kept (the last
 * 20) for the report.
 */
export const runtimeOutput = { lines: 0, errors: [] };
function drainRuntimeOutput(stdout, stderr) {
  for (const stream of [stdout, stderr]) {
    let rest = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk) => {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop() ?? "";
      for (const text of lines) {
        runtimeOutput.lines++;
        if (/"level":"error"|\berror\b|uncaught/i.test(text)) {
          runtimeOutput.errors.push(text.slice(0, 500));
          if (runtimeOutput.errors.length > 20) runtimeOutput.errors.shift();
        }
      }
    });
  }
}

/**
 * Where Miniflare keeps the local D1, KV and Durable Object stores. Its default "in-memory"
 * storage is a directory under the system's temp dir, which here is on the VM's disk: every
 * SQLite commit of D1, KV and the session objects then waits for an ext4 fsync, and creating an
 * object's database file costs about 5 ms. The benchmarks measure the code, so by default the
 * stores live on tmpfs (/dev/shm) instead, in a directory removed when the process exits (or by
 * the next run, if a signal stopped it).
 * BENCH_STORAGE=disk keeps Miniflare's default; BENCH_STORAGE=<dir> puts them under <dir>.
 */
function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}

function benchStorage() {
  const choice = process.env.BENCH_STORAGE ?? "tmpfs";
  if (choice === "disk") return { kind: "disk", options: {} };
  const parent = choice === "tmpfs" ? "/dev/shm" : choice;
  if (!existsSync(parent)) return { kind: "disk", options: {} };
  // A run stopped by a signal may leave its folder behind (in RAM, on tmpfs): remove those of
  // processes that are gone.
  for (const name of readdirSync(parent)) {
    const m = /^user-registry-bench-(\d+)-/.exec(name);
    if (m && !alive(Number(m[1]))) rmSync(join(parent, name), { recursive: true, force: true });
  }
  const dir = mkdtempSync(join(parent, `user-registry-bench-${process.pid}-`));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return { kind: choice === "tmpfs" ? "tmpfs" : dir, options: { defaultPersistRoot: dir } };
}

/**
 * Starts Miniflare with user-registry (plus extra workers, and `instances`: more copies of
 * user-registry, each with its own stores, e.g. `{ name: "t100", routes: ["t100.bench/*"] }`) and
 * applies the migrations to every copy's D1 database. `registry`: more Miniflare options of the
 * user-registry worker (e.g. queues). Returns the D1 handles by worker name too.
 */
export async function startRegistry({
  script,
  extraWorkers = [],
  bindings = {},
  options = {},
  instances = [],
  registry = {},
}) {
  const key = await benchKey();
  const copies = instances.map((i) =>
    registryWorker(script, key, bindings, { name: i.name, store: i.name, routes: i.routes }),
  );
  const storage = benchStorage();
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: 0,
    handleRuntimeStdio: drainRuntimeOutput,
    ...storage.options,
    ...options,
    workers: [{ ...registryWorker(script, key, bindings), ...registry }, ...copies, ...extraWorkers],
  });
  const url = await mf.ready;
  const dbs = {};
  for (const name of ["user-registry", ...instances.map((i) => i.name)]) {
    dbs[name] = await mf.getD1Database("DB", name);
    await applyMigrations(dbs[name]);
  }
  return { mf, url: url.toString().replace(/\/$/, ""), db: dbs["user-registry"], dbs, storage: storage.kind };
}

/**
 * The consumer of bench/workers/verifier.js: verifies locally with user-registry/verify, keys
 * and revocations over its AUTH binding to user-registry. Built with wrangler into `outdir`.
 */
export function verifierWorker(outdir, { issuer, routes } = {}) {
  const bundle = buildBundle(outdir, { config: join(root, "bench/workers/verifier.toml"), entry: "verifier.js" });
  return {
    name: "verifier",
    modules: true,
    scriptPath: bundle.script,
    compatibilityDate: COMPATIBILITY_DATE,
    compatibilityFlags: ["nodejs_compat"],
    ...(routes ? { routes } : {}),
    bindings: { ISSUER: issuer ?? "https://user-registry.bench" },
    serviceBindings: { AUTH: { name: "user-registry", entrypoint: "AuthService" } },
  };
}

/** Percentile of a sorted-ascending array. */
export const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** Median of numbers (any order). */
export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

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

/** The pids of the workerd processes this Node process started (Miniflare's runtime). */
export function workerdPids() {
  const pids = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid && comm.includes("workerd")) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

const TICKS_PER_SECOND = 100;

/** CPU time (user + system) used so far by these processes and their threads, in ms. */
export function cpuMs(pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
  }
  return (ticks * 1000) / TICKS_PER_SECOND;
}

/** CPU time of this Node process (the load generator), in ms. */
export function selfCpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
