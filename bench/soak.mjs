// `npm run soak`: mixed traffic against the built worker in workerd (Miniflare, local D1, KV and
// Durable Objects) for a set time, then the invariants checked on every user it created, and
// workerd's resident memory before, during, after the traffic and after an idle pause.
//
// Mixed traffic: each of SOAK_CLIENTS clients owns its own users (so no two requests of the soak
// race on one session; races have their own tests) and loops over login on a new device, refresh,
// GET /v1/users/me, GET /v1/devices, logout and, rarely, log out everywhere.
//
// Invariants, checked at the end:
//   - every live session refreshes;
//   - every ended session stays out: its refresh token is refused and its last access token fails
//     a strict verify() over the service binding;
//   - each user's device list equals the sessions the soak holds for it;
//   - every user can log in.
//
// Memory: a second worker creates SOAK_PROBE_OBJECTS trivial SQLite-backed Durable Objects (one
// row each) after the traffic, so the growth per object of the runtime itself can be set beside
// the growth per session of the registry.
//
// Knobs (environment): SOAK_SECONDS (60), SOAK_CLIENTS (8), SOAK_USERS per client (6),
// SOAK_DEVICES per user (0: a new device for every login), SOAK_IDLE seconds after the traffic (30), SOAK_PROBE_OBJECTS (2000), SOAK_MAX_REQUESTS (200000),
// SOAK_OUT (bench/soak-results.json), SOAK_INSPECTOR_PORT (9329; 0: no inspector), BENCH_STORAGE (see bench/lib.mjs).
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildBundle, COMPATIBILITY_DATE, pct, root, runtimeOutput, startRegistry, workerdPids } from "./lib.mjs";

const int = (v, d) => (v === undefined || v === "" ? d : Number(v));
const SECONDS = int(process.env.SOAK_SECONDS, 60);
const CLIENTS = int(process.env.SOAK_CLIENTS, 8);
const USERS_PER_CLIENT = int(process.env.SOAK_USERS, 6);
const IDLE = int(process.env.SOAK_IDLE, 30);
const PROBE_OBJECTS = int(process.env.SOAK_PROBE_OBJECTS, 2000);
const MAX_REQUESTS = int(process.env.SOAK_MAX_REQUESTS, 200_000);
// 0: every login is on a new device (a new session object each time); N: each user logs in on one
// of N devices of its own, so the number of session objects stays bounded.
const DEVICES = int(process.env.SOAK_DEVICES, 0);
const OUT = process.env.SOAK_OUT ?? join(root, "bench/soak-results.json");
const PASSWORD = "correct horse battery";

const log = (...a) => console.error(`[soak ${new Date().toISOString().slice(11, 19)}]`, ...a);

// A consumer whose verify() is strict (asks the device's session object), and a probe with a
// trivial Durable Object, both inline.
const CONSUMER = `export default {
  async fetch(request, env) {
    const token = (request.headers.get("authorization") ?? "").slice(7);
    const result = await env.AUTH.verify(token, { strict: true });
    return Response.json(result, { status: result.ok ? 200 : 401 });
  },
};`;
const PROBE = `import { DurableObject } from "cloudflare:workers";
export class Probe extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)");
  }
  write(at) {
    this.ctx.storage.sql.exec("INSERT INTO hits (at) VALUES (?)", at);
    return 1;
  }
}
export default {
  async fetch(request, env) {
    const name = new URL(request.url).searchParams.get("name") ?? "x";
    return Response.json(await env.PROBE.get(env.PROBE.idFromName(name)).write(Date.now()));
  },
};`;

log("building the worker bundle…");
const bundle = buildBundle(join(root, ".wrangler/soak/user-registry"));
// SOAK_INSPECTOR_PORT=0 runs workerd without its inspector (and so without the V8 heap readings),
// to see what the inspector itself keeps.
const INSPECTOR_PORT = int(process.env.SOAK_INSPECTOR_PORT, 9329);
const { mf, storage } = await startRegistry({
  script: bundle.script,
  options: INSPECTOR_PORT ? { inspectorPort: INSPECTOR_PORT } : {},
  extraWorkers: [
    {
      name: "strict-consumer",
      modules: true,
      script: CONSUMER,
      compatibilityDate: COMPATIBILITY_DATE,
      routes: ["consumer.soak/*"],
      serviceBindings: { AUTH: { name: "user-registry", entrypoint: "AuthService" } },
    },
    {
      name: "probe",
      modules: true,
      script: PROBE,
      compatibilityDate: COMPATIBILITY_DATE,
      routes: ["probe.soak/*"],
      durableObjects: { PROBE: { className: "Probe", useSQLite: true } },
    },
  ],
});
const pids = workerdPids();

/** Resident memory of workerd (all its processes), in MiB: the total, or one part of it (RssAnon, RssFile, RssShmem). */
function rssMiB(field = "VmRSS") {
  let kib = 0;
  for (const pid of pids) {
    try {
      const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m) kib += Number(m[1]);
    } catch {
      // gone
    }
  }
  return Math.round(kib / 102.4) / 10;
}
const rssParts = () => ({ anon: rssMiB("RssAnon"), file: rssMiB("RssFile"), shmem: rssMiB("RssShmem") });

/**
 * /proc/<pid>/smaps_rollup of workerd, summed over its processes, in MiB: how much of the resident
 * memory is private and dirty (heaps, SQLite page caches, the allocator's arenas) and how much is
 * mapped files (the binary, the stores' files on tmpfs).
 */
function smaps() {
  const out = {};
  for (const pid of pids) {
    let text = "";
    try {
      text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    } catch {
      continue;
    }
    for (const m of text.matchAll(/^(\w+):\s+(\d+) kB/gm)) out[m[1]] = (out[m[1]] ?? 0) + Number(m[2]);
  }
  const pick = ["Rss", "Pss", "Shared_Clean", "Private_Clean", "Private_Dirty", "Anonymous", "Swap"];
  return Object.fromEntries(pick.filter((k) => k in out).map((k) => [k, Math.round(out[k] / 102.4) / 10]));
}

/**
 * V8 heap of every isolate workerd runs (the registry's, with its Durable Objects, and Miniflare's
 * own workers behind D1 and KV), through the inspector: used and total MiB. This tells memory held
 * by JavaScript from memory outside the heaps (SQLite connections, the runtime, the allocator).
 */
async function heaps() {
  const out = {};
  if (!INSPECTOR_PORT) return out;
  const list = await (await fetch(`http://127.0.0.1:${INSPECTOR_PORT}/json/list`)).json();
  for (const target of list) {
    const ws = new WebSocket(target.webSocketDebuggerUrl);
    // A target that does not answer within 2 s is left out rather than holding the soak.
    const within = (promise) => Promise.race([promise, new Promise((resolve) => setTimeout(resolve, 2000, null))]);
    const opened = await within(
      new Promise((resolve) => {
        ws.onopen = () => resolve(true);
        ws.onerror = () => resolve(null);
      }),
    );
    if (!opened) {
      ws.close();
      continue;
    }
    let id = 0;
    const send = (method) =>
      within(
        new Promise((resolve) => {
          const my = ++id;
          ws.onmessage = (e) => {
            const msg = JSON.parse(e.data);
            if (msg.id === my) resolve(msg.result);
          };
          ws.send(JSON.stringify({ id: my, method }));
        }),
      );
    const u = await send("Runtime.getHeapUsage");
    ws.close();
    if (u) out[target.id] = { used: +(u.usedSize / 2 ** 20).toFixed(1), total: +(u.totalSize / 2 ** 20).toFixed(1) };
  }
  return out;
}

/** Sum of the V8 heaps of every isolate (used and total MiB). */
const heapSum = (h) => {
  const v = Object.values(h);
  return {
    used: +v.reduce((n, x) => n + x.used, 0).toFixed(1),
    total: +v.reduce((n, x) => n + x.total, 0).toFixed(1),
  };
};

/**
 * Bytes on disk (tmpfs by default) of the local stores, by kind (D1, KV, Durable Objects): the
 * SQLite files are read and written, not mapped, so they count in RSS only through page caches.
 */
function storeMiB() {
  const out = {};
  const walk = (dir, kind) => {
    let entries = [];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p, kind ?? e.name);
      else out[kind ?? "."] = (out[kind ?? "."] ?? 0) + statSync(p).size;
    }
  };
  for (const name of readdirSync("/dev/shm").filter((n) => n.startsWith(`user-registry-bench-${process.pid}-`)))
    walk(join("/dev/shm", name));
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Math.round(v / 104857.6) / 10]));
}

const stats = new Map(); // route -> { statuses: {code: n}, times: [] }
let requests = 0;
async function call(route, method, path, { body, token, host } = {}) {
  requests++;
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const t0 = performance.now();
  const res = await mf.dispatchFetch(`http://${host ?? "registry.soak"}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const ms = performance.now() - t0;
  let s = stats.get(route);
  if (!s) {
    s = { statuses: {}, times: [] };
    stats.set(route, s);
  }
  s.statuses[res.status] = (s.statuses[res.status] ?? 0) + 1;
  s.times.push(ms);
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON (204)
  }
  return { status: res.status, json };
}

const memory = { before: rssMiB(), smapsBefore: smaps(), heapsBefore: await heaps(), samples: [] };
const started = Date.now();
let sampled = 0;
const sampler = setInterval(async () => {
  const sample = {
    s: Math.round((Date.now() - started) / 1000),
    mib: rssMiB(),
    anon: rssMiB("RssAnon"),
    requests,
    sessions: stats.get("login")?.statuses[200] ?? 0,
  };
  memory.samples.push(sample);
  // Every 15 s, the V8 heaps too: how much of the growth is JavaScript heap.
  if (sampled++ % 3 === 0) sample.heaps = heapSum(await heaps());
}, 5000);

// Users, each with the sessions the soak holds for it (device id -> tokens) and ended ones.
log(`signing up ${CLIENTS * USERS_PER_CLIENT} users (stores on ${storage})…`);
const users = [];
for (let i = 0; i < CLIENTS * USERS_PER_CLIENT; i++) {
  const email = `soak${i}@soak.test`;
  const r = await call("sign-up", "POST", "/v1/users", { body: { email, password: PASSWORD, full_name: `Soak ${i}` } });
  if (r.status !== 201) throw new Error(`sign-up ${email}: ${r.status} ${JSON.stringify(r.json)}`);
  const devices = Array.from({ length: DEVICES }, (_, d) =>
    `soak${String(i).padStart(4, "0")}device${String(d).padStart(4, "0")}`.padEnd(32, "x"),
  );
  users.push({ email, devices, live: new Map(), ended: [] });
}

const pick = (list) => list[Math.floor(Math.random() * list.length)];
const failures = [];
const expect = (what, r, status) => {
  if (r.status !== status && failures.length < 50) failures.push(`${what}: ${r.status} ${JSON.stringify(r.json)}`);
  return r.status === status;
};

async function login(user) {
  const body = { email: user.email, password: PASSWORD };
  if (DEVICES > 0) body.device_id = user.devices[Math.floor(Math.random() * DEVICES)];
  const r = await call("login", "POST", "/v1/tokens", { body });
  if (!expect("login", r, 200)) return r;
  // A re-login on a device replaces its session: the old one is ended.
  const old = user.live.get(r.json.device_id);
  if (old) user.ended.push(old);
  user.live.set(r.json.device_id, { access: r.json.access_token, refresh: r.json.refresh_token });
  return r;
}

async function step(user) {
  const sessions = [...user.live.entries()];
  const roll = Math.random();
  if (sessions.length === 0 || roll < 0.12) return login(user);
  const [device, s] = pick(sessions);
  if (roll < 0.45) {
    const r = await call("refresh", "POST", "/v1/tokens/refresh", { body: { refresh_token: s.refresh } });
    if (expect("refresh", r, 200))
      user.live.set(device, { access: r.json.access_token, refresh: r.json.refresh_token });
  } else if (roll < 0.8) {
    expect("me", await call("me", "GET", "/v1/users/me", { token: s.access }), 200);
  } else if (roll < 0.9) {
    expect("devices", await call("devices", "GET", "/v1/devices", { token: s.access }), 200);
  } else if (roll < 0.985) {
    if (expect("logout", await call("logout", "POST", "/v1/logout", { token: s.access, body: {} }), 204)) {
      user.live.delete(device);
      user.ended.push(s);
    }
  } else if (
    expect("logout-all", await call("logout-all", "POST", "/v1/logout", { token: s.access, body: { all: true } }), 204)
  ) {
    for (const ended of user.live.values()) user.ended.push(ended);
    user.live.clear();
  }
}

log(`mixed traffic for ${SECONDS} s with ${CLIENTS} clients…`);
const deadline = Date.now() + SECONDS * 1000;
await Promise.all(
  Array.from({ length: CLIENTS }, async (_, c) => {
    const mine = users.slice(c * USERS_PER_CLIENT, (c + 1) * USERS_PER_CLIENT);
    while (Date.now() < deadline && requests < MAX_REQUESTS) await step(pick(mine));
  }),
);
const sessionsStarted = stats.get("login")?.statuses[200] ?? 0;
memory.afterTraffic = rssMiB();
memory.afterTrafficParts = rssParts();
memory.smapsAfterTraffic = smaps();
memory.heapsAfterTraffic = await heaps();
log(`traffic done: ${requests} requests, ${sessionsStarted} sessions started; workerd ${memory.afterTraffic} MiB`);

// Invariants.
log("checking invariants…");
const invariants = { live_refresh: 0, ended_refused: 0, device_lists: 0, logins: 0, broken: [] };
const broken = (what) => invariants.broken.length < 50 && invariants.broken.push(what);
for (const user of users) {
  for (const [device, s] of user.live) {
    const r = await call("check:refresh", "POST", "/v1/tokens/refresh", { body: { refresh_token: s.refresh } });
    if (r.status === 200) {
      invariants.live_refresh++;
      user.live.set(device, { access: r.json.access_token, refresh: r.json.refresh_token });
    } else broken(`${user.email} ${device}: live session refresh ${r.status} ${r.json?.error?.code}`);
  }
  for (const s of user.ended) {
    const refresh = await call("check:ended-refresh", "POST", "/v1/tokens/refresh", {
      body: { refresh_token: s.refresh },
    });
    const strict = await call("check:ended-strict", "GET", "/", { host: "consumer.soak", token: s.access });
    if (refresh.status === 401 && strict.status === 401) invariants.ended_refused++;
    else broken(`${user.email}: ended session refresh ${refresh.status}, strict verify ${strict.status}`);
  }
  const any = [...user.live.values()][0];
  if (any) {
    const r = await call("check:devices", "GET", "/v1/devices", { token: any.access });
    const listed = (r.json?.devices ?? []).map((d) => d.device_id).sort();
    const held = [...user.live.keys()].sort();
    if (JSON.stringify(listed) === JSON.stringify(held)) invariants.device_lists++;
    else broken(`${user.email}: devices listed ${listed.length}, held ${held.length}`);
  } else invariants.device_lists++;
  const r = await call("check:login", "POST", "/v1/tokens", { body: { email: user.email, password: PASSWORD } });
  if (r.status === 200) invariants.logins++;
  else broken(`${user.email}: login ${r.status}`);
}

log(`idle for ${IDLE} s…`);
await new Promise((r) => setTimeout(r, IDLE * 1000));
memory.afterIdle = rssMiB();
memory.afterIdleParts = rssParts();
memory.smapsAfterIdle = smaps();

log(`probe: ${PROBE_OBJECTS} trivial Durable Objects…`);
const probeBefore = rssMiB();
for (let i = 0; i < PROBE_OBJECTS; i++) {
  const res = await mf.dispatchFetch(`http://probe.soak/?name=p${i}`);
  await res.text();
}
memory.probe = { objects: PROBE_OBJECTS, before: probeBefore, after: rssMiB(), smapsAfter: smaps() };
memory.stores = storeMiB();
clearInterval(sampler);
memory.peak = Math.max(memory.before, memory.afterTraffic, ...memory.samples.map((s) => s.mib));

const routes = {};
for (const [route, s] of stats) {
  const t = s.times.sort((a, b) => a - b);
  routes[route] = {
    requests: t.length,
    statuses: s.statuses,
    p50_ms: +pct(t, 50).toFixed(1),
    p99_ms: +pct(t, 99).toFixed(1),
  };
}
const perSessionKiB =
  sessionsStarted > 0 ? Math.round(((memory.afterTraffic - memory.before) * 1024) / sessionsStarted) : null;
const perObjectKiB = Math.round(((memory.probe.after - memory.probe.before) * 1024) / PROBE_OBJECTS);
const result = {
  at: new Date(started).toISOString(),
  seconds: SECONDS,
  devices_per_user: DEVICES,
  clients: CLIENTS,
  users: users.length,
  requests,
  sessions_started: sessionsStarted,
  routes,
  traffic_failures: failures,
  invariants,
  memory: { ...memory, kib_per_session: perSessionKiB, kib_per_probe_object: perObjectKiB },
  runtime_error_lines: runtimeOutput.errors,
  storage,
};
writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);

console.log(`\nsoak: ${SECONDS} s, ${requests} requests, ${sessionsStarted} sessions started, ${users.length} users\n`);
console.log("| route | requests | statuses | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |");
for (const [route, r] of Object.entries(routes)) {
  const statuses = Object.entries(r.statuses)
    .map(([k, v]) => `${k}×${v}`)
    .join(" ");
  console.log(`| ${route} | ${r.requests} | ${statuses} | ${r.p50_ms} | ${r.p99_ms} |`);
}
console.log(
  `\nmemory (workerd RSS, MiB): before ${memory.before}, peak ${memory.peak}, after traffic ${memory.afterTraffic}, after ${IDLE} s idle ${memory.afterIdle}`,
);
console.log(
  `  after traffic: anon ${memory.afterTrafficParts.anon}, file ${memory.afterTrafficParts.file}, shmem ${memory.afterTrafficParts.shmem}; after idle: anon ${memory.afterIdleParts.anon}, file ${memory.afterIdleParts.file}, shmem ${memory.afterIdleParts.shmem}`,
);
const heapLine = (h) =>
  Object.entries(h)
    .filter(([, v]) => v.total >= 2)
    .map(([k, v]) => `${k} ${v.used}/${v.total}`)
    .join(", ");
const smapsLine = (m) =>
  Object.entries(m)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
console.log(`  smaps_rollup (MiB) before: ${smapsLine(memory.smapsBefore)}`);
console.log(`  after traffic: ${smapsLine(memory.smapsAfterTraffic)}`);
console.log(`  after idle: ${smapsLine(memory.smapsAfterIdle)}`);
console.log(`  after the probe objects: ${smapsLine(memory.probe.smapsAfter)}`);
console.log(
  `  samples (s: RSS/anon MiB, requests, sessions): ${memory.samples.map((x) => `${x.s}: ${x.mib}/${x.anon} ${x.requests} ${x.sessions}${x.heaps ? ` heaps ${x.heaps.used}/${x.heaps.total}` : ""}`).join("; ")}`,
);
console.log(
  `  stores on ${storage} (MiB): ${Object.entries(memory.stores)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ")}`,
);
console.log(`  V8 heaps (used/total MiB) before: ${heapLine(memory.heapsBefore)}`);
console.log(`  after traffic: ${heapLine(memory.heapsAfterTraffic)}`);
console.log(
  `  ≈ ${perSessionKiB} KiB per session started; trivial Durable Objects: ≈ ${perObjectKiB} KiB each (${PROBE_OBJECTS}: ${memory.probe.before} → ${memory.probe.after} MiB)`,
);
console.log(
  `invariants: ${invariants.live_refresh} live sessions refreshed, ${invariants.ended_refused} ended sessions refused, ${invariants.device_lists}/${users.length} device lists equal, ${invariants.logins}/${users.length} logins`,
);
for (const b of invariants.broken) console.log(`  BROKEN ${b}`);
for (const f of failures) console.log(`  traffic failure: ${f}`);
console.log(`written to ${OUT}`);
await mf.dispose();
process.exit(invariants.broken.length || failures.length ? 1 : 0);
