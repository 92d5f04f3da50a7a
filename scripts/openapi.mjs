#!/usr/bin/env node
// `npm run lint:openapi`: builds the worker, serves it in Miniflare on a free loopback port,
// saves the served /openapi.json to test-results/openapi.json and lints it with Redocly's
// recommended rules (0 errors, or this exits non-zero). `--no-lint` only saves the document.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildBundle, root, startRegistry } from "../bench/lib.mjs";

const out = join(root, "test-results", "openapi.json");
// Inside the project: workerd resolves the bundle relative to the working directory.
mkdirSync(join(root, ".wrangler"), { recursive: true });
const dir = mkdtempSync(join(root, ".wrangler", "openapi-"));
let mf;
try {
  const { script } = buildBundle(dir);
  const started = await startRegistry({ script });
  mf = started.mf;
  const res = await fetch(`${started.url}/openapi.json`);
  if (!res.ok) throw new Error(`/openapi.json answered ${res.status}`);
  mkdirSync(join(root, "test-results"), { recursive: true });
  writeFileSync(out, `${JSON.stringify(await res.json(), null, 2)}\n`);
  console.log(`openapi: saved ${out}`);
} finally {
  await mf?.dispose();
  rmSync(dir, { recursive: true, force: true });
}
if (!process.argv.includes("--no-lint")) {
  const redocly = join(root, "node_modules", "@redocly", "cli", "bin", "cli.js");
  const r = spawnSync(process.execPath, [redocly, "lint", out, ...process.argv.slice(2)], {
    cwd: root,
    stdio: "inherit",
  });
  process.exit(r.status ?? 1);
}
