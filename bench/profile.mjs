// Where the time goes: a V8 CPU profile of user-registry's isolate under load, summed by function
// and by module (the bundle is built unminified for this, so names and module markers survive).
// Also prints the CPU that the whole workerd process spends per request (the D1, KV and Durable
// Object simulators included), which the isolate's profile does not show.
//
// Usage: node bench/profile.mjs [me|verify|refresh|login|devices] [seconds]   (default: me 5)
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import autocannon from "autocannon";
import { COMPATIBILITY_DATE, cpuMs, root, startRegistry, workerdPids } from "./lib.mjs";

const scenario = process.argv[2] ?? "me";
const seconds = Number(process.argv[3] ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const PASSWORD = "correct horse battery";
const INSPECTOR_PORT = Number(process.env.BENCH_INSPECTOR_PORT ?? 9331);

const outdir = join(root, ".wrangler/bench/profile");
execFileSync(
  process.execPath,
  [join(root, "node_modules/wrangler/bin/wrangler.js"), "deploy", "--dry-run", "--outdir", outdir, "--minify=false"],
  { cwd: root, stdio: ["ignore", "ignore", "inherit"] },
);
const script = join(outdir, "index.js");
const source = readFileSync(script, "utf8").split("\n");
// esbuild marks the start of each module with a `// path` comment line.
const moduleAt = [];
let current = "(bundle)";
for (const text of source) {
  const m = /^\/\/ ((?:node_modules\/|src\/|\.\.\/)[^\s]+)$/.exec(text);
  if (m) current = m[1].replace(/^node_modules\/((?:@[^/]+\/)?[^/]+).*$/, "$1");
  moduleAt.push(current);
}

const { mf, url } = await startRegistry({
  script,
  options: { inspectorPort: INSPECTOR_PORT },
  extraWorkers: [
    {
      name: "consumer",
      modules: true,
      scriptPath: join(root, "bench/workers/consumer.js"),
      compatibilityDate: COMPATIBILITY_DATE,
      routes: ["consumer.bench/*"],
      serviceBindings: { AUTH: { name: "user-registry", entrypoint: "AuthService" } },
    },
  ],
});
const pids = workerdPids();
const call = async (method, path, body, token) => {
  const res = await mf.dispatchFetch(`http://registry.bench${path}`, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  if (res.status >= 300) throw new Error(`${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
};

await call("POST", "/v1/users", { email: "p@bench.test", password: PASSWORD, full_name: "P" });
const pairs = [];
for (let i = 0; i < CONNECTIONS * 2; i++)
  pairs.push(await call("POST", "/v1/tokens", { email: "p@bench.test", password: PASSWORD }));
let n = 0;
const pool = pairs.map((p) => p.refresh_token);
const outstanding = new Set();
const requests = {
  me: () => ({ path: "/v1/users/me", headers: { authorization: `Bearer ${pairs[n++ % pairs.length].access_token}` } }),
  devices: () => ({
    path: "/v1/devices",
    headers: { authorization: `Bearer ${pairs[n++ % pairs.length].access_token}` },
  }),
  verify: () => ({
    path: "/",
    headers: { host: "consumer.bench", authorization: `Bearer ${pairs[n++ % pairs.length].access_token}` },
  }),
  refresh: (context) => {
    context.token = pool.shift();
    outstanding.add(context.token);
    return {
      method: "POST",
      path: "/v1/tokens/refresh",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: context.token }),
    };
  },
  login: () => ({
    method: "POST",
    path: "/v1/tokens",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: "p@bench.test", password: PASSWORD }),
  }),
};
if (!requests[scenario]) throw new Error(`unknown scenario ${scenario}`);

const run = (duration) =>
  autocannon({
    url,
    connections: scenario === "login" ? 1 : CONNECTIONS,
    duration,
    requests: [
      {
        setupRequest: (req, context) => ({ ...req, ...requests[scenario](context) }),
        onResponse: (status, body, context) => {
          if (scenario !== "refresh") return;
          outstanding.delete(context.token);
          if (status === 200) pool.push(JSON.parse(body).refresh_token);
        },
      },
    ],
  }).then((r) => {
    pool.unshift(...outstanding);
    outstanding.clear();
    return r;
  });

await run(2); // warm-up

// The inspector: one target per worker; ours is "user-registry".
const targets = await (await fetch(`http://127.0.0.1:${INSPECTOR_PORT}/json`)).json();
const target =
  targets.find((t) => t.title?.includes("user-registry") || t.url?.includes("user-registry")) ?? targets[0];
const ws = new WebSocket(target.webSocketDebuggerUrl);
await new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onerror = reject;
});
let id = 0;
const pending = new Map();
ws.onmessage = (e) => {
  const msg = JSON.parse(e.data);
  if (msg.id && pending.has(msg.id)) {
    pending.get(msg.id)(msg);
    pending.delete(msg.id);
  }
};
const send = (method, params = {}) =>
  new Promise((resolve) => {
    const mid = ++id;
    pending.set(mid, resolve);
    ws.send(JSON.stringify({ id: mid, method, params }));
  });
await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 100 });
await send("Profiler.start");
const c0 = cpuMs(pids);
const result = await run(seconds);
const workerdCpu = cpuMs(pids) - c0;
const { result: stopped } = await send("Profiler.stop");
ws.close();
await mf.dispose();

const profile = stopped.profile;
writeFileSync(join(root, `.wrangler/bench/${scenario}.cpuprofile`), JSON.stringify(profile));
const done = result["2xx"] + result.non2xx;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const counts = new Map();
for (const s of profile.samples) counts.set(s, (counts.get(s) ?? 0) + 1);
const dt = (profile.endTime - profile.startTime) / 1000 / profile.samples.length; // ms per sample
const byFunction = new Map();
const byModule = new Map();
let total = 0;
for (const [nodeId, count] of counts) {
  const f = byId.get(nodeId).callFrame;
  const ms = count * dt;
  total += ms;
  const inBundle = f.url.endsWith("index.js") && f.lineNumber >= 0;
  const mod = inBundle
    ? moduleAt[f.lineNumber]
    : f.functionName.startsWith("(")
      ? f.functionName
      : `(native ${f.url || "?"})`;
  const key = `${f.functionName || "(anonymous)"} ${inBundle ? `${mod}:${f.lineNumber + 1}` : f.url}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + ms);
  byModule.set(mod, (byModule.get(mod) ?? 0) + ms);
}
const top = (m, k) =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, k)
    .map(
      ([name, ms]) =>
        `${(ms / done).toFixed(3).padStart(8)} ms/req  ${((100 * ms) / total).toFixed(1).padStart(5)}%  ${name}`,
    )
    .join("\n");
const idle = (byModule.get("(idle)") ?? 0) / done;
console.log(
  `${scenario}: ${done} requests in ${seconds} s (${(done / seconds).toFixed(0)} req/s, ${result.non2xx} non-2xx), ${CONNECTIONS} connections`,
);
console.log(`workerd process CPU: ${(workerdCpu / done).toFixed(3)} ms/req (all isolates, simulators and I/O)`);
console.log(
  `user-registry isolate, sampled: ${(total / done - idle).toFixed(3)} ms/req busy (+ ${idle.toFixed(3)} idle)\n`,
);
console.log(`by module:\n${top(byModule, 20)}`);
console.log(`\nby function (self time):\n${top(byFunction, 30)}`);
