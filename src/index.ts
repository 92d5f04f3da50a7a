import { WorkerEntrypoint } from "cloudflare:workers";
import { buildApp } from "./app";
import { loadConfig } from "./config";
import type { Env } from "./env";
import { ApiError } from "./errors";
import { type AuthOptions, verifyAccess } from "./services/auth";
import { type CleanupReport, cleanupNow } from "./services/cleanup";
import { makeDeps } from "./services/deps";
import { deliverBatch } from "./services/notifier";
import { toUser } from "./services/users";
import { findUserById } from "./storage/users";

export { DeviceSession } from "./storage/device-session";

export const app = buildApp();
export type AppType = typeof app;

export default {
  fetch: (request, env, ctx) => app.fetch(request, env, ctx),
  scheduled: (controller, env, ctx) => ctx.waitUntil(scheduledCleanup(env, controller.scheduledTime)),
  queue: (batch, env, _ctx) => {
    const loaded = loadConfig(env);
    // Without valid config nothing can be delivered: retry later rather than lose the messages.
    if (!loaded.ok) {
      batch.retryAll({ delaySeconds: 60 });
      return Promise.resolve();
    }
    return deliverBatch(batch, loaded.config);
  },
} satisfies ExportedHandler<Env>;

/** The cron trigger: bounded, idempotent cleanup; logs one JSON line with what it removed. */
async function scheduledCleanup(env: Env, now: number): Promise<CleanupReport | null> {
  const loaded = loadConfig(env);
  if (!loaded.ok) {
    console.error(JSON.stringify({ level: "error", event: "cleanup_skipped", problems: loaded.problems }));
    return null;
  }
  const report = await cleanupNow(env.DB, loaded.config, now);
  console.log(JSON.stringify({ level: "info", event: "cleanup", ...report }));
  return report;
}

export type VerifyResult = { ok: true; claims: Record<string, unknown> } | { ok: false; code: string; message: string };

/**
 * The RPC entrypoint for other Workers and Pages (docs/api.md §7): verify tokens and read users
 * without a network hop, or forward HTTP requests to the API.
 */
export class AuthService extends WorkerEntrypoint<Env> {
  /** Verifies an access token with the checks and codes of docs/api.md §2. */
  async verify(token: string, options?: (AuthOptions & { realm?: string }) | null): Promise<VerifyResult> {
    options ??= {};
    try {
      const deps = await makeDeps(this.env, Date.now(), (p) => this.ctx.waitUntil(p));
      const realm = options.realm ?? "default";
      const claims = await verifyAccess(deps, realm, String(token ?? ""), options);
      return { ok: true, claims: { ...claims } };
    } catch (e) {
      if (e instanceof ApiError) return { ok: false, code: e.code, message: e.message };
      throw e;
    }
  }

  /** A user by id (realm `default` unless given), or null. */
  async getUser(id: string, realm = "default") {
    const deps = await makeDeps(this.env, Date.now(), (p) => this.ctx.waitUntil(p));
    const user = await findUserById(deps.db, realm, String(id));
    return user ? toUser(user) : null;
  }

  /** The HTTP API, so a Pages Function can forward `/api/auth/*` over the binding. */
  override async fetch(request: Request): Promise<Response> {
    return app.fetch(request, this.env, this.ctx);
  }
}
