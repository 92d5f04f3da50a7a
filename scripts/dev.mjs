#!/usr/bin/env node
// `npm run dev`: everything a fresh clone needs, then `wrangler dev` on http://127.0.0.1:8787
// (`npm run dev -- --port 8803` for another port; other arguments go to wrangler dev).
// 1. installs dependencies when node_modules is missing (runs under the machine's own Node, 20 is fine);
// 2. writes a development signing key to .dev.vars when there is none (never committed);
// 3. applies the D1 migrations to the local database;
// 4. starts wrangler dev under the Node version pinned in devDependencies.
// Steps 1–3 are exported (`prepare`) for other launchers, e.g. examples/pages-app/run.mjs.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
/** Runs a command in the project root; throws (with the exit status) when it fails. */
const run = (cmd, args, stdio = "inherit") => {
  const r = spawnSync(cmd, args, { cwd: root, stdio });
  if (r.status !== 0) {
    const output = stdio === "pipe" ? `\n${r.stdout}${r.stderr}` : "";
    throw Object.assign(new Error(`${[cmd, ...args].join(" ")} failed${output}`), { status: r.status ?? 1 });
  }
};

export const node = bin("node"); // the pinned Node (current wrangler needs >= 22)
export const wrangler = join(root, "node_modules", "wrangler", "bin", "wrangler.js");

/** 1. `npm install` when wrangler or the pinned Node is missing. */
export function ensureInstalled() {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const names = Object.keys({ ...pkg.dependencies, ...pkg.devDependencies });
  // A fresh clone has nothing; an older checkout may lack what package.json has gained since.
  const missing = names.filter((name) => !existsSync(join(root, "node_modules", name, "package.json")));
  if (missing.length || !existsSync(bin("wrangler")) || !existsSync(bin("node"))) {
    const what = missing.length && missing.length < names.length ? ` (missing: ${missing.join(", ")})` : "";
    console.log(`dev: installing dependencies (npm install)${what}…`);
    run("npm", ["install", "--no-fund", "--no-audit"]);
  }
}

/** 2. A development signing key in .dev.vars, unless one is there. */
export async function ensureDevKey() {
  const devVars = join(root, ".dev.vars");
  const current = existsSync(devVars) ? readFileSync(devVars, "utf8") : "";
  if (!/^JWT_PRIVATE_KEYS=/m.test(current)) {
    const { newKey } = await import("./keys.mjs");
    const line = `JWT_PRIVATE_KEYS='${JSON.stringify([await newKey()])}'\n`;
    writeFileSync(devVars, current + (current && !current.endsWith("\n") ? "\n" : "") + line, { mode: 0o600 });
    console.log("dev: wrote a development signing key to .dev.vars");
  }
}

/** 3. The D1 migrations, applied to the local database (or to the state under `persistTo`). */
export function applyMigrations({ persistTo, stdio = "inherit" } = {}) {
  console.log("dev: applying D1 migrations to the local database…");
  const extra = persistTo ? ["--persist-to", persistTo] : [];
  run(node, [wrangler, "d1", "migrations", "apply", "DB", "--local", ...extra], stdio);
}

/**
 * wrangler dev's arguments: `--ip`/`--port` taken from the given ones (default 127.0.0.1:8787),
 * and ISSUER set to the URL it serves unless .dev.vars sets one, so that `iss`, the discovery
 * documents and the JWKS URL they name are the ones a resource server can reach.
 */
export function devArgs(argv, devVars = "") {
  let ip = "127.0.0.1";
  let port = "8787";
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(ip|port)(?:=(.*))?$/.exec(argv[i]);
    if (!m) {
      rest.push(argv[i]);
      continue;
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw Object.assign(new Error(`dev: --${m[1]} needs a value`), { status: 2 });
    if (m[1] === "ip") ip = value;
    else port = value;
  }
  if (!/^\d{1,5}$/.test(port))
    throw Object.assign(new Error(`dev: --port ${port} is not a port number`), { status: 2 });
  const issuer = /^ISSUER=/m.test(devVars)
    ? []
    : ["--var", `ISSUER:http://${ip.includes(":") ? `[${ip}]` : ip}:${port}`];
  return ["dev", "--ip", ip, "--port", port, ...issuer, ...rest];
}

/** Steps 1–3. */
export async function prepare(options = {}) {
  ensureInstalled();
  await ensureDevKey();
  applyMigrations(options);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    await prepare();
  } catch (e) {
    process.exit(e.status ?? 1);
  }
  let args;
  try {
    const devVars = join(root, ".dev.vars");
    args = devArgs(process.argv.slice(2), existsSync(devVars) ? readFileSync(devVars, "utf8") : "");
  } catch (e) {
    console.error(e.message);
    process.exit(e.status ?? 1);
  }
  const r = spawnSync(node, [wrangler, ...args], {
    cwd: root,
    stdio: "inherit",
  });
  process.exit(r.status ?? 0);
}
