#!/usr/bin/env node
// `npm run dev`: everything a fresh clone needs, then `wrangler dev` on http://127.0.0.1:8787.
// 1. installs dependencies when node_modules is missing (runs under the machine's own Node, 20 is fine);
// 2. writes a development signing key to .dev.vars when there is none (never committed);
// 3. applies the D1 migrations to the local database;
// 4. starts wrangler dev under the Node version pinned in devDependencies.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

if (!existsSync(bin("wrangler")) || !existsSync(bin("node"))) {
  console.log("dev: installing dependencies (npm install)…");
  run("npm", ["install", "--no-fund", "--no-audit"]);
}

const node = bin("node"); // the pinned Node (current wrangler needs >= 22)
const wrangler = join(root, "node_modules", "wrangler", "bin", "wrangler.js");

const devVars = join(root, ".dev.vars");
const current = existsSync(devVars) ? readFileSync(devVars, "utf8") : "";
if (!/^JWT_PRIVATE_KEYS=/m.test(current)) {
  const { newKey } = await import("./keys.mjs");
  const line = `JWT_PRIVATE_KEYS='${JSON.stringify([await newKey()])}'\n`;
  writeFileSync(devVars, current + (current && !current.endsWith("\n") ? "\n" : "") + line, { mode: 0o600 });
  console.log("dev: wrote a development signing key to .dev.vars");
}

console.log("dev: applying D1 migrations to the local database…");
run(node, [wrangler, "d1", "migrations", "apply", "DB", "--local"]);

const extra = process.argv.slice(2);
const r = spawnSync(node, [wrangler, "dev", "--ip", "127.0.0.1", "--port", "8787", ...extra], {
  cwd: root,
  stdio: "inherit",
});
process.exit(r.status ?? 0);
