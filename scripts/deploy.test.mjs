// The deploy preflight (scripts/deploy.mjs) against a fake wrangler (scripts/fake-wrangler.mjs):
// canned answers in, recorded argv out, never the network. Runs in vitest's "node" project.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  main,
  oidcVarProblems,
  parseArgs,
  parseMigrationsList,
  parseSecretList,
  root,
  webauthnProblems,
} from "./deploy.mjs";

const FAKE = join(root, "scripts", "fake-wrangler.mjs");
const D1_ID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const KV_ID = "0123456789abcdef0123456789abcdef";
const realToml = readFileSync(join(root, "wrangler.toml"), "utf8");

let dir;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "deploy-test-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The project's wrangler.toml with its D1/KV placeholders filled in (or not), plus `edit`. */
function writeConfig({ fill = true, edit = (s) => s } = {}) {
  let toml = realToml;
  if (fill) {
    toml = toml.replace(/REPLACE_WITH_[A-Z_]*D1_ID/g, D1_ID).replace(/REPLACE_WITH_[A-Z_]*KV_ID/g, KV_ID);
  }
  const file = join(dir, `wrangler-${++n}.toml`);
  writeFileSync(file, edit(toml));
  return file;
}

/** Runs the deploy command in-process with the fake wrangler; returns exit status, output, wrangler calls. */
async function deploy(argv, { answers = {}, config = writeConfig(), wrangler = FAKE, env = {} } = {}) {
  const log = join(dir, `calls-${++n}.jsonl`);
  const out = [];
  const err = [];
  const code = await main(config ? [...argv, "--config", config] : argv, {
    env: {
      ...process.env,
      WRANGLER: wrangler,
      FAKE_WRANGLER_ANSWERS: JSON.stringify(answers),
      FAKE_WRANGLER_LOG: log,
      ...env,
    },
    log: (s) => out.push(s),
    error: (s) => err.push(s),
    stdio: "ignore",
  });
  let calls = [];
  try {
    calls = readFileSync(log, "utf8").trim().split("\n").filter(Boolean).map(JSON.parse);
  } catch {
    // no call at all
  }
  const errors = err.filter((l) => l.startsWith("  error: ")).map((l) => l.slice(9));
  return { code, out: out.join("\n"), err: err.join("\n"), errors, calls, config };
}

const deployCall = (calls) => calls.find((c) => c[0] === "deploy");

describe("deploy preflight", () => {
  it("deploys when everything is in place, with the right arguments", async () => {
    const r = await deploy(["--env", "production", "--message", "release 1"]);
    expect(r.err).toBe("");
    expect(r.code).toBe(0);
    expect(r.calls).toContainEqual(["secret", "list", "--env", "production", "--format", "json", "--config", r.config]);
    expect(r.calls).toContainEqual([
      "d1",
      "migrations",
      "list",
      "DB",
      "--remote",
      "--env",
      "production",
      "--config",
      r.config,
    ]);
    expect(deployCall(r.calls)).toEqual([
      "deploy",
      "--env",
      "production",
      "--message",
      "release 1",
      "--config",
      r.config,
    ]);
    expect(r.out).toContain("ok: bindings DB, TOKENS, DEVICE_SESSIONS, RL_SIGNUP, RL_LOGIN, RL_OTP, RL_RESET");
    expect(r.out).toContain("ok: secrets JWT_PRIVATE_KEYS, PASSWORD_PEPPER, TURNSTILE_SECRET");
    expect(r.out).toContain("ok: D1 migrations: none pending");
  });

  it("deploys staging too", async () => {
    const r = await deploy(["--env=staging"]);
    expect(r.code).toBe(0);
    expect(deployCall(r.calls)).toEqual(["deploy", "--env", "staging", "--config", r.config]);
  });

  it("refuses when JWT_PRIVATE_KEYS is not set, naming it and how to set it", async () => {
    const r = await deploy(["--env", "production"], { answers: { "secret list": { secrets: ["PASSWORD_PEPPER"] } } });
    expect(r.code).toBe(1);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/^secret JWT_PRIVATE_KEYS is not set on user-registry/);
    expect(r.errors[0]).toContain("npm run keys --silent | npx wrangler secret put JWT_PRIVATE_KEYS --env production");
    expect(r.err).toContain("deploy: refused (1 problem); nothing was deployed.");
    expect(deployCall(r.calls)).toBeUndefined();
  });

  it("requires NOTIFY_WEBHOOK_SECRET only when NOTIFY_WEBHOOK_URL is a var of that environment", async () => {
    const withUrl = writeConfig({
      edit: (s) =>
        s.replace(
          "[env.production.vars]\n",
          '[env.production.vars]\nNOTIFY_WEBHOOK_URL = "https://hooks.example.net/notify"\n',
        ),
    });
    const refused = await deploy(["--env", "production"], { config: withUrl });
    expect(refused.code).toBe(1);
    expect(refused.errors).toEqual([
      expect.stringMatching(/^secret NOTIFY_WEBHOOK_SECRET is not set .*NOTIFY_WEBHOOK_URL/),
    ]);

    const secrets = ["JWT_PRIVATE_KEYS", "PASSWORD_PEPPER", "NOTIFY_WEBHOOK_SECRET"];
    const ok = await deploy(["--env", "production"], { config: withUrl, answers: { "secret list": { secrets } } });
    expect(ok.code).toBe(0);
    // Staging has no NOTIFY_WEBHOOK_URL: no webhook secret needed there.
    expect((await deploy(["--env", "staging"], { config: withUrl })).code).toBe(0);
  });

  it("requires NOTIFY_WEBHOOK_SECRET when NOTIFY_WEBHOOK_URL is a secret, and warns when production has no webhook", async () => {
    const urlAsSecret = ["JWT_PRIVATE_KEYS", "PASSWORD_PEPPER", "NOTIFY_WEBHOOK_URL"];
    const refused = await deploy(["--env", "production"], { answers: { "secret list": { secrets: urlAsSecret } } });
    expect(refused.code).toBe(1);
    expect(refused.errors).toEqual([expect.stringMatching(/^secret NOTIFY_WEBHOOK_SECRET is not set /)]);
    const none = await deploy(["--env", "production"]);
    expect(none.code).toBe(0);
    expect(none.out).toMatch(/warning: NOTIFY_WEBHOOK_URL is not set: every code .* 503 delivery_unavailable/);
    const set = await deploy(["--env", "production"], {
      answers: { "secret list": { secrets: [...urlAsSecret, "NOTIFY_WEBHOOK_SECRET"] } },
    });
    expect(set.code).toBe(0);
    expect(set.out).not.toMatch(/NOTIFY_WEBHOOK_URL is not set/);
  });

  it("only warns about a missing PASSWORD_PEPPER, and still deploys", async () => {
    const r = await deploy(["--env", "production"], { answers: { "secret list": { secrets: ["JWT_PRIVATE_KEYS"] } } });
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/warning: secret PASSWORD_PEPPER is not set on user-registry \(recommended/);
    expect(r.out).toContain("note: TURNSTILE_SECRET is not set");
    expect(deployCall(r.calls)).toBeDefined();
  });

  it("refuses while D1 migrations are pending remotely, naming them", async () => {
    const pending = ["0001_authority_tokens.sql", "0002_login_throttle.sql"];
    const r = await deploy(["--env", "production"], { answers: { "d1 migrations list": { pending } } });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([
      "2 D1 migration(s) not applied to the remote database: 0001_authority_tokens.sql, 0002_login_throttle.sql; run `npx wrangler d1 migrations apply DB --remote --env production`",
    ]);
    expect(deployCall(r.calls)).toBeUndefined();
  });

  it("refuses while wrangler.toml still holds REPLACE_WITH_ placeholders, and skips the D1 check", async () => {
    const r = await deploy(["--env", "production"], { config: writeConfig({ fill: false }) });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([
      expect.stringMatching(
        /^D1 binding DB: database_id is still the placeholder REPLACE_WITH_PRODUCTION_D1_ID; run `npx wrangler d1 create user-registry`/,
      ),
      expect.stringMatching(
        /^KV binding TOKENS: id is still the placeholder REPLACE_WITH_PRODUCTION_KV_ID; run `npx wrangler kv namespace create/,
      ),
    ]);
    expect(r.calls.some((c) => c[0] === "d1")).toBe(false);
    expect(deployCall(r.calls)).toBeUndefined();
  });

  it("refuses the all-zero local ids and ids of the wrong shape", async () => {
    const config = writeConfig({
      edit: (s) => s.replace(D1_ID, "00000000-0000-0000-0000-000000000000").replace(KV_ID, "not-a-kv-id"),
    });
    const r = await deploy(["--env", "staging"], { config });
    expect(r.code).toBe(1);
    expect(r.errors[0]).toMatch(/^D1 binding DB: database_id is the all-zero id of local development/);
    expect(r.errors[1]).toMatch(/^KV binding TOKENS: id does not look like a KV namespace id/);
  });

  it("refuses when a required binding is missing from the environment (bindings are not inherited)", async () => {
    const config = writeConfig({
      edit: (s) =>
        s
          .replace(/\[\[env\.production\.kv_namespaces\]\]\nbinding = "TOKENS"\nid = "[^"]*"\n/, "")
          .replace(/\[\[env\.production\.ratelimits\]\]\nname = "RL_OTP"\n[^\n]*\n[^\n]*\n/, ""),
    });
    const r = await deploy(["--env", "production"], { config });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([
      expect.stringMatching(/^KV binding TOKENS is missing: add \[\[env\.production\.kv_namespaces\]\]/),
      expect.stringMatching(/^rate-limit binding RL_OTP is missing/),
    ]);
  });

  it("says plainly when wrangler is not logged in, once for both remote checks", async () => {
    const error =
      "In a non-interactive environment, it's necessary to set a CLOUDFLARE_API_TOKEN environment variable for wrangler to work.";
    const r = await deploy(["--env", "production"], {
      answers: { "secret list": { error }, "d1 migrations list": { error } },
    });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([
      "could not reach Cloudflare: not logged in (no `wrangler login` session and no CLOUDFLARE_API_TOKEN); run `npx wrangler login` (or set CLOUDFLARE_API_TOKEN) and check your network, then try again",
    ]);
    expect(deployCall(r.calls)).toBeUndefined();
  });

  it("says plainly when Cloudflare cannot be reached", async () => {
    const error = "Unable to resolve Cloudflare's API hostname (api.cloudflare.com or dash.cloudflare.com).";
    const r = await deploy(["--env", "staging"], {
      answers: { "secret list": { error }, "d1 migrations list": { error } },
    });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([
      expect.stringMatching(/^could not reach Cloudflare: Unable to resolve Cloudflare's API hostname/),
    ]);
  });

  it("explains a Worker that does not exist yet (no secret was ever put)", async () => {
    const error = 'Worker "user-registry" (env: production) not found.';
    const r = await deploy(["--env", "production"], { answers: { "secret list": { error } } });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([
      expect.stringMatching(
        /^Worker user-registry does not exist on Cloudflare yet.*wrangler secret put JWT_PRIVATE_KEYS --env production/,
      ),
    ]);
  });

  it("reports other wrangler failures with wrangler's own words", async () => {
    const error = "Couldn't find DB with name 'user-registry' [code: 7404]";
    const r = await deploy(["--env", "production"], { answers: { "d1 migrations list": { error } } });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([
      "`wrangler d1 migrations list DB --remote --env production` failed: Couldn't find DB with name 'user-registry' [code: 7404]",
    ]);
  });

  it("says so when wrangler itself cannot be run", async () => {
    const r = await deploy(["--env", "production"], { wrangler: join(dir, "no-such-wrangler") });
    expect(r.code).toBe(1);
    expect(r.errors).toEqual([expect.stringMatching(/^could not run wrangler \(.*no-such-wrangler\): .*ENOENT/)]);
  });

  it("--dry-run: offline checks only, then wrangler deploy --dry-run", async () => {
    const r = await deploy(["--env", "production", "--dry-run"], {
      answers: { "secret list": { error: "must not be called" } },
    });
    expect(r.code).toBe(0);
    expect(r.out).toContain("note: --dry-run: skipped the checks that need Cloudflare");
    expect(r.calls).toEqual([["deploy", "--env", "production", "--dry-run", "--config", r.config]]);
  });

  it("--dry-run still refuses placeholders, without calling wrangler", async () => {
    const r = await deploy(["--env", "staging", "--dry-run"], { config: writeConfig({ fill: false }) });
    expect(r.code).toBe(1);
    expect(r.errors.join("\n")).toContain("REPLACE_WITH_STAGING_D1_ID");
    expect(r.errors.join("\n")).toContain("REPLACE_WITH_STAGING_KV_ID");
    expect(r.calls).toEqual([]);
  });

  it("passes wrangler deploy's exit status through", async () => {
    const r = await deploy(["--env", "production"], { answers: { deploy: { error: "upload failed" } } });
    expect(r.code).toBe(1);
    expect(deployCall(r.calls)).toBeDefined();
  });

  it("needs an environment, and one that wrangler.toml defines", async () => {
    const none = await deploy([], { config: null });
    expect(none.code).toBe(2);
    expect(none.err).toMatch(/choose an environment.*--env <staging\|production>/);
    const unknown = await deploy(["--env", "prod"]);
    expect(unknown.code).toBe(1);
    expect(unknown.errors).toEqual([
      expect.stringMatching(/has no \[env\.prod\] section \(environments defined there: staging, production\)/),
    ]);
    expect(unknown.calls).toEqual([]);
  });

  it("as a command: one line per problem, exit status 1, no stack trace", () => {
    const config = writeConfig({ fill: false });
    const r = spawnSync(
      process.execPath,
      [join(root, "scripts", "deploy.mjs"), "--env", "production", "--config", config],
      {
        cwd: root,
        encoding: "utf8",
        env: {
          ...process.env,
          WRANGLER: FAKE,
          FAKE_WRANGLER_ANSWERS: JSON.stringify({
            "secret list": { error: "getaddrinfo ENOTFOUND api.cloudflare.com" },
          }),
        },
      },
    );
    expect(r.status).toBe(1);
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toEqual([
      expect.stringMatching(/^ {2}error: D1 binding DB: database_id is still the placeholder/),
      expect.stringMatching(/^ {2}error: KV binding TOKENS: id is still the placeholder/),
      expect.stringMatching(
        /^ {2}error: could not reach Cloudflare: getaddrinfo ENOTFOUND api\.cloudflare\.com; run `npx wrangler login`/,
      ),
      "deploy: refused (3 problems); nothing was deployed.",
    ]);
    expect(`${r.stdout}${r.stderr}`).not.toMatch(/^\s+at /m);
  });
});

describe("parsing wrangler's output", () => {
  it("reads `wrangler d1 migrations list` as wrangler 4 prints it", () => {
    const out = [
      "",
      " ⛅️ wrangler 4.164.0",
      "────────────────────",
      "Resource location: remote ",
      "",
      "Migrations to be applied:",
      "┌───────────────────────────┐",
      "│ Name                      │",
      "├───────────────────────────┤",
      "│ 0000_init.sql             │",
      "├───────────────────────────┤",
      "│ 0001_authority_tokens.sql │",
      "└───────────────────────────┘",
    ].join("\n");
    expect(parseMigrationsList(out)).toEqual(["0000_init.sql", "0001_authority_tokens.sql"]);
    expect(parseMigrationsList("\n ⛅️ wrangler 4.164.0\n✅ No migrations to apply!\n")).toEqual([]);
    expect(parseMigrationsList("something else entirely")).toBeNull();
  });

  it("reads `wrangler secret list --format json`, even after a stray line", () => {
    const json = JSON.stringify([{ name: "JWT_PRIVATE_KEYS", type: "secret_text" }], null, "  ");
    expect(parseSecretList(json)).toEqual(["JWT_PRIVATE_KEYS"]);
    expect(parseSecretList(`▲ [WARNING] something\n${json}\n`)).toEqual(["JWT_PRIVATE_KEYS"]);
    expect(parseSecretList("[]")).toEqual([]);
    expect(parseSecretList("nope")).toBeNull();
  });

  it("splits our arguments from wrangler's", () => {
    expect(parseArgs(["-e", "staging", "--dry-run", "--tag", "v1"], {})).toMatchObject({
      env: "staging",
      dryRun: true,
      passthrough: ["--dry-run", "--tag", "v1"],
    });
    // `npm run deploy --env production --dry-run` (no `--`): npm keeps both flags for itself.
    expect(parseArgs([], { npm_config_env: "production", npm_config_dry_run: "true" })).toMatchObject({
      env: "production",
      dryRun: true,
      passthrough: ["--dry-run"],
    });
  });
});

describe("deploy preflight: identity providers (docs/api.md §13)", () => {
  it("accepts presets with only {id, client_ids} and a full generic provider", () => {
    const providers = [
      { id: "google", client_ids: ["web.apps.googleusercontent.com"] },
      { id: "apple", client_ids: ["com.example.app"] },
      { id: "corp", issuer: "https://login.example.com", client_ids: ["a", "b"] },
    ];
    expect(
      oidcVarProblems({ OIDC_PROVIDERS: JSON.stringify(providers), OAUTH_REDIRECT_URIS: "https://app.example.com/cb" }),
    ).toEqual([]);
  });

  it("names each problem: bad JSON, missing issuer, no client ids, a duplicate, a bad redirect URI", () => {
    expect(oidcVarProblems({ OIDC_PROVIDERS: "[" })).toEqual(["var OIDC_PROVIDERS is not valid JSON"]);
    const problems = oidcVarProblems({
      OIDC_PROVIDERS: JSON.stringify([
        { id: "corp", client_ids: ["a"] },
        { id: "google", client_ids: [] },
        { id: "google", client_ids: ["x"] },
      ]),
      OAUTH_REDIRECT_URIS: "not a uri",
    });
    expect(problems.join("\n")).toMatch(/"corp": issuer is required/);
    expect(problems.join("\n")).toMatch(/"google": client_ids must list/);
    expect(problems.join("\n")).toMatch(/"google" is listed twice/);
    expect(problems.join("\n")).toMatch(/OAUTH_REDIRECT_URIS: "not"/);
  });
});

describe("passkey settings in the preflight", () => {
  it("refuses an RP ID with a scheme, an origin off the RP ID, and origins without an RP ID; warns when off", () => {
    expect(webauthnProblems({}).warnings).toEqual([expect.stringMatching(/passkeys are off/)]);
    expect(webauthnProblems({ WEBAUTHN_RP_ID: "https://example.org" }).problems).toHaveLength(1);
    expect(webauthnProblems({ WEBAUTHN_ORIGINS: "https://example.org" }).problems).toHaveLength(1);
    const off = webauthnProblems({ WEBAUTHN_RP_ID: "example.org", WEBAUTHN_ORIGINS: "https://example.org.evil.test" });
    expect(off.problems).toEqual([expect.stringMatching(/not an https origin on example.org/)]);
    expect(
      webauthnProblems({ WEBAUTHN_RP_ID: "example.org", WEBAUTHN_ORIGINS: "http://app.example.org" }).problems,
    ).toHaveLength(1);
    const good = webauthnProblems({
      WEBAUTHN_RP_ID: "example.org",
      WEBAUTHN_ORIGINS: `https://example.org, https://app.example.org, android:apk-key-hash:${"a".repeat(43)}`,
    });
    expect(good).toEqual({ problems: [], warnings: [] });
  });
});
