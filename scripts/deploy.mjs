#!/usr/bin/env node
// `npm run deploy -- --env <staging|production> [--dry-run] [other `wrangler deploy` options]`
//
// A preflight, then `wrangler deploy --env <name> …`. The preflight refuses to deploy (one line per
// problem, exit status 1, nothing uploaded) when:
//   - the environment's section of wrangler.toml lacks a binding the Worker needs (D1 DB, KV TOKENS,
//     Durable Object DEVICE_SESSIONS and its SQLite migration, rate limits RL_*), or a D1/KV id is
//     still a REPLACE_WITH_… placeholder (or not an id at all), or ISSUER/ENVIRONMENT are invalid;
//   - a required secret is not set on the deployed Worker (`wrangler secret list`): JWT_PRIVATE_KEYS
//     always, NOTIFY_WEBHOOK_SECRET when the environment sets NOTIFY_WEBHOOK_URL (as a var or a secret);
//   - D1 migrations in drizzle/ are not applied to the remote database (`wrangler d1 migrations list`);
//   - wrangler cannot answer (not logged in, no network, unknown Worker or database).
// The passkey settings (WEBAUTHN_RP_ID, WEBAUTHN_ORIGINS) are refused when invalid, as the Worker would.
// It only warns (and deploys) when PASSWORD_PEPPER is not set, production has no NOTIFY_WEBHOOK_URL
// (no code could be delivered), the cron trigger or observability is off, ISSUER still names an
// example host, the Worker would have no route, or passkeys are off.
// With --dry-run, only the checks that need no network run; then `wrangler deploy --dry-run` builds.
//
// WRANGLER=/path/to/wrangler overrides the wrangler that is run (tests use a fake one). The config is
// read with wrangler's own parser (`unstable_readConfig`), so it resolves environments exactly as
// `wrangler deploy` will.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** What the Worker needs in every deployed environment (src/env.ts). */
export const REQUIRED = {
  d1: "DB",
  kv: "TOKENS",
  durableObject: { name: "DEVICE_SESSIONS", className: "DeviceSession" },
  rateLimits: ["RL_SIGNUP", "RL_LOGIN", "RL_OTP", "RL_RESET"],
  migrationsDir: "drizzle",
};
export const ENVIRONMENTS = ["development", "test", "staging", "production"];

const USAGE =
  "usage: npm run deploy -- --env <staging|production> [--dry-run] [--config FILE] [other `wrangler deploy` options]";
const REMOTE_TIMEOUT_MS = 120_000;

/**
 * The passkey settings as src/config.ts checks them (docs/api.md §12): WEBAUTHN_RP_ID a host name;
 * each of WEBAUTHN_ORIGINS an https origin on it or a subdomain (http only for localhost), or
 * android:apk-key-hash:<hash>. Unset RP ID: passkeys are off (a warning).
 */
export function webauthnProblems(vars) {
  const problems = [];
  const warnings = [];
  const rpId = (vars.WEBAUTHN_RP_ID ?? "").trim();
  const origins = (vars.WEBAUTHN_ORIGINS ?? "")
    .split(",")
    .map((o) => o.trim())
    .filter(Boolean);
  if (!rpId) {
    if (origins.length) problems.push("var WEBAUTHN_ORIGINS is set but WEBAUTHN_RP_ID is not");
    else warnings.push("var WEBAUTHN_RP_ID is not set: passkeys are off (POST /v1/tokens/passkey answers 503)");
    return { problems, warnings };
  }
  if (!/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/.test(rpId)) {
    problems.push(
      `var WEBAUTHN_RP_ID must be a lower-case host name without scheme or port (is ${JSON.stringify(rpId)})`,
    );
    return { problems, warnings };
  }
  for (const origin of origins.length ? origins : [`https://${rpId}`]) {
    if (/^android:apk-key-hash:[A-Za-z0-9_-]{43}$/.test(origin)) continue;
    let url = null;
    try {
      url = new URL(origin);
    } catch {
      // reported below
    }
    const ok =
      url !== null &&
      url.origin === origin &&
      (url.protocol === "https:" || (url.hostname === "localhost" && url.protocol === "http:")) &&
      (url.hostname === rpId || url.hostname.endsWith(`.${rpId}`));
    if (!ok)
      problems.push(
        `var WEBAUTHN_ORIGINS: ${JSON.stringify(origin)} is not an https origin on ${rpId} or a subdomain of it`,
      );
  }
  return { problems, warnings };
}

/* ------------------------------------------------------------------------------------------------ */
/* Arguments                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

/**
 * Splits our arguments from wrangler's. `--env`/`-e` is ours (we pass it on explicitly); `--config`/`-c`
 * and `--dry-run` are read and also passed on; everything else goes to `wrangler deploy` untouched.
 * `npm run deploy --env x` (without `--`) leaves the value in npm_config_env: accepted too.
 */
export function parseArgs(argv, env = process.env) {
  const out = { env: undefined, config: undefined, dryRun: false, help: false, passthrough: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf("=");
    const [flag, inline] = a.startsWith("--") && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const value = () => (inline !== undefined ? inline : argv[++i]);
    if (flag === "--env" || flag === "-e") {
      out.env = value();
    } else if (flag === "--config" || flag === "-c") {
      const v = value();
      out.config = v;
      out.passthrough.push("--config", v ?? "");
    } else if (flag === "--dry-run") {
      out.dryRun = inline === undefined || inline === "true";
      out.passthrough.push(a);
    } else if (flag === "--help" || flag === "-h") {
      out.help = true;
    } else {
      out.passthrough.push(a);
    }
  }
  if (out.env === undefined && env.npm_config_env) out.env = env.npm_config_env;
  // `npm run deploy --dry-run` is npm's own flag, but the intent is clear: never deploy for real then.
  if (!out.dryRun && env.npm_config_dry_run === "true") {
    out.dryRun = true;
    out.passthrough.push("--dry-run");
  }
  return out;
}

/* ------------------------------------------------------------------------------------------------ */
/* Offline checks: the resolved wrangler config of one environment                                  */
/* ------------------------------------------------------------------------------------------------ */

/** Reads the config with wrangler's parser; `{ config }` or `{ problems }` (one line each). */
export async function readWranglerConfig(configPath, envName) {
  let wrangler;
  try {
    (await import("node:module")).enableCompileCache?.();
    wrangler = await import("wrangler");
  } catch (e) {
    return { problems: [`could not load wrangler's config reader (${oneLine(e.message)}); run \`npm install\``] };
  }
  try {
    const config = wrangler.unstable_readConfig({ config: configPath, env: envName }, { hideWarnings: true });
    return { config };
  } catch (e) {
    return { problems: configErrorLines(String(e?.message ?? e), configPath, envName) };
  }
}

/** wrangler's config errors are multi-line ("Processing …:\n  - problem\n    more"); keep one line each. */
function configErrorLines(message, configPath, envName) {
  const file = displayPath(configPath);
  if (/No environment found in configuration with name/.test(message)) {
    const names = /available configured environment names are: (\[.*?\])/.exec(message);
    const list = names ? JSON.parse(names[1]).join(", ") : "none";
    return [`${file} has no [env.${envName}] section (environments defined there: ${list})`];
  }
  const bullets = message
    .split("\n")
    .map((l) => /^\s*- (.+)$/.exec(l)?.[1])
    .filter(Boolean);
  const lines = bullets.length ? bullets : [message.split("\n")[0]];
  return lines.map((l) => `${file}: ${l.trim()}`);
}

const PLACEHOLDER = /REPLACE_WITH_[A-Z0-9_]*/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const HEX32 = /^[0-9a-f]{32}$/i;

/** Why an id cannot be a real one, or undefined when it looks real. */
function badId(id, shape, shapeName) {
  if (id === undefined || id === null || id === "") return "is not set";
  const s = String(id);
  const p = PLACEHOLDER.exec(s);
  if (p) return `is still the placeholder ${p[0]}`;
  if (/^[0-]+$/.test(s)) return `is the all-zero id of local development (${s})`;
  if (!shape.test(s)) return `does not look like a ${shapeName} (${s})`;
  return undefined;
}

/**
 * The checks that need no network, on wrangler's resolved config of one environment.
 * Returns `{ problems, warnings, ok }`, each a list of one-line strings.
 */
export function checkConfig(config, envName) {
  const problems = [];
  const warnings = [];
  const ok = [];
  const section = `[env.${envName}]`;
  const file = displayPath(config.configPath ?? "wrangler.toml");
  const dbName = () => config.d1_databases?.find((d) => d.binding === REQUIRED.d1)?.database_name ?? "user-registry";

  // D1
  const db = config.d1_databases?.find((d) => d.binding === REQUIRED.d1);
  if (!db) {
    problems.push(`D1 binding ${REQUIRED.d1} is missing: add [[env.${envName}.d1_databases]] to ${file}`);
  } else {
    const why = badId(db.database_id, UUID, "D1 database id (a UUID)");
    if (why) {
      problems.push(
        `D1 binding ${REQUIRED.d1}: database_id ${why}; run \`npx wrangler d1 create ${dbName()}\` and paste its id into [[env.${envName}.d1_databases]] in ${file}`,
      );
    }
    if (db.migrations_dir !== REQUIRED.migrationsDir) {
      problems.push(
        `D1 binding ${REQUIRED.d1}: migrations_dir must be "${REQUIRED.migrationsDir}" (is ${JSON.stringify(db.migrations_dir ?? null)}), or wrangler looks for migrations elsewhere`,
      );
    }
    if (!why && db.migrations_dir === REQUIRED.migrationsDir) ok.push(REQUIRED.d1);
  }

  // KV
  const kv = config.kv_namespaces?.find((k) => k.binding === REQUIRED.kv);
  if (!kv) {
    problems.push(`KV binding ${REQUIRED.kv} is missing: add [[env.${envName}.kv_namespaces]] to ${file}`);
  } else {
    const why = badId(kv.id, HEX32, "KV namespace id (32 hex digits)");
    if (why) {
      problems.push(
        `KV binding ${REQUIRED.kv}: id ${why}; run \`npx wrangler kv namespace create ${config.name ?? "user-registry"}-tokens\` and paste its id into [[env.${envName}.kv_namespaces]] in ${file}`,
      );
    } else {
      ok.push(REQUIRED.kv);
    }
  }

  // Durable Object and its (SQLite) class migration
  const { name: doName, className } = REQUIRED.durableObject;
  const dob = config.durable_objects?.bindings?.find((b) => b.name === doName);
  if (!dob) {
    problems.push(
      `Durable Object binding ${doName} is missing: add [[env.${envName}.durable_objects.bindings]] to ${file}`,
    );
  } else if (dob.class_name !== className || dob.script_name) {
    problems.push(`Durable Object binding ${doName} must be class_name = "${className}" of this Worker`);
  } else if (!(config.migrations ?? []).some((m) => m.new_sqlite_classes?.includes(className))) {
    problems.push(`no [[migrations]] entry creates ${className} with new_sqlite_classes (it must be SQLite-backed)`);
  } else {
    ok.push(doName);
  }

  // Rate limits
  for (const name of REQUIRED.rateLimits) {
    if (config.ratelimits?.some((r) => r.name === name)) ok.push(name);
    else
      problems.push(
        `rate-limit binding ${name} is missing: add [[env.${envName}.ratelimits]] name = "${name}" to ${file}`,
      );
  }

  // Any other placeholder left anywhere in this environment (vars, routes, names…)
  for (const [path, value] of placeholders(config)) {
    if (/^(d1_databases|kv_namespaces)\[/.test(path)) continue; // reported above
    problems.push(`${section} ${path} is still the placeholder ${PLACEHOLDER.exec(value)[0]}`);
  }

  // Vars the Worker validates at startup (src/config.ts): fail here rather than with /health 503.
  const vars = config.vars ?? {};
  if (!isUrl(vars.ISSUER)) {
    problems.push(
      vars.ISSUER
        ? `var ISSUER must be a URL (is ${JSON.stringify(vars.ISSUER)})`
        : `var ISSUER is not set in [env.${envName}.vars]`,
    );
  } else if (/(^|\.)(example\.(com|org|net)|localhost|local|test)$/i.test(new URL(vars.ISSUER).hostname)) {
    warnings.push(`var ISSUER is ${vars.ISSUER}: the iss of every token; set it to this Worker's real URL`);
  }
  if (vars.ENVIRONMENT !== undefined && !ENVIRONMENTS.includes(vars.ENVIRONMENT)) {
    problems.push(`var ENVIRONMENT must be one of ${ENVIRONMENTS.join(", ")} (is ${JSON.stringify(vars.ENVIRONMENT)})`);
  }
  if (vars.NOTIFY_WEBHOOK_URL && !isUrl(vars.NOTIFY_WEBHOOK_URL)) {
    problems.push(`var NOTIFY_WEBHOOK_URL must be a URL (is ${JSON.stringify(vars.NOTIFY_WEBHOOK_URL)})`);
  }
  const passkeys = webauthnProblems(vars);
  problems.push(...passkeys.problems);
  warnings.push(...passkeys.warnings);
  problems.push(...oidcVarProblems(vars));
  for (const secret of [
    "JWT_PRIVATE_KEYS",
    "PASSWORD_PEPPER",
    "NOTIFY_WEBHOOK_SECRET",
    "TURNSTILE_SECRET",
    "OIDC_CLIENT_SECRETS",
  ]) {
    if (secret in vars) {
      problems.push(`${secret} is a plain var in [env.${envName}.vars]: remove it and use \`wrangler secret put\``);
    }
  }

  // Worth a warning, not a refusal.
  if (!config.triggers?.crons?.length) {
    warnings.push(
      `no cron trigger in [env.${envName}.triggers]: expired codes, sessions and old audit events are never cleaned up`,
    );
  }
  if (!config.observability?.enabled) {
    warnings.push(`[env.${envName}.observability] is not enabled: no Workers Logs for this environment`);
  }
  const hasRoute = Boolean(config.route) || (config.routes?.length ?? 0) > 0;
  if (!hasRoute && config.workers_dev === false) {
    warnings.push(`no routes and workers_dev = false: the Worker will not be reachable; add routes to ${section}`);
  }
  return { problems, warnings, ok };
}

const OIDC_PRESETS = ["google", "apple"];

/**
 * The identity provider vars (docs/api.md §13), checked as src/auth-methods/oidc-config.ts does:
 * OIDC_PROVIDERS a JSON array of {id, issuer, client_ids, endpoints?} (google and apple need no
 * issuer), OAUTH_REDIRECT_URIS absolute URIs.
 */
export function oidcVarProblems(vars) {
  const problems = [];
  const raw = vars.OIDC_PROVIDERS;
  if (raw !== undefined && String(raw).trim() !== "") {
    let list;
    try {
      list = typeof raw === "string" ? JSON.parse(raw) : raw;
    } catch {
      list = undefined;
      problems.push("var OIDC_PROVIDERS is not valid JSON");
    }
    if (list !== undefined && !Array.isArray(list)) problems.push("var OIDC_PROVIDERS must be a JSON array");
    const seen = new Set();
    for (const [i, p] of (Array.isArray(list) ? list : []).entries()) {
      const name = typeof p?.id === "string" ? `"${p.id}"` : `#${i}`;
      if (typeof p?.id !== "string" || !/^[a-z0-9][a-z0-9_-]{0,31}$/.test(p.id)) {
        problems.push(`var OIDC_PROVIDERS: provider ${name}: id must match ^[a-z0-9][a-z0-9_-]{0,31}$`);
      } else if (seen.has(p.id)) {
        problems.push(`var OIDC_PROVIDERS: provider ${name} is listed twice`);
      }
      seen.add(p?.id);
      if (
        !Array.isArray(p?.client_ids) ||
        !p.client_ids.length ||
        p.client_ids.some((c) => typeof c !== "string" || !c)
      ) {
        problems.push(`var OIDC_PROVIDERS: provider ${name}: client_ids must list at least one client id`);
      }
      if (p?.issuer === undefined && !OIDC_PRESETS.includes(p?.id)) {
        problems.push(`var OIDC_PROVIDERS: provider ${name}: issuer is required (only google and apple have presets)`);
      }
      for (const key of ["issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"]) {
        if (p?.[key] !== undefined && !isUrl(p[key])) {
          problems.push(`var OIDC_PROVIDERS: provider ${name}: ${key} must be an http(s) URL`);
        }
      }
    }
  }
  for (const uri of String(vars.OAUTH_REDIRECT_URIS ?? "")
    .split(/[\s,]+/)
    .filter(Boolean)) {
    if (!URL.canParse(uri) || new URL(uri).hash) {
      problems.push(`var OAUTH_REDIRECT_URIS: ${JSON.stringify(uri)} is not an absolute URI without a fragment`);
    }
  }
  return problems;
}

/** [path, value] of every string holding a REPLACE_WITH_ placeholder. */
function* placeholders(value, path = "") {
  if (typeof value === "string") {
    if (PLACEHOLDER.test(value)) yield [path, value];
  } else if (Array.isArray(value)) {
    for (const [i, v] of value.entries()) yield* placeholders(v, `${path}[${i}]`);
  } else if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) yield* placeholders(v, path ? `${path}.${k}` : k);
  }
}

function isUrl(v) {
  if (typeof v !== "string" || v === "") return false;
  try {
    new URL(v);
    return true;
  } catch {
    return false;
  }
}

/* ------------------------------------------------------------------------------------------------ */
/* Remote checks: through wrangler                                                                   */
/* ------------------------------------------------------------------------------------------------ */

/** The command that runs wrangler: $WRANGLER if set (a .js/.mjs file runs under this Node), else the pinned one. */
export function wranglerCommand(env = process.env) {
  const override = env.WRANGLER;
  if (override) return /\.[cm]?js$/.test(override) ? [process.execPath, override] : [override];
  const pinnedNode = join(root, "node_modules", ".bin", "node");
  return [
    existsSync(pinnedNode) ? pinnedNode : process.execPath,
    join(root, "node_modules", "wrangler", "bin", "wrangler.js"),
  ];
}

/** Runs wrangler without a terminal (so it never prompts), capturing its output. */
function runCaptured(args, env) {
  const [cmd, ...pre] = wranglerCommand(env);
  return new Promise((done) => {
    let stdout = "";
    let stderr = "";
    let child;
    try {
      child = spawn(cmd, [...pre, ...args], {
        cwd: root,
        env: { ...env, FORCE_COLOR: "0", NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (error) {
      done({ error, stdout, stderr, code: null });
      return;
    }
    const timer = setTimeout(() => child.kill("SIGTERM"), REMOTE_TIMEOUT_MS);
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", (error) => {
      clearTimeout(timer);
      done({ error, stdout, stderr, code: null });
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      done({ stdout: stripAnsi(stdout), stderr: stripAnsi(stderr), code, signal, timedOut: signal === "SIGTERM" });
    });
  });
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences
const stripAnsi = (s) => s.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, "");
const oneLine = (s) => String(s).replace(/\s+/g, " ").trim();

/** wrangler's own words for a failure: the "[ERROR] …" line, else the last line it printed. */
function wranglerError(r) {
  const text = `${r.stderr}\n${r.stdout}`;
  const marked = /\[ERROR\]\s*(.+)/.exec(text);
  if (marked) return oneLine(marked[1]);
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !/^(⛅️|─+$|🪵)/.test(l));
  return lines.length ? oneLine(lines[lines.length - 1]) : `exit status ${r.code}`;
}

const WORKER_NOT_FOUND = /Worker "[^"]*".* not found|\[code: 10007\]/i;
const UNREACHABLE =
  /CLOUDFLARE_API_TOKEN|not logged in|wrangler login|unable to resolve|ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|UND_ERR|fetch failed|network|socket|getaddrinfo|Authentication error|Invalid access token|\[code: 10000\]|\[code: 9109\]|timed out|oauth|refresh token/i;

/**
 * A failed wrangler run as `{ unreachable, message }`: unreachable when wrangler could not talk to
 * Cloudflare at all (auth, network), which makes every other remote check moot.
 */
export function describeFailure(label, r, env = process.env) {
  if (r.error) {
    return {
      unreachable: true,
      message: `could not run wrangler (${wranglerCommand(env).join(" ")}): ${r.error.message}; run \`npm install\`, or check $WRANGLER`,
    };
  }
  if (r.timedOut) {
    return {
      unreachable: true,
      message: `could not reach Cloudflare: \`wrangler ${label}\` did not answer within ${REMOTE_TIMEOUT_MS / 1000} s; check your network and try again`,
    };
  }
  let why = wranglerError(r);
  if (/non-interactive environment.*CLOUDFLARE_API_TOKEN/i.test(why)) {
    why = "not logged in (no `wrangler login` session and no CLOUDFLARE_API_TOKEN)";
  }
  if (UNREACHABLE.test(why)) {
    return {
      unreachable: true,
      message: `could not reach Cloudflare: ${why}; run \`npx wrangler login\` (or set CLOUDFLARE_API_TOKEN) and check your network, then try again`,
    };
  }
  return { unreachable: false, message: `\`wrangler ${label}\` failed: ${why}` };
}

/** The secret names in `wrangler secret list --format json` output (a JSON array of {name, type}). */
export function parseSecretList(stdout) {
  const text = stdout.trim();
  const start = text.search(/^\[/m); // the array starts a line; a stray "▲ [WARNING] …" line does not
  const candidates = [text, start >= 0 ? text.slice(start, text.lastIndexOf("]") + 1) : ""];
  for (const c of candidates) {
    try {
      const list = JSON.parse(c);
      if (Array.isArray(list) && list.every((s) => s && typeof s.name === "string")) return list.map((s) => s.name);
    } catch {
      // try the next candidate
    }
  }
  return null;
}

/**
 * The pending migrations in `wrangler d1 migrations list` output: [] for "✅ No migrations to apply!",
 * the names of its table ("Migrations to be applied:" then a cli-table3 box with a "Name" column),
 * or null when the output is neither.
 */
export function parseMigrationsList(stdout) {
  if (/No migrations to apply/.test(stdout)) return [];
  const at = stdout.indexOf("Migrations to be applied");
  if (at < 0) return null;
  const names = [];
  for (const line of stdout.slice(at).split("\n")) {
    const m = /^\s*[│|]\s*(.*?)\s*[│|]\s*$/.exec(line);
    if (m?.[1] && m[1] !== "Name") names.push(m[1]);
  }
  return names.length ? names : null;
}

/**
 * Which secrets the Worker needs given its vars and the secrets already set (a webhook URL holding
 * a token may be a secret itself): `{ required: [[name, why]], recommended: [[name, why]] }`.
 */
export function secretRules(config, secretNames = []) {
  const vars = config.vars ?? {};
  const required = [["JWT_PRIVATE_KEYS", "signs every token"]];
  if (vars.NOTIFY_WEBHOOK_URL || secretNames.includes("NOTIFY_WEBHOOK_URL")) {
    // Receivers check X-Signature with it; the Worker refuses to post unsigned (GET /health says so).
    required.push(["NOTIFY_WEBHOOK_SECRET", "required because NOTIFY_WEBHOOK_URL is set"]);
  }
  const recommended = [
    [
      "PASSWORD_PEPPER",
      "recommended: without it a stolen D1 database can be attacked offline (docs/security.md, Passwords)",
    ],
  ];
  return { required, recommended };
}

function putSecretHint(name, envName) {
  const source = name === "JWT_PRIVATE_KEYS" ? "npm run keys --silent" : "openssl rand -base64 32";
  return `\`${source} | npx wrangler secret put ${name} --env ${envName}\``;
}

/* ------------------------------------------------------------------------------------------------ */
/* main                                                                                              */
/* ------------------------------------------------------------------------------------------------ */

function displayPath(p) {
  const rel = relative(process.cwd(), resolve(p));
  return rel && !rel.startsWith("..") ? rel : p;
}

/**
 * The whole command. Returns the exit status: 0 deployed, 1 refused (or wrangler failed), 2 usage.
 * `io` lets tests capture output and choose how the final `wrangler deploy` is attached.
 */
export async function main(argv, io = {}) {
  const env = io.env ?? process.env;
  const log = io.log ?? ((s) => process.stdout.write(`${s}\n`));
  const err = io.error ?? ((s) => process.stderr.write(`${s}\n`));
  const args = parseArgs(argv, env);
  if (args.help) {
    log(USAGE);
    return 0;
  }
  if (!args.env) {
    err(`deploy: choose an environment. ${USAGE}`);
    return 2;
  }
  const envName = args.env;
  const configPath = resolve(args.config ?? join(root, "wrangler.toml"));
  const wranglerCfg = args.config ? ["--config", args.config] : [];
  const problems = [];
  const warnings = [];
  const notes = [];

  log(`deploy: preflight for --env ${envName} (${displayPath(configPath)})${args.dryRun ? ", dry run" : ""}`);

  // 1. Offline: the config of this environment.
  const read = await readWranglerConfig(configPath, envName);
  if (read.problems) {
    problems.push(...read.problems);
  } else {
    const c = checkConfig(read.config, envName);
    problems.push(...c.problems);
    warnings.push(...c.warnings);
    if (c.ok.length) log(`  ok: bindings ${c.ok.join(", ")}`);
  }
  const config = read.config;

  // 2. Remote: secrets and D1 migrations, in parallel.
  if (args.dryRun) {
    notes.push("--dry-run: skipped the checks that need Cloudflare (secrets, pending D1 migrations)");
  } else if (config) {
    const dbOk = !problems.some((p) => p.startsWith(`D1 binding ${REQUIRED.d1}`));
    const [secrets, migrations] = await Promise.all([
      runCaptured(["secret", "list", "--env", envName, "--format", "json", ...wranglerCfg], env),
      dbOk
        ? runCaptured(["d1", "migrations", "list", REQUIRED.d1, "--remote", "--env", envName, ...wranglerCfg], env)
        : null,
    ]);
    let unreachable = null;

    // Secrets
    if (secrets.code === 0 && !secrets.error) {
      const names = parseSecretList(secrets.stdout);
      if (!names) {
        problems.push(
          `could not read the output of \`wrangler secret list\`: ${oneLine(secrets.stdout).slice(0, 200) || "(empty)"}`,
        );
      } else {
        const { required, recommended } = secretRules(config, names);
        const present = [];
        for (const [name, why] of required) {
          if (names.includes(name)) present.push(name);
          else problems.push(`secret ${name} is not set on ${config.name} (${why}): ${putSecretHint(name, envName)}`);
        }
        for (const [name, why] of recommended) {
          if (names.includes(name)) present.push(name);
          else warnings.push(`secret ${name} is not set on ${config.name} (${why}): ${putSecretHint(name, envName)}`);
        }
        if (
          (config.vars?.ENVIRONMENT ?? envName) === "production" &&
          !config.vars?.NOTIFY_WEBHOOK_URL &&
          !names.includes("NOTIFY_WEBHOOK_URL")
        ) {
          warnings.push(
            "NOTIFY_WEBHOOK_URL is not set: every code (email verification, OTP, reset) answers 503 delivery_unavailable and sign-ups get no verification code",
          );
        }
        if (!names.includes("TURNSTILE_SECRET")) {
          notes.push(
            "TURNSTILE_SECRET is not set: sign-up and OTP send need no captcha (except in realms that require one)",
          );
        } else {
          present.push("TURNSTILE_SECRET");
        }
        if (present.length) log(`  ok: secrets ${present.join(", ")}`);
      }
    } else if (WORKER_NOT_FOUND.test(wranglerError(secrets))) {
      problems.push(
        `Worker ${config.name} does not exist on Cloudflare yet, so it has no secrets: ${putSecretHint("JWT_PRIVATE_KEYS", envName)} creates it (check you are logged into the right account)`,
      );
    } else {
      const f = describeFailure(`secret list --env ${envName}`, secrets, env);
      if (f.unreachable) unreachable = f.message;
      else problems.push(f.message);
    }

    // D1 migrations
    if (!migrations) {
      notes.push("skipped the remote D1 migrations check until the DB binding is fixed");
    } else if (migrations.code === 0 && !migrations.error) {
      const pending = parseMigrationsList(migrations.stdout);
      if (pending === null) {
        problems.push(
          `could not read the output of \`wrangler d1 migrations list\`: ${oneLine(migrations.stdout).slice(0, 200) || "(empty)"}`,
        );
      } else if (pending.length) {
        problems.push(
          `${pending.length} D1 migration(s) not applied to the remote database: ${pending.join(", ")}; run \`npx wrangler d1 migrations apply ${REQUIRED.d1} --remote --env ${envName}\``,
        );
      } else {
        log("  ok: D1 migrations: none pending");
      }
    } else {
      const f = describeFailure(`d1 migrations list ${REQUIRED.d1} --remote --env ${envName}`, migrations, env);
      if (f.unreachable) unreachable ??= f.message;
      else problems.push(f.message);
    }
    if (unreachable) problems.push(unreachable);
  }

  for (const w of warnings) log(`  warning: ${w}`);
  for (const n of notes) log(`  note: ${n}`);
  if (problems.length) {
    for (const p of problems) err(`  error: ${p}`);
    err(`deploy: refused (${problems.length} problem${problems.length === 1 ? "" : "s"}); nothing was deployed.`);
    return 1;
  }

  // 3. Deploy.
  const deployArgs = ["deploy", "--env", envName, ...args.passthrough];
  log(`deploy: preflight passed; running wrangler ${deployArgs.join(" ")}`);
  const [cmd, ...pre] = wranglerCommand(env);
  return await new Promise((done) => {
    const child = spawn(cmd, [...pre, ...deployArgs], { cwd: root, env, stdio: io.stdio ?? "inherit" });
    child.on("error", (e) => {
      err(`deploy: could not run wrangler (${cmd}): ${e.message}`);
      done(1);
    });
    child.on("close", (code) => done(code ?? 1));
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      // Never a stack trace: one line, and a non-zero status.
      process.stderr.write(`deploy: unexpected failure: ${oneLine(e?.message ?? e)}\n`);
      process.exit(1);
    },
  );
}
