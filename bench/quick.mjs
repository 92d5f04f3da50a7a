// A short measurement of one refresh and one verify over a service binding, sequential, p50/p99.
// Usage: node bench/quick.mjs   (npm run bench is the full harness)
import { buildBundle, COMPATIBILITY_DATE, pct, startRegistry, timeSequential } from "./lib.mjs";

const N = Number(process.env.N ?? 300);
const bundle = buildBundle();
const consumer = {
  name: "consumer",
  modules: true,
  compatibilityDate: COMPATIBILITY_DATE,
  serviceBindings: { AUTH: { name: "user-registry", entrypoint: "AuthService" } },
  script: `export default { async fetch(req, env) {
    const token = req.headers.get("authorization").slice(7);
    return Response.json(await env.AUTH.verify(token));
  } }`,
};
const { mf } = await startRegistry({ script: bundle.script, extraWorkers: [consumer] });
const call = (path, body) =>
  mf.dispatchFetch(`http://localhost${path}`, {
    method: body ? "POST" : "GET",
    headers: { "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
    cf: {},
  });

await call("/v1/users", { email: "bench@example.com", password: "correct horse", full_name: "Bench" });
const pair = await (await call("/v1/tokens", { email: "bench@example.com", password: "correct horse" })).json();
let refresh = pair.refresh_token;
const consumerFetcher = await mf.getWorker("consumer");

// Warm up, then measure.
for (let i = 0; i < 30; i++) {
  const r = await (await call("/v1/tokens/refresh", { refresh_token: refresh })).json();
  refresh = r.refresh_token;
}
const refreshTimes = await timeSequential(N, async () => {
  const res = await call("/v1/tokens/refresh", { refresh_token: refresh });
  const r = await res.json();
  if (res.status !== 200) throw new Error(`refresh ${res.status} ${JSON.stringify(r)}`);
  refresh = r.refresh_token;
});
const access = pair.access_token;
const verifyOnce = async () => {
  const res = await consumerFetcher.fetch("http://consumer/", { headers: { authorization: `Bearer ${access}` } });
  const r = await res.json();
  if (!r.ok) throw new Error(`verify ${JSON.stringify(r)}`);
};
for (let i = 0; i < 30; i++) await verifyOnce();
const verifyTimes = await timeSequential(N, verifyOnce);
await mf.dispose();

const fmt = (t) => `p50 ${pct(t, 50).toFixed(2)} ms, p99 ${pct(t, 99).toFixed(2)} ms`;
console.log(`bundle: ${bundle.kib} KiB, gzip ${bundle.gzipKib} KiB`);
console.log(`refresh (${N} sequential): ${fmt(refreshTimes)}`);
console.log(`verify over service binding (${N} sequential): ${fmt(verifyTimes)}`);
