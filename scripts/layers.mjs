#!/usr/bin/env node
// Checks the import rule of docs/architecture.md: a module imports only from its own layer or
// lower ones. Prints every import that points up and exits 1 when there is one.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const SRC = resolve(process.argv.slice(2).find((a) => !a.startsWith("--")) ?? resolve(import.meta.dirname, "../src"));
// Highest first. A path not listed, and any leaf module (one importing nothing of the project),
// is the base layer (errors, env, time, amr, sdk, ...). Type-only imports are not counted: they
// are gone at run time and carry no behaviour.
const LAYERS = [
  ["entry", ["index.ts", "app.ts"]],
  ["routes", ["routes/"]],
  ["middleware", ["middleware/", "context.ts"]],
  ["services", ["services/", "auth-methods/", "sessions/"]],
  ["storage", ["storage/", "crypto/", "config.ts"]],
];
// `--types`: count type-only imports too.
const IMPORT = process.argv.includes("--types")
  ? /(?:^|\n)\s*(?:import|export)[^"';]*?from\s+["'](\.[^"']+)["']/g
  : /(?:^|\n)\s*(?:import|export)(?!\s+type\b)[^"';]*?from\s+["'](\.[^"']+)["']/g;
const importsOf = (file) => {
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return [];
  }
  return [...text.matchAll(IMPORT)].map((m) => `${resolve(dirname(file), m[1])}.ts`.replace(/\.ts\.ts$/, ".ts"));
};
const rank = (file) => {
  if (importsOf(file).length === 0) return LAYERS.length;
  const rel = relative(SRC, file);
  const i = LAYERS.findIndex(([, prefixes]) => prefixes.some((p) => (p.endsWith("/") ? rel.startsWith(p) : rel === p)));
  return i === -1 ? LAYERS.length : i;
};
const name = (r) => (r < LAYERS.length ? LAYERS[r][0] : "base");

const files = [];
const walk = (dir) => {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry);
    if (statSync(path).isDirectory()) walk(path);
    else if (path.endsWith(".ts")) files.push(path);
  }
};
walk(SRC);

const up = [];
for (const file of files) {
  for (const target of importsOf(file)) {
    if (rank(target) < rank(file)) {
      up.push(`${relative(SRC, file)} (${name(rank(file))}) -> ${relative(SRC, target)} (${name(rank(target))})`);
    }
  }
}
for (const line of up) console.log(line);
console.log(`${files.length} modules, ${up.length} upward imports`);
process.exit(up.length ? 1 : 0);
