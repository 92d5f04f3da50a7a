#!/usr/bin/env node
// `npm run dev`: everything a fresh clone needs, then `wrangler dev` on http://127.0.0.1:8787.
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
  if (!existsSync(bin("wrangler")) || !existsSync(bin("node"))) {
    console.log("dev: installing dependencies (npm install)…");
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
  const extra = process.argv.slice(2);
  const r = spawnSync(node, [wrangler, "dev", "--ip", "127.0.0.1", "--port", "8787", ...extra], {
    cwd: root,
    stdio: "inherit",
  });
  process.exit(r.status ?? 0);
}
