#!/usr/bin/env node
// `npm run example`: user-registry and this Pages example together, in one wrangler process:
//
//   wrangler pages dev public -c wrangler.toml -c ../../wrangler.toml --persist-to ../../.wrangler/state
//
// The first config is the Pages project; the second (user-registry's own) runs beside it in the
// same workerd, and the example's AUTH service binding (entrypoint AuthService) reaches it there.
// Nothing leaves localhost.
//
// Before starting, it does what `npm run dev` does (scripts/dev.mjs): installs dependencies when
// missing, writes a development signing key to .dev.vars, applies the D1 migrations (to the same
// state directory the server then uses). The e2e test (e2e/pages-app.test.mjs) starts the example
// through `startExample` as well.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { node, prepare, root, wrangler } from "../../scripts/dev.mjs";

export const exampleDir = dirname(fileURLToPath(import.meta.url));

/** A TCP port that is free right now on `ip`. */
export function freePort(ip = "127.0.0.1") {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, ip, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every server started here and not yet stopped; ended when this process exits, however it exits. */
const running = new Set();
process.once("exit", () => {
  for (const child of running) signalGroup(child, "SIGKILL");
});

function signalGroup(child, signal) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal); // the whole group: wrangler and its workerd children
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/**
 * Starts the example; resolves once the site answers and reaches user-registry over its binding.
 *
 * @param {object} [o]
 * @param {string} [o.ip] the address to listen on (127.0.0.1)
 * @param {number} [o.port] the site's port (8788)
 * @param {string} [o.persistTo] user-registry's D1/KV/Durable Object state (.wrangler/state, shared with `npm run dev`)
 * @param {import("node:stream").Writable | "inherit"} [o.output] where the server's output goes
 * @param {number} [o.timeoutMs] how long to wait for it to be ready (120 s)
 * @param {Record<string, string>} [o.env] extra environment for wrangler (e.g. WRANGLER_REGISTRY_PATH)
 * @returns {Promise<{url: string, stop: () => Promise<void>, exited: Promise<{code: number | null, signal: string | null}>}>}
 */
export async function startExample(o = {}) {
  const ip = o.ip ?? "127.0.0.1";
  const port = o.port ?? 8788;
  const persistTo = o.persistTo ?? join(root, ".wrangler", "state");
  const output = o.output ?? "inherit";
  const timeoutMs = o.timeoutMs ?? 120_000;

  await prepare({ persistTo, stdio: output === "inherit" ? "inherit" : "pipe" });

  const args = [
    ...["pages", "dev", "public", "-c", "wrangler.toml", "-c", join(root, "wrangler.toml")],
    ...["--persist-to", persistTo, "--ip", ip, "--port", String(port)],
    ...["--inspector-port", String(await freePort(ip)), "--show-interactive-dev-session=false"],
  ];
  const child = spawn(node, [wrangler, ...args], {
    cwd: exampleDir,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", ...o.env },
    stdio: ["ignore", output === "inherit" ? "inherit" : "pipe", output === "inherit" ? "inherit" : "pipe"],
    detached: true, // a process group of its own, so stop() ends wrangler and workerd together
  });
  running.add(child);
  if (output !== "inherit") {
    child.stdout.pipe(output, { end: false });
    child.stderr.pipe(output, { end: false });
  }
  const exited = new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );

  let stopping;
  const stop = () => {
    stopping ??= (async () => {
      signalGroup(child, "SIGTERM");
      if (!(await Promise.race([exited.then(() => true), sleep(8_000).then(() => false)]))) {
        signalGroup(child, "SIGKILL");
        await Promise.race([exited, sleep(3_000)]);
      }
    })();
    return stopping;
  };

  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  let gone = null;
  exited.then((e) => {
    gone = e;
  });
  try {
    for (;;) {
      if (gone) throw new Error(`wrangler exited early (code ${gone.code}, signal ${gone.signal})`);
      if (Date.now() > deadline) throw new Error(`not ready after ${timeoutMs / 1000} s: ${last}`);
      try {
        const res = await fetch(`http://${ip}:${port}/api/health`, { signal: AbortSignal.timeout(5_000) });
        if (res.ok) break;
        last = `GET /api/health answered ${res.status}: ${(await res.text()).slice(0, 200)}`;
      } catch (e) {
        last = `GET /api/health: ${e.cause?.code ?? e.message}`;
      }
      await sleep(500);
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { url: `http://localhost:${port}`, stop, exited };
}

/** Sends `signal` to every server this process started, synchronously (safe in a signal handler). */
export function signalAll(signal = "SIGTERM") {
  for (const child of running) signalGroup(child, signal);
}

/** Stops every server this process started (for signal handlers that fire mid-start). */
export async function stopAll() {
  signalAll("SIGTERM");
  const deadline = Date.now() + 8_000;
  while (running.size > 0 && Date.now() < deadline) await sleep(100);
  signalAll("SIGKILL");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const shutdown = async (code) => {
    await stopAll();
    process.exit(code);
  };
  process.on("SIGINT", () => shutdown(130));
  process.on("SIGTERM", () => shutdown(143));
  process.on("SIGHUP", () => shutdown(129));
  let app;
  try {
    app = await startExample();
  } catch (e) {
    console.error(`example: ${e.message}`);
    process.exit(1);
  }
  console.log(`\nexample: ready, open ${app.url}  (user-registry runs in the same process; Ctrl-C stops it)\n`);
  const { code } = await app.exited;
  process.exit(code ?? 1);
}
