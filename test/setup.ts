import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";

// Applies the D1 migrations (idempotent) before the tests of each file.
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
