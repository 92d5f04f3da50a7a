// The packed tarball (`npm pack`) installs in a project outside this one, and both entry points
// compile there with `tsc --strict`: resolved through package.json `exports`, with their own
// declarations, no Workers types and no DOM-only types. Then the compiled use runs in Node and
// verifies a token of the running worker.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { newSession, registry } from "./registry.mjs";

const root = new URL("../..", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "user-registry-pack-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(cmd, args, cwd, env = {}) {
  try {
    return execFileSync(cmd, args, {
      cwd,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${e.stdout ?? ""}${e.stderr ?? ""}`);
  }
}

const USE = `
import { createVerifier, type VerifyResult } from "user-registry/verify";
import {
  createClient,
  memoryStorage,
  RegistryError,
  type MfaLoginInput,
  type TokenPair,
  type PasskeyRequestOptions,
  type User,
} from "user-registry/client";

const issuer: string = process.env.ISSUER ?? "";
const verifier = createVerifier({ issuer, audience: issuer, jwks: new URL(issuer + "/.well-known/jwks.json") });
const client = createClient({ baseUrl: issuer, storage: memoryStorage() });

async function main(): Promise<void> {
  const result: VerifyResult = await verifier.verify(process.env.TOKEN ?? "", { roles: ["user"] });
  if (!result.ok) throw new Error(result.code);
  const sub: string = result.claims.sub;
  const pair: TokenPair | null = null;
  const user: User | null = pair;
  const options: PasskeyRequestOptions = await client.passkeyLoginOptions();
  const second: MfaLoginInput = { mfa_token: "t", recovery_code: "r" };
  try {
    await client.me();
  } catch (e) {
    if (!(e instanceof RegistryError)) throw e;
    const mfaToken: string | undefined = e.mfaToken;
    console.log(JSON.stringify({ sub, user, me: e.code, challenge: typeof options.challenge, second: second.mfa_token, mfaToken }));
  }
}
await main();
`;

// The same in a browser or bundler project: DOM types, no Node types, no process. The WebAuthn
// options go to @simplewebauthn/browser as they are, with its own types.
const USE_BROWSER = `
import { startAuthentication, startRegistration } from "@simplewebauthn/browser";
import { createVerifier } from "user-registry/verify";
import { createClient, type Client } from "user-registry/client";

const client: Client = createClient({ baseUrl: location.origin, storage: {
  get: (k) => localStorage.getItem(k),
  set: (k, v) => localStorage.setItem(k, v),
  delete: (k) => localStorage.removeItem(k),
} });
const verifier = createVerifier({ issuer: location.origin, audience: location.origin, jwks: new URL("/.well-known/jwks.json", location.origin) });
export async function show(): Promise<string> {
  const res = await client.authFetch("/v1/users/me");
  const token = await client.accessToken();
  const checked = token ? await verifier.verify(token) : null;
  return String(res.status) + String(checked?.ok);
}
export async function addPasskey(): Promise<string> {
  const response = await startRegistration({ optionsJSON: await client.passkeyRegistrationOptions() });
  return (await client.registerPasskey({ response })).id;
}
export async function passkeyLogin(): Promise<string> {
  const response = await startAuthentication({ optionsJSON: await client.passkeyLoginOptions() });
  return (await client.passkeyLogin({ response })).user.id;
}
`;

describe("npm pack → install elsewhere → tsc --strict", () => {
  it("compiles a use of both entry points and runs it against the worker", async () => {
    run("npm", ["pack", "--silent", "--pack-destination", dir], root);
    const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"));
    expect(tarball).toBeTruthy();
    const listing = run("tar", ["-tzf", join(dir, tarball)], dir);
    expect(listing).toContain("package/lib/verify.d.ts");
    expect(listing).toContain("package/lib/client.d.ts");
    expect(listing).not.toContain("package/src/");

    const project = join(dir, "consumer");
    run("mkdir", ["-p", project], dir);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    const version = (name) =>
      JSON.parse(readFileSync(join(root, "node_modules", name, "package.json"), "utf8")).version;
    run(
      "npm",
      [
        ...["install", "--no-audit", "--no-fund", "--prefer-offline", join(dir, tarball)],
        ...[`typescript@${version("typescript")}`, "@types/node"],
        `@simplewebauthn/browser@${version("@simplewebauthn/browser")}`,
      ],
      project,
    );
    writeFileSync(join(project, "use.ts"), USE);
    writeFileSync(join(project, "use-browser.ts"), USE_BROWSER);
    const tsc = join(project, "node_modules/typescript/bin/tsc");
    // Node's resolution (exports conditions), Node's types only: no DOM, no Workers types.
    const strict = ["--strict", "--noUncheckedIndexedAccess", "--target", "ES2022", "--skipLibCheck", "false"];
    run(
      process.execPath,
      [
        tsc,
        ...strict,
        "--module",
        "NodeNext",
        "--moduleResolution",
        "NodeNext",
        "--types",
        "node",
        "--lib",
        "ES2022",
        "use.ts",
      ],
      project,
    );
    // A browser or bundler project: DOM types, and no Node types (types: [] keeps @types/node out).
    writeFileSync(
      join(project, "tsconfig.browser.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noUncheckedIndexedAccess: true,
          target: "ES2022",
          module: "ES2022",
          moduleResolution: "Bundler",
          lib: ["ES2022", "DOM"],
          types: [],
          noEmit: true,
          skipLibCheck: false,
        },
        files: ["use-browser.ts"],
      }),
    );
    run(process.execPath, [tsc, "-p", "tsconfig.browser.json"], project);

    const { pair } = await newSession();
    const out = run(process.execPath, ["use.js"], project, { ISSUER: registry().issuer, TOKEN: pair.access_token });
    expect(JSON.parse(out.trim())).toEqual({
      sub: pair.user.id,
      user: null,
      me: "missing_token",
      challenge: "string",
      second: "t",
    });
  });
});
