import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context";
import { clientIp } from "../context";
import type { Env } from "../env";
import { tooMany } from "../errors";

/** The per-IP limiters (Rate Limiting bindings, wrangler.toml); a route names its own in `route({ limit })`. */
export type Limiter = "RL_SIGNUP" | "RL_LOGIN" | "RL_OTP" | "RL_RESET";

/** The Workers Rate Limiting period of these bindings (wrangler.toml), for Retry-After. */
const PERIOD_SECONDS = 60;

/**
 * Limits a route per client IP through a Rate Limiting binding. The key is CF-Connecting-IP as
 * Cloudflare sets it (never X-Forwarded-For, which clients control); without it (local
 * development, tests) or without the binding, nothing is enforced.
 */
export function ipLimit(limiter: keyof Pick<Env, Limiter>): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const binding = c.env[limiter];
    const ip = clientIp(c);
    if (binding && ip) {
      const { success } = await binding.limit({ key: `${c.get("realm")}:${ip}` });
      if (!success) {
        throw tooMany(PERIOD_SECONDS * 1000, "Too many requests from this address. Please try again later");
      }
    }
    await next();
  };
}
