#!/usr/bin/env node
// A stand-in for wrangler, for the tests of scripts/deploy.mjs (WRANGLER=scripts/fake-wrangler.mjs).
// It never touches the network. It appends its argv as one JSON line to $FAKE_WRANGLER_LOG, then
// answers the command from $FAKE_WRANGLER_ANSWERS (inline JSON, or the path of a JSON file), an
// object keyed by command ("secret list", "d1 migrations list", "deploy"). Each answer is either
//   { "stdout": "…", "stderr": "…", "code": 0 }            printed as given, or a shorthand
//   { "secrets": ["JWT_PRIVATE_KEYS", …] }                  `secret list --format json` output
//   { "pending": ["0003_x.sql", …] }                        `d1 migrations list` output (a table, or "No migrations")
//   { "error": "message" }                                  wrangler's "✘ [ERROR] message" on stderr, exit 1
// written the way wrangler 4 prints them. Commands without an answer get the defaults below (all good).
import { appendFileSync, readFileSync } from "node:fs";

const DEFAULTS = {
  "secret list": { secrets: ["JWT_PRIVATE_KEYS", "PASSWORD_PEPPER", "TURNSTILE_SECRET"] },
  "d1 migrations list": { pending: [] },
  deploy: { stdout: "Uploaded user-registry (fake)\nDeployed user-registry triggers (fake)\n", code: 0 },
};

const argv = process.argv.slice(2);
if (process.env.FAKE_WRANGLER_LOG) appendFileSync(process.env.FAKE_WRANGLER_LOG, `${JSON.stringify(argv)}\n`);

const raw = process.env.FAKE_WRANGLER_ANSWERS ?? "{}";
const answers = { ...DEFAULTS, ...JSON.parse(raw.trim().startsWith("{") ? raw : readFileSync(raw, "utf8")) };
const words = argv.filter((a) => !a.startsWith("-"));
const key = Object.keys(answers)
  .sort((a, b) => b.length - a.length)
  .find((k) => k.split(" ").every((w, i) => words[i] === w));

const banner = " ⛅️ wrangler 4.164.0 (fake)\n────────────────────\n";

/** cli-table3's box, as wrangler's logger.table prints it. */
function table(head, rows) {
  const width = Math.max(head.length, ...rows.map((r) => r.length)) + 2;
  const line = (l, r) => `${l}${"─".repeat(width)}${r}`;
  const cell = (s) => `│ ${s.padEnd(width - 2)} │`;
  const out = [line("┌", "┐"), cell(head), line("├", "┤")];
  rows.forEach((r, i) => {
    out.push(cell(r));
    out.push(i < rows.length - 1 ? line("├", "┤") : line("└", "┘"));
  });
  return out.join("\n");
}

function render(answer) {
  if (answer.error !== undefined) {
    return {
      stderr: `✘ [ERROR] ${answer.error}\n\n🪵  Logs were written to "/tmp/fake-wrangler.log"\n`,
      code: 1,
    };
  }
  if (answer.secrets) {
    return {
      stdout: `${JSON.stringify(
        answer.secrets.map((name) => ({ name, type: "secret_text" })),
        null,
        "  ",
      )}\n`,
    };
  }
  if (answer.pending) {
    const body = answer.pending.length
      ? `Migrations to be applied:\n${table("Name", answer.pending)}\n`
      : "✅ No migrations to apply!\n";
    return { stdout: `${banner}Resource location: remote\n\n${body}` };
  }
  return answer;
}

if (!key) {
  process.stderr.write(`✘ [ERROR] fake wrangler has no answer for: ${argv.join(" ")}\n`);
  process.exit(1);
}
const { stdout = "", stderr = "", code = 0 } = render(answers[key]);
process.stdout.write(stdout);
process.stderr.write(stderr);
process.exitCode = code;
