// `npm run bench`: builds the bundle, serves it in workerd through Miniflare's API (local D1, KV
// and Durable Objects) next to a baseline worker and a consumer worker, puts load on it with
// autocannon from the same machine, prints a table and writes bench/results.json.
//
// Knobs (environment): BENCH_CONNECTIONS (8), BENCH_DURATION seconds per round (4),
// BENCH_ROUNDS (5), BENCH_WARMUP seconds (2), BENCH_LOGINS sequential logins per tier (60),
// BENCH_ME_SEQUENTIAL sequential /me requests per tier (200), BENCH_TIERS user counts
// (100,10000,100000), BENCH_OUT (bench/results.json), BENCH_CONFIG (another wrangler.toml to
// build the worker from, for experiments), BENCH_STORAGE (tmpfs; `disk` for Miniflare's default
// temp dir, see bench/lib.mjs), BENCH_MAIN_ONLY (a comma list of scenario names, and `login`,
// `passkey`, `totp` for the sequential rows: only those run, and nothing is written).

import { readFileSync, writeFileSync } from "node:fs";
import { cpus, freemem, loadavg, release, totalmem } from "node:os";
import { join } from "node:path";
import { decodeBase32IgnorePadding } from "@oslojs/encoding";
import { generateHOTP } from "@oslojs/otp";
import autocannon from "autocannon";
import {
  buildBundle,
  COMPATIBILITY_DATE,
  cpuMs,
  median,
  pct,
  root,
  runtimeOutput,
  selfCpuMs,
  startRegistry,
  verifierWorker,
  workerdPids,
} from "./lib.mjs";
import { SoftPasskey } from "./soft-passkey.mjs";

const int = (v, d) => (v === undefined || v === "" ? d : Number(v));
const CONNECTIONS = int(process.env.BENCH_CONNECTIONS, 8);
const DURATION = int(process.env.BENCH_DURATION, 4);
const ROUNDS = int(process.env.BENCH_ROUNDS, 5);
const WARMUP = int(process.env.BENCH_WARMUP, 2);
const LOGINS = int(process.env.BENCH_LOGINS, 60);
const ME_SEQUENTIAL = int(process.env.BENCH_ME_SEQUENTIAL, 200);
const TIERS = (process.env.BENCH_TIERS ?? "100,10000,100000").split(",").map(Number);
const OUT = process.env.BENCH_OUT ?? join(root, "bench/results.json");
const PASSWORD = "correct horse battery";
const SEED_BATCH = 5_000;

const GOALS = {
  verify_vs_hello: 0.8,
  // user-registry/verify in the consumer's isolate (docs/api.md §14), without and with the revocation check.
  verify_local_vs_hello: 0.9,
  verify_local_revocation_vs_hello: 0.8,
  me_vs_d1: 0.8,
  refresh_vs_do: 0.7,
  login_overhead_ms: 3,
  bundle_gzip_kib: 110,
  scaling_growth: 1.2,
};

const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const startedAt = new Date();
const loadBefore = loadavg();

// 1. Bundles.
log("building the worker bundle (wrangler deploy --dry-run)…");
const bundle = buildBundle(join(root, ".wrangler/bench/user-registry"), {
  // Another build of the worker (e.g. an experiment's), still served as user-registry.
  config: process.env.BENCH_CONFIG || undefined,
});
log(`bundle: ${(bundle.bytes / 1024).toFixed(2)} KiB, gzip ${(bundle.gzipBytes / 1024).toFixed(2)} KiB`);
const baselineBundle = buildBundle(join(root, ".wrangler/bench/baseline"), {
  config: join(root, "bench/workers/baseline.toml"),
  entry: "baseline.js",
});

// 2. Miniflare: user-registry (default route), the baseline and the consumer (by host name).
const BASELINE = "baseline.bench";
const CONSUMER = "consumer.bench";
const VERIFIER = "verifier.bench";
// One more copy of user-registry per user count of the scaling scenarios, each with its own D1
// database, so the counts are measured side by side, in interleaved rounds.
const tierName = (n) => `t${n}`;
// Passkeys on, for the passkey login row: the software authenticator signs for this RP ID and origin.
const RP_ID = "registry.bench";
const { mf, url, db, dbs, storage } = await startRegistry({
  script: bundle.script,
  bindings: { WEBAUTHN_RP_ID: RP_ID },
  instances: TIERS.map((n) => ({ name: tierName(n), routes: [`${tierName(n)}.bench/*`] })),
  extraWorkers: [
    {
      name: "baseline",
      modules: true,
      scriptPath: baselineBundle.script,
      compatibilityDate: COMPATIBILITY_DATE,
      compatibilityFlags: ["nodejs_compat"],
      routes: [`${BASELINE}/*`],
      d1Databases: { DB: "bench-db" },
      kvNamespaces: { KV: "bench-baseline-kv" },
      durableObjects: { TRIVIAL: { className: "Trivial", useSQLite: true } },
    },
    {
      name: "consumer",
      modules: true,
      scriptPath: join(root, "bench/workers/consumer.js"),
      compatibilityDate: COMPATIBILITY_DATE,
      routes: [`${CONSUMER}/*`],
      serviceBindings: {
        AUTH: { name: "user-registry", entrypoint: "AuthService" },
        FLOOR: { name: "baseline", entrypoint: "Floor" },
      },
    },
    verifierWorker(join(root, ".wrangler/bench/verifier"), { routes: [`${VERIFIER}/*`] }),
  ],
});
const pids = workerdPids();
log(`serving on ${url} (workerd pid ${pids.join(", ") || "?"}; stores on ${storage})`);

/** One request through Miniflare (the sequential timings use this for login and the hash alike). */
async function call(method, path, { body, token, host } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await mf.dispatchFetch(`http://${host ?? "registry.bench"}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, json, text };
}

async function must(method, path, opts, expect = 200) {
  const r = await call(method, path, opts);
  if (r.status !== expect) throw new Error(`${method} ${path}: ${r.status} ${r.text.slice(0, 300)}`);
  return r.json;
}

// The bundle under test works: its OpenAPI document, and a validation error in zod's English.
const doc = await must("GET", "/openapi.json");
if (!doc.paths?.["/v1/users/me"]) throw new Error("/openapi.json lacks /v1/users/me");
const invalid = await call("POST", "/v1/users", { body: { email: "not an email" } });
if (
  invalid.status !== 400 ||
  invalid.json?.error?.code !== "validation_failed" ||
  !/expected string/.test(invalid.text)
) {
  throw new Error(`validation error: ${invalid.status} ${invalid.text}`);
}

// 3. Users: one real sign-up gives the password hash that every seeded user shares.
await must(
  "POST",
  "/v1/users",
  { body: { email: "template@bench.test", password: PASSWORD, full_name: "Template" } },
  201,
);
const { password_hash: seedHash } = await db
  .prepare("SELECT password_hash FROM users WHERE email = ?")
  .bind("template@bench.test")
  .first();
/** A user-registry copy's D1 and host, and its seed users (numbered 1..seeded). */
const store = (d1, host) => ({ db: d1, host, seeded: 0, taken: new Set() });
const mainStore = store(db, undefined);

/** Tops a users table up to `target` rows, in batches of SEED_BATCH (one statement each). */
async function seedTo(st, target) {
  const t0 = performance.now();
  const db = st.db;
  const userCount = async () => (await db.prepare("SELECT count(*) AS n FROM users").first()).n;
  let count = await userCount();
  const now = new Date().toISOString();
  while (count < target) {
    const n = Math.min(SEED_BATCH, target - count);
    const from = st.seeded + 1;
    const to = st.seeded + n;
    const seq =
      "WITH RECURSIVE seq(i) AS (SELECT CAST(?1 AS INTEGER) UNION ALL SELECT i + 1 FROM seq WHERE i < CAST(?2 AS INTEGER))";
    await db.batch([
      db
        .prepare(
          `INSERT INTO users (id, realm, email, password_hash, full_name, roles, status, source, profile, created_at, updated_at)
           ${seq} SELECT printf('%012x%020x', 1700000000000, i), 'default', 'user' || i || '@seed.bench.test', ?3,
           'Seed User ' || i, '["user"]', 'active', 'password', '{}', ?4, ?4 FROM seq`,
        )
        .bind(from, to, seedHash, now),
      db
        .prepare(
          `INSERT INTO user_emails (user_id, email, added_at)
           ${seq} SELECT printf('%012x%020x', 1700000000000, i), 'user' || i || '@seed.bench.test', ?3 FROM seq`,
        )
        .bind(from, to, now),
    ]);
    st.seeded = to;
    count += n;
  }
  log(
    `${st.host ?? "user-registry"}: ${await userCount()} users (seeding took ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
}

const seedEmail = (i) => `user${i}@seed.bench.test`;
const seedId = (i) => `${(1700000000000).toString(16).padStart(12, "0")}${i.toString(16).padStart(20, "0")}`;
const pick = (st = mainStore) => 1 + Math.floor(Math.random() * st.seeded);
/** A seed user no scenario has used yet (so device counts stay what each scenario needs). */
function fresh(st = mainStore) {
  if (st.taken.size >= st.seeded)
    throw new Error(`all ${st.seeded} seed users of ${st.host ?? "user-registry"} are taken`);
  for (;;) {
    const i = pick(st);
    if (!st.taken.has(i)) {
      st.taken.add(i);
      return i;
    }
  }
}
const login = (i, st = mainStore) =>
  must("POST", "/v1/tokens", { host: st.host, body: { email: seedEmail(i), password: PASSWORD } });

// 4. Load.
const cpuCount = cpus().length;

/**
 * One autocannon run. `next(context)` returns the request (method, path, headers, body, host);
 * every scenario builds its request per call, so the client does the same work for each.
 */
async function load({ name, next, onResponse, after, duration = DURATION }) {
  const w0 = cpuMs(pids);
  const s0 = selfCpuMs();
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    pipelining: 1,
    duration,
    timeout: 30,
    requests: [
      {
        setupRequest: (req, context) => {
          const r = next(context);
          if (!r) return null;
          return {
            ...req,
            method: r.method ?? "GET",
            path: r.path,
            headers: {
              ...(r.host ? { host: r.host } : {}),
              ...(r.token ? { authorization: `Bearer ${r.token}` } : {}),
              ...(r.body ? { "content-type": "application/json" } : {}),
            },
            body: r.body ? JSON.stringify(r.body) : undefined,
          };
        },
        onResponse: (status, body, context) => onResponse?.(status, body, context),
      },
    ],
  });
  await after?.();
  const done = result["2xx"] + result.non2xx;
  const workerdCpu = cpuMs(pids) - w0;
  const clientCpu = selfCpuMs() - s0;
  return {
    name,
    rps: result["2xx"] / (result.duration || duration),
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    workerd_cpu_ms_per_req: done ? workerdCpu / done : null,
    client_cpu_ms_per_req: done ? clientCpu / done : null,
  };
}

/** Warms every scenario up once, then runs ROUNDS rounds of all of them, interleaved; medians per scenario. */
async function measure(scenarios) {
  for (const s of scenarios) {
    log(`warm-up: ${s.name}`);
    await load({ ...s, duration: WARMUP });
  }
  const runs = Object.fromEntries(scenarios.map((s) => [s.name, []]));
  for (let r = 1; r <= ROUNDS; r++) {
    for (const s of scenarios) {
      const m = await load(s);
      runs[s.name].push(m);
      log(
        `round ${r}/${ROUNDS} ${s.name}: ${m.rps.toFixed(0)} req/s, p50 ${m.p50_ms} ms, p99 ${m.p99_ms} ms${m.non2xx || m.errors ? `, ${m.non2xx} non-2xx, ${m.errors} errors` : ""}`,
      );
    }
  }
  const out = {};
  for (const s of scenarios) {
    const rs = runs[s.name];
    out[s.name] = {
      rps: median(rs.map((m) => m.rps)),
      p50_ms: median(rs.map((m) => m.p50_ms)),
      p99_ms: median(rs.map((m) => m.p99_ms)),
      non2xx: rs.reduce((a, m) => a + m.non2xx, 0),
      errors: rs.reduce((a, m) => a + m.errors, 0),
      workerd_cpu_ms_per_req: median(rs.map((m) => m.workerd_cpu_ms_per_req)),
      client_cpu_ms_per_req: median(rs.map((m) => m.client_cpu_ms_per_req)),
      rounds_rps: rs.map((m) => Math.round(m.rps)),
    };
  }
  return out;
}

const roundRobin = (items) => {
  let i = 0;
  return () => items[i++ % items.length];
};

// Scenarios that need users: CONNECTIONS users with one device each, for /me, verify and /d1.
await seedTo(mainStore, TIERS[0]);

async function meUsers(st = mainStore) {
  const users = [];
  for (let k = 0; k < CONNECTIONS; k++) {
    const i = fresh(st);
    users.push({ id: seedId(i), token: (await login(i, st)).access_token });
  }
  return users;
}

const hello = { name: "hello", next: () => ({ host: BASELINE, path: "/hello" }) };
const doScenario = { name: "do", next: () => ({ host: BASELINE, path: "/do" }) };
function d1Scenario(users) {
  const u = roundRobin(users);
  return { name: "d1", next: () => ({ host: BASELINE, path: `/d1?id=${u().id}` }) };
}
function meScenario(users, name = "me", host = undefined) {
  const u = roundRobin(users);
  return { name, next: () => ({ host, path: "/v1/users/me", token: u().token }) };
}
function verifyScenario(users) {
  const u = roundRobin(users);
  return { name: "verify", next: () => ({ host: CONSUMER, path: "/", token: u().token }) };
}
/** The same call to an entrypoint that does nothing: the cost of the service binding itself. */
function floorScenario(users) {
  const u = roundRobin(users);
  return { name: "rpc_floor", next: () => ({ host: CONSUMER, path: "/floor", token: u().token }) };
}

/** user-registry/verify in the consumer's own isolate: `/` local only, `/revocation` also asks AUTH (≤ 1 call per token per 5 s). */
function localVerifyScenario(users, name, path) {
  const u = roundRobin(users);
  return { name, next: () => ({ host: VERIFIER, path, token: u().token }) };
}

/**
 * Refresh: each refresh token works once, so every chain is walked by one request at a time: a
 * request takes a chain's newest token from the pool and its answer puts the next one back.
 */
async function refreshScenario() {
  const pool = [];
  // Taken by a request that has not been answered: autocannon builds each connection's next
  // request ahead, and a run ends with requests unsent or unanswered. Right after the run each
  // is presented once more (one the server did rotate is then a retry within the 10 s grace,
  // which answers with the chain's current token), and the answer goes back to the pool.
  const outstanding = new Set();
  for (let k = 0; k < CONNECTIONS * 2; k++) pool.push((await login(fresh())).refresh_token);
  return {
    name: "refresh",
    next: (context) => {
      const token = pool.shift();
      if (!token) throw new Error("refresh pool ran dry: a rotation chain broke");
      outstanding.add(token);
      context.token = token;
      return { method: "POST", path: "/v1/tokens/refresh", body: { refresh_token: token } };
    },
    onResponse: (status, body, context) => {
      outstanding.delete(context.token);
      if (status === 200) pool.push(JSON.parse(body).refresh_token);
      else log(`refresh ${status}: ${String(body).slice(0, 200)}`);
    },
    after: async () => {
      const settled = await Promise.all(
        [...outstanding].map((token) => must("POST", "/v1/tokens/refresh", { body: { refresh_token: token } })),
      );
      outstanding.clear();
      pool.unshift(...settled.map((pair) => pair.refresh_token));
    },
  };
}

let signups = 0;
const signupScenario = {
  name: "signup",
  next: () => ({
    method: "POST",
    path: "/v1/users",
    body: { email: `signup${++signups}@load.bench.test`, password: PASSWORD, full_name: "Load" },
  }),
};

const users = await meUsers();
const only = process.env.BENCH_MAIN_ONLY?.split(",").filter((x) => x !== "1");
const main = await measure(
  [
    hello,
    verifyScenario(users),
    floorScenario(users),
    localVerifyScenario(users, "verify_local", "/"),
    localVerifyScenario(users, "verify_local_revocation", "/revocation"),
    d1Scenario(users),
    meScenario(users),
    doScenario,
    await refreshScenario(),
  ].filter((s) => !only?.length || only.includes(s.name)),
);

// The same comparisons round by round: each round runs the scenarios one after another, so a
// route and its baseline are a few seconds apart; the median of those per-round ratios moves less
// with the machine's drift than the ratio of the two medians.
const paired = (a, b) => median(main[a].rounds_rps.map((x, i) => x / main[b].rounds_rps[i]));

if (process.env.BENCH_MAIN_ONLY) {
  // A shorter run while working on the code: the ratio scenarios only (or those listed), nothing written.
  for (const [k, m] of Object.entries(main)) {
    console.log(
      `${k.padEnd(8)} ${m.rps.toFixed(0).padStart(6)} req/s  p50 ${m.p50_ms} ms  workerd ${m.workerd_cpu_ms_per_req.toFixed(2)} ms/req  rounds ${m.rounds_rps.join(" ")}`,
    );
  }
  const r = (a, b) =>
    main[a] && main[b] ? `${(main[a].rps / main[b].rps).toFixed(2)} (by round ${paired(a, b).toFixed(2)})` : "-";
  console.log(
    `verify/hello ${r("verify", "hello")} (floor ${r("rpc_floor", "hello")})  local ${r("verify_local", "hello")}  local+revocation ${r("verify_local_revocation", "hello")}  me/d1 ${r("me", "d1")}  refresh/do ${r("refresh", "do")}`,
  );
  if (only?.includes("login")) {
    const l = await loginSequential(LOGINS);
    console.log(
      `login    p50 ${l.p50_ms.toFixed(2)} ms  p99 ${l.p99_ms.toFixed(2)} ms  hash ${l.hash_ms.toFixed(2)} ms  overhead ${l.overhead_ms.toFixed(2)} ms  (same device: p50 ${l.same_device_p50_ms.toFixed(2)} ms, overhead ${l.same_device_overhead_ms.toFixed(2)} ms)`,
    );
  }
  if (only?.includes("passkey")) console.log(passkeyLine(await passkeySequential(LOGINS)));
  if (only?.includes("totp")) console.log(totpLine(await totpSequential(LOGINS)));
  await mf.dispose();
  process.exit(0);
}

// GET /v1/devices with 1 and with 50 devices.
const oneDevice = users[0].token;
const many = fresh();
let manyToken;
for (let k = 0; k < 50; k++) manyToken = (await login(many)).access_token;
const devicesCount = (await must("GET", "/v1/devices", { token: manyToken })).devices.length;
if (devicesCount !== 50) throw new Error(`expected 50 devices, found ${devicesCount}`);
const devices = await measure([
  { name: "devices_1", next: () => ({ path: "/v1/devices", token: oneDevice }) },
  { name: "devices_50", next: () => ({ path: "/v1/devices", token: manyToken }) },
]);

/**
 * Login, sequential: each login of a random seed user (a new device each time) is followed by
 * the password check alone (the baseline's /hash: user-registry's verifyPassword, same
 * parameters), through the same client, so both include one round trip and the difference is
 * what login does beyond the hash. Interleaved with them, logins again on a device that already
 * has a session (one of ten users, each on its own device): the session object exists, and the
 * login replaces its session (blacklisting the previous login's access token).
 */
async function loginSequential(n) {
  const loginMs = [];
  const sameDeviceMs = [];
  const hashMs = [];
  const inWorkerHashMs = [];
  const regulars = Array.from({ length: 10 }, () => fresh());
  const deviceOf = (i) => `bench${String(i).padStart(27, "0")}`;
  const loginOn = (i) =>
    must("POST", "/v1/tokens", { body: { email: seedEmail(i), password: PASSWORD, device_id: deviceOf(i) } });
  for (const i of regulars) await loginOn(i);
  for (let k = 0; k < 5; k++) {
    await login(pick());
    await call("GET", "/hash", { host: BASELINE });
  }
  const timed = async (into, fn) => {
    const t0 = performance.now();
    const result = await fn();
    into.push(performance.now() - t0);
    return result;
  };
  for (let k = 0; k < n; k++) {
    await timed(loginMs, () => login(pick()));
    const h = await timed(hashMs, () => call("GET", "/hash", { host: BASELINE }));
    if (!h.json?.ok) throw new Error(`hash: ${h.text}`);
    inWorkerHashMs.push(h.json.ms);
    await timed(sameDeviceMs, () => loginOn(regulars[k % regulars.length]));
  }
  for (const list of [loginMs, sameDeviceMs, hashMs]) list.sort((a, b) => a - b);
  return {
    n,
    p50_ms: pct(loginMs, 50),
    p99_ms: pct(loginMs, 99),
    hash_ms: pct(hashMs, 50),
    hash_in_worker_ms: median(inWorkerHashMs),
    overhead_ms: pct(loginMs, 50) - pct(hashMs, 50),
    same_device_p50_ms: pct(sameDeviceMs, 50),
    same_device_p99_ms: pct(sameDeviceMs, 99),
    same_device_overhead_ms: pct(sameDeviceMs, 50) - pct(hashMs, 50),
  };
}

async function timedInto(into, fn) {
  const t0 = performance.now();
  const result = await fn();
  into.push(performance.now() - t0);
  return result;
}

function spread(list) {
  const t = [...list].sort((a, b) => a - b);
  return { p50_ms: pct(t, 50), p99_ms: pct(t, 99) };
}

/**
 * Passkey login, sequential (docs/api.md §12): request options, the software authenticator's
 * assertion (bench/soft-passkey.mjs, the tests' authenticator; its signing is not timed), then the
 * verification, which starts a session on a new device. Five seed users each register a passkey
 * first (a fresh login, then the registration ceremony); the logins take them in turn.
 */
async function passkeySequential(n) {
  const keys = [];
  for (let k = 0; k < 5; k++) {
    const { access_token: token } = await login(fresh());
    const options = await must("POST", "/v1/users/me/passkeys/options", { token });
    const key = await SoftPasskey.create(RP_ID, `https://${RP_ID}`);
    await must(
      "POST",
      "/v1/users/me/passkeys",
      { token, body: { response: await key.register(options), name: "bench" } },
      201,
    );
    keys.push(key);
  }
  const totalMs = [];
  const optionsMs = [];
  const verifyMs = [];
  const once = async (k, timed) => {
    const key = keys[k % keys.length];
    const t0 = performance.now();
    const options = await must("POST", "/v1/tokens/passkey/options", { body: {} });
    const t1 = performance.now();
    const response = await key.assert(options);
    const t2 = performance.now();
    await must("POST", "/v1/tokens/passkey", { body: { response } });
    const t3 = performance.now();
    if (!timed) return;
    optionsMs.push(t1 - t0);
    verifyMs.push(t3 - t2);
    totalMs.push(t1 - t0 + (t3 - t2));
  };
  for (let k = 0; k < 5; k++) await once(k, false);
  for (let k = 0; k < n; k++) await once(k, true);
  const total = spread(totalMs);
  return {
    n,
    ...total,
    options_p50_ms: spread(optionsMs).p50_ms,
    verification_p50_ms: spread(verifyMs).p50_ms,
    verification_p99_ms: spread(verifyMs).p99_ms,
  };
}

/**
 * Login with TOTP, sequential (docs/api.md §11): the password step (401 mfa_required with an
 * mfa_token), then POST /v1/tokens/mfa with the current code, computed as an authenticator app
 * would (@oslojs/otp). A code is good once per account and step, so each login is of its own seed
 * user, each with TOTP turned on first (its enrolment confirmed with the previous step's code).
 */
async function totpSequential(n) {
  const codeAt = (secret, atMs, offset = 0) =>
    generateHOTP(decodeBase32IgnorePadding(secret), BigInt(Math.floor(atMs / 30_000) + offset), 6);
  // More seed users than the others need: one per login here.
  const { n: rows } = await db.prepare("SELECT count(*) AS n FROM users").first();
  await seedTo(mainStore, rows + n + 5);
  const enrolled = [];
  for (let k = 0; k < n + 5; k++) {
    const i = fresh();
    const { access_token: token } = await login(i);
    const { secret } = await must("POST", "/v1/users/me/mfa/totp", { token }, 201);
    await must("PUT", "/v1/users/me/mfa/totp", { token, body: { code: codeAt(secret, Date.now(), -1) } });
    enrolled.push({ i, secret });
  }
  const totalMs = [];
  const passwordMs = [];
  const secondMs = [];
  for (const [k, { i, secret }] of enrolled.entries()) {
    const timed = k >= 5;
    const first = await timedInto(timed ? passwordMs : [], () =>
      call("POST", "/v1/tokens", { body: { email: seedEmail(i), password: PASSWORD } }),
    );
    if (first.status !== 401 || first.json?.error?.code !== "mfa_required")
      throw new Error(`TOTP login, first step: ${first.status} ${first.text.slice(0, 200)}`);
    const t0 = performance.now();
    await must("POST", "/v1/tokens/mfa", {
      body: { mfa_token: first.json.mfa_token, code: codeAt(secret, Date.now()) },
    });
    if (!timed) continue;
    secondMs.push(performance.now() - t0);
    totalMs.push(passwordMs.at(-1) + secondMs.at(-1));
  }
  const second = spread(secondMs);
  return {
    n,
    ...spread(totalMs),
    password_step_p50_ms: spread(passwordMs).p50_ms,
    mfa_step_p50_ms: second.p50_ms,
    mfa_step_p99_ms: second.p99_ms,
  };
}

function passkeyLine(p) {
  return `passkey login (sequential, ${p.n}): p50 ${p.p50_ms.toFixed(1)} ms, p99 ${p.p99_ms.toFixed(1)} ms (options p50 ${p.options_p50_ms.toFixed(1)} ms, verification p50 ${p.verification_p50_ms.toFixed(1)} ms, p99 ${p.verification_p99_ms.toFixed(1)} ms)`;
}
function totpLine(t) {
  return `login with TOTP (sequential, ${t.n}): p50 ${t.p50_ms.toFixed(1)} ms, p99 ${t.p99_ms.toFixed(1)} ms (password step p50 ${t.password_step_p50_ms.toFixed(1)} ms; POST /v1/tokens/mfa p50 ${t.mfa_step_p50_ms.toFixed(1)} ms, p99 ${t.mfa_step_p99_ms.toFixed(1)} ms)`;
}

/**
 * How cost grows with the users table: the copies of user-registry with TIERS users each, side by
 * side. Sequential logins (each of a random seed user, on a new device) and sequential /me (the
 * CONNECTIONS users of each copy in turn) alternate between the copies request by request, and the
 * /me load runs in interleaved rounds, so a change in the machine's load hits every count alike.
 */
async function scalingRun() {
  const tiers = [];
  for (const n of TIERS) {
    const st = store(dbs[tierName(n)], `${tierName(n)}.bench`);
    await seedTo(st, n);
    tiers.push({ n, st, users: await meUsers(st), loginMs: [], meMs: [] });
  }
  for (const t of tiers) {
    for (let k = 0; k < 5; k++) await login(pick(t.st), t.st);
  }
  for (let k = 0; k < LOGINS; k++) {
    for (let j = 0; j < tiers.length; j++) {
      const t = tiers[(k + j) % tiers.length];
      const t0 = performance.now();
      await login(pick(t.st), t.st);
      t.loginMs.push(performance.now() - t0);
    }
  }
  for (const t of tiers) {
    t.next = roundRobin(t.users);
    for (let k = 0; k < 20; k++) await must("GET", "/v1/users/me", { host: t.st.host, token: t.next().token });
  }
  for (let k = 0; k < ME_SEQUENTIAL; k++) {
    for (let j = 0; j < tiers.length; j++) {
      const t = tiers[(k + j) % tiers.length];
      const t0 = performance.now();
      await must("GET", "/v1/users/me", { host: t.st.host, token: t.next().token });
      t.meMs.push(performance.now() - t0);
    }
  }
  const loaded = await measure(tiers.map((t) => meScenario(t.users, `me_${t.n}`, t.st.host)));
  const out = {};
  for (const t of tiers) {
    t.loginMs.sort((a, b) => a - b);
    t.meMs.sort((a, b) => a - b);
    const me = loaded[`me_${t.n}`];
    out[t.n] = {
      login_p50_ms: pct(t.loginMs, 50),
      login_p99_ms: pct(t.loginMs, 99),
      me_p50_ms: pct(t.meMs, 50),
      me_p99_ms: pct(t.meMs, 99),
      me_rps: me.rps,
      me_loaded_p50_ms: me.p50_ms,
      me_workerd_cpu_ms_per_req: me.workerd_cpu_ms_per_req,
    };
  }
  return out;
}

log("login, sequential, with the password check alone");
const loginFirst = await loginSequential(LOGINS);
log("passkey login and login with TOTP, sequential");
const loginPasskey = await passkeySequential(LOGINS);
const loginTotp = await totpSequential(LOGINS);
const signup = await measure([signupScenario]);
log("scaling");
const scaling = { users: await scalingRun(), devices: {} };
for (const [n, key] of [
  [1, "devices_1"],
  [50, "devices_50"],
]) {
  scaling.devices[n] = { rps: devices[key].rps, p50_ms: devices[key].p50_ms, p99_ms: devices[key].p99_ms };
}
const first = scaling.users[TIERS[0]];
const last = scaling.users[TIERS[TIERS.length - 1]];
scaling.login_p50_growth = last.login_p50_ms / first.login_p50_ms;
scaling.me_p50_growth = last.me_p50_ms / first.me_p50_ms;
scaling.me_rps_ratio = last.me_rps / first.me_rps;
scaling.devices_50_vs_1 = scaling.devices[50].rps / scaling.devices[1].rps;

await mf.dispose();

// 5. Results.
const scenarios = { ...main, ...devices, ...signup };
const ratios = {
  verify_vs_hello: main.verify.rps / main.hello.rps,
  rpc_floor_vs_hello: main.rpc_floor.rps / main.hello.rps,
  verify_local_vs_hello: main.verify_local.rps / main.hello.rps,
  verify_local_revocation_vs_hello: main.verify_local_revocation.rps / main.hello.rps,
  me_vs_d1: main.me.rps / main.d1.rps,
  refresh_vs_do: main.refresh.rps / main.do.rps,
};
const ratiosPaired = {
  verify_vs_hello: paired("verify", "hello"),
  rpc_floor_vs_hello: paired("rpc_floor", "hello"),
  verify_local_vs_hello: paired("verify_local", "hello"),
  verify_local_revocation_vs_hello: paired("verify_local_revocation", "hello"),
  me_vs_d1: paired("me", "d1"),
  refresh_vs_do: paired("refresh", "do"),
};
// The same comparisons by CPU: workerd's CPU time per request (all its threads: both workers,
// the D1/KV/Durable Object simulators, HTTP). Steadier than req/s when other work shares the cores.
const cpu = (k) => main[k].workerd_cpu_ms_per_req;
const ratiosByCpu = {
  verify_vs_hello: cpu("hello") / cpu("verify"),
  rpc_floor_vs_hello: cpu("hello") / cpu("rpc_floor"),
  verify_local_vs_hello: cpu("hello") / cpu("verify_local"),
  verify_local_revocation_vs_hello: cpu("hello") / cpu("verify_local_revocation"),
  me_vs_d1: cpu("d1") / cpu("me"),
  refresh_vs_do: cpu("do") / cpu("refresh"),
};
const loginOut = { ...loginFirst, users: TIERS[0] };
const goals = {
  verify_vs_hello: ratios.verify_vs_hello >= GOALS.verify_vs_hello,
  verify_local_vs_hello: ratios.verify_local_vs_hello >= GOALS.verify_local_vs_hello,
  verify_local_revocation_vs_hello: ratios.verify_local_revocation_vs_hello >= GOALS.verify_local_revocation_vs_hello,
  me_vs_d1: ratios.me_vs_d1 >= GOALS.me_vs_d1,
  refresh_vs_do: ratios.refresh_vs_do >= GOALS.refresh_vs_do,
  login_overhead: loginOut.overhead_ms <= GOALS.login_overhead_ms,
  bundle: bundle.gzipBytes <= GOALS.bundle_gzip_kib * 1024,
  scaling_login: scaling.login_p50_growth <= GOALS.scaling_growth,
  scaling_me: scaling.me_p50_growth <= GOALS.scaling_growth,
};
const results = {
  ratios,
  ratios_paired: ratiosPaired,
  ratios_by_cpu: ratiosByCpu,
  login: loginOut,
  login_passkey: loginPasskey,
  login_totp: loginTotp,
  scaling,
  bundle: {
    bytes: bundle.bytes,
    gzip_bytes: bundle.gzipBytes,
    kib: +(bundle.bytes / 1024).toFixed(2),
    gzip_kib: +(bundle.gzipBytes / 1024).toFixed(2),
    wrangler: `${bundle.kib} KiB / gzip: ${bundle.gzipKib} KiB`,
  },
  machine: {
    cpus: cpuCount,
    cpu_model: cpus()[0]?.model ?? "unknown",
    memory_gib: +(totalmem() / 2 ** 30).toFixed(1),
    free_memory_gib: +(freemem() / 2 ** 30).toFixed(1),
    os: `Linux ${release()}`,
    node: process.version,
    miniflare: JSON.parse(readFileSync(join(root, "node_modules/miniflare/package.json"), "utf8")).version,
    storage,
    load_average_before: loadBefore.map((x) => +x.toFixed(2)),
    load_average_after: loadavg().map((x) => +x.toFixed(2)),
    load_tool: "autocannon 9 (same machine, same Node process as Miniflare's controller)",
    connections: CONNECTIONS,
    pipelining: 1,
    duration_s: DURATION,
    rounds: ROUNDS,
    warmup_s: WARMUP,
    sequential_logins: LOGINS,
    started_at: startedAt.toISOString(),
    took_s: Math.round((Date.now() - startedAt.getTime()) / 1000),
  },
  goals,
  scenarios,
  runtime_log: { lines: runtimeOutput.lines, errors: runtimeOutput.errors },
};
writeFileSync(OUT, `${JSON.stringify(results, null, 2)}\n`);

// 6. Table.
const f0 = (x) => (x == null ? "-" : Math.round(x).toLocaleString("en-US"));
const f1 = (x) => (x == null ? "-" : x.toFixed(1));
const f2 = (x) => (x == null ? "-" : x.toFixed(2));
const ok = (b) => (b ? "met" : "MISSED");
/** One scenario's row: its label, req/s, p50, p99, workerd CPU per request, and a comparison. */
const row = (label, m, vs = "") => [label, f0(m.rps), f1(m.p50_ms), f1(m.p99_ms), f2(m.workerd_cpu_ms_per_req), vs];
const rows = [
  ["scenario", "req/s", "p50 ms", "p99 ms", "workerd CPU ms/req", "vs baseline"],
  row("baseline /hello", main.hello),
  row(
    "verify over the binding",
    main.verify,
    `${f2(ratios.verify_vs_hello)} × hello (goal ≥ 0.8: ${ok(goals.verify_vs_hello)})`,
  ),
  row("(an RPC that does nothing)", main.rpc_floor, `${f2(main.rpc_floor.rps / main.hello.rps)} × hello`),
  row(
    "user-registry/verify, local",
    main.verify_local,
    `${f2(ratios.verify_local_vs_hello)} × hello (goal ≥ 0.9: ${ok(goals.verify_local_vs_hello)})`,
  ),
  row(
    "user-registry/verify + revocation",
    main.verify_local_revocation,
    `${f2(ratios.verify_local_revocation_vs_hello)} × hello (goal ≥ 0.8: ${ok(goals.verify_local_revocation_vs_hello)})`,
  ),
  row("baseline /d1", main.d1),
  row("GET /v1/users/me", main.me, `${f2(ratios.me_vs_d1)} × d1 (goal ≥ 0.8: ${ok(goals.me_vs_d1)})`),
  row("baseline /do", main.do),
  row(
    "POST /v1/tokens/refresh",
    main.refresh,
    `${f2(ratios.refresh_vs_do)} × do (goal ≥ 0.7: ${ok(goals.refresh_vs_do)})`,
  ),
  row("GET /v1/devices (1 device)", devices.devices_1),
  row("GET /v1/devices (50 devices)", devices.devices_50, `${f2(scaling.devices_50_vs_1)} × 1 device`),
  row("POST /v1/users (sign-up)", signup.signup),
];
const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => String(r[c]).length)));
const line = (r) =>
  `| ${r.map((v, c) => (c === 0 || c === 5 ? String(v).padEnd(widths[c]) : String(v).padStart(widths[c]))).join(" | ")} |`;
console.log(
  `\nuser-registry benchmark — ${CONNECTIONS} connections, ${ROUNDS} rounds × ${DURATION} s (median), ${cpuCount} cores, stores on ${storage}\n`,
);
console.log(line(rows[0]));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const r of rows.slice(1)) console.log(line(r));
console.log(
  `\nround by round (median of per-round ratios): verify ${f2(ratiosPaired.verify_vs_hello)} × hello (an RPC that does nothing ${f2(ratiosPaired.rpc_floor_vs_hello)}), /me ${f2(ratiosPaired.me_vs_d1)} × d1, refresh ${f2(ratiosPaired.refresh_vs_do)} × do`,
);
console.log(
  `by CPU per request (hello/verify, d1/me, do/refresh): ${f2(ratiosByCpu.verify_vs_hello)}, ${f2(ratiosByCpu.me_vs_d1)}, ${f2(ratiosByCpu.refresh_vs_do)}; an RPC that does nothing ${f2(ratiosByCpu.rpc_floor_vs_hello)}`,
);
console.log(
  `\nlogin (sequential, ${loginOut.n}, ${TIERS[0]} users): p50 ${f1(loginOut.p50_ms)} ms, p99 ${f1(loginOut.p99_ms)} ms; password check alone ${f1(loginOut.hash_ms)} ms (in the worker ${f1(loginOut.hash_in_worker_ms)} ms); overhead ${f1(loginOut.overhead_ms)} ms (goal ≤ 3: ${ok(goals.login_overhead)}); again on a device that has a session: p50 ${f1(loginOut.same_device_p50_ms)} ms, overhead ${f1(loginOut.same_device_overhead_ms)} ms`,
);
console.log(passkeyLine(loginPasskey));
console.log(totpLine(loginTotp));
console.log("\nusers in D1 | login p50 ms | login p99 ms | /me p50 ms | /me p99 ms | /me req/s (loaded)");
for (const tier of TIERS) {
  const t = scaling.users[tier];
  console.log(
    `${String(tier).padStart(11)} | ${f1(t.login_p50_ms).padStart(12)} | ${f1(t.login_p99_ms).padStart(12)} | ${f2(t.me_p50_ms).padStart(10)} | ${f2(t.me_p99_ms).padStart(10)} | ${f0(t.me_rps).padStart(9)}`,
  );
}
console.log(
  `growth ${TIERS[0]} → ${TIERS[TIERS.length - 1]}: login p50 ${f2(scaling.login_p50_growth)}× (${ok(goals.scaling_login)}), /me p50 ${f2(scaling.me_p50_growth)}× (${ok(goals.scaling_me)}), /me req/s ${f2(scaling.me_rps_ratio)}×`,
);
console.log(
  `\nbundle: ${f2(bundle.bytes / 1024)} KiB, gzip ${f2(bundle.gzipBytes / 1024)} KiB (goal ≤ 110: ${ok(goals.bundle)}); wrangler: ${bundle.kib} KiB / gzip ${bundle.gzipKib} KiB`,
);
console.log(
  `machine: ${cpuCount} × ${results.machine.cpu_model}, load average ${loadBefore.map((x) => x.toFixed(2)).join(" ")} before, ${results.machine.load_average_after.join(" ")} after`,
);
if (runtimeOutput.errors.length)
  console.log(`workerd logged ${runtimeOutput.errors.length} error lines; the last:\n${runtimeOutput.errors.at(-1)}`);
console.log(`wrote ${OUT}`);
