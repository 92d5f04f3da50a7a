#!/usr/bin/env node
// `npm test`'s pretest: installs the dependencies when a fresh clone has none yet, so `npm test`
// works alone. Runs under whatever Node is on PATH (20 is fine); the test run that follows uses
// the Node pinned in devDependencies, which this install brings.
import { ensureInstalled } from "./dev.mjs";

try {
  ensureInstalled();
} catch (e) {
  console.error(e.message);
  process.exit(e.status ?? 1);
}
