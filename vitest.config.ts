import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

/** A throwaway P-256 signing key per test run, plus a second one to test rotation and foreign keys. */
async function testKey(kid: string) {
  const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
  return { ...(await crypto.subtle.exportKey("jwk", pair.privateKey)), kid };
}

// Two projects, one `vitest run` and one JSON report:
//   "user-registry"  the Worker's tests (test/**/*.test.ts), inside workerd through the Cloudflare pool;
//   "node"           tests of the Node-side scripts (scripts/**/*.test.mjs, e.g. the deploy preflight);
//   "registry-node"  Node tests against the built worker served by Miniflare (test/node/**/*.test.mjs).
// `npx vitest run --project node` (or `--project user-registry`) runs one of them.
export default defineConfig(async () => {
  const migrations = await readD1Migrations("./drizzle");
  const [current, other] = await Promise.all([testKey("test-1"), testKey("test-2")]);
  return {
    test: {
      projects: [
        {
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: {
                  TEST_MIGRATIONS: migrations,
                  ENVIRONMENT: "test",
                  ISSUER: "https://user-registry.test",
                  JWT_PRIVATE_KEYS: JSON.stringify([current]),
                  TEST_OTHER_KEY: JSON.stringify(other),
                  BOOTSTRAP_ADMIN_EMAILS: "root@admin.test, second-root@admin.test",
                  // The fake OpenID provider of the test double (test/workers/double.js): "fake" finds its
                  // endpoints by discovery, "fake-direct" has them configured (docs/api.md §13).
                  OIDC_PROVIDERS: JSON.stringify([
                    { id: "fake", issuer: "https://idp.test", client_ids: ["web-client", "ios-client"] },
                    {
                      id: "fake-direct",
                      issuer: "https://idp.test/direct",
                      client_ids: ["direct-client"],
                      jwks_uri: "https://idp.test/jwks",
                      authorization_endpoint: "https://idp.test/authorize",
                      token_endpoint: "https://idp.test/token",
                    },
                  ]),
                  OIDC_CLIENT_SECRETS: JSON.stringify({ fake: "fake-client-secret" }),
                  OAUTH_REDIRECT_URIS: "https://app.test/signed-in, com.example.app:/oauth",
                  // Passkeys (test/passkeys.test.ts drives a software authenticator against these).
                  WEBAUTHN_RP_ID: "registry.test",
                  WEBAUTHN_RP_NAME: "Registry Test",
                  WEBAUTHN_ORIGINS: "https://registry.test,https://app.registry.test",
                  // test/fuzz.test.ts: FUZZ_SEED=<seed> FUZZ_RUNS=200 FUZZ_SHRINK=1 npx vitest run test/fuzz.test.ts
                  FUZZ_SEED: process.env.FUZZ_SEED ?? "",
                  FUZZ_RUNS: process.env.FUZZ_RUNS ?? "",
                  FUZZ_SHRINK: process.env.FUZZ_SHRINK ?? "",
                },
                // test/queue.test.ts: a real local queue; the test double consumes it and records the messages.
                queueProducers: { TEST_NOTIFY_QUEUE: { queueName: "user-registry-test-notify" } },
                serviceBindings: { CONSUMER: "consumer", DOUBLE: "test-double" },
                // Outbound fetches (webhooks, siteverify) go to the test double, never to the internet.
                outboundService: "test-double",
                workers: [
                  {
                    name: "consumer",
                    modules: true,
                    scriptPath: "./test/workers/consumer.js",
                    compatibilityDate: "2026-08-01",
                    // The Worker under test runs as the pool's runner, named after the project ("user-registry").
                    serviceBindings: {
                      AUTH: { name: "vitest-plugin-runner-user-registry", entrypoint: "AuthService" },
                    },
                  },
                  {
                    name: "test-double",
                    modules: true,
                    scriptPath: "./test/workers/double.js",
                    compatibilityDate: "2026-08-01",
                    queueConsumers: { "user-registry-test-notify": { maxBatchTimeout: 1 } },
                  },
                ],
              },
            }),
          ],
          // The tests load the same trimmed zod as the deployed bundle (wrangler.toml [alias]).
          resolve: {
            alias: [{ find: /^zod$/, replacement: `${process.cwd()}/build/zod.js` }],
          },
          test: {
            name: "user-registry",
            include: ["test/**/*.test.ts"],
            setupFiles: ["./test/setup.ts"],
            // The worker logs a JSON line per request; show test output only for failures.
            silent: "passed-only",
            testTimeout: 30_000,
            hookTimeout: 30_000,
          },
        },
        {
          test: {
            name: "node",
            environment: "node",
            include: ["scripts/**/*.test.mjs"],
            testTimeout: 60_000,
          },
        },
        {
          // Outside workerd: standard JWT libraries, user-registry/verify and user-registry/client
          // against the worker served by Miniflare on a loopback port, and the packed tarball.
          test: {
            name: "registry-node",
            environment: "node",
            include: ["test/node/**/*.test.mjs"],
            globalSetup: ["./test/node/global-setup.mjs"],
            testTimeout: 120_000,
            hookTimeout: 120_000,
          },
        },
      ],
    },
  };
});
