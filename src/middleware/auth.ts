import type { MiddlewareHandler } from "hono";
import type { AppContext, AppEnv } from "../context";
import { ApiError } from "../errors";
import { type AuthOptions, bearer, verifyAccess } from "../services/auth";
import type { Deps } from "../services/deps";
import { makeDeps } from "../services/deps";

const depsCache = new WeakMap<Request, Promise<Deps>>();

/** The request's Deps, built once (throws 503 config_invalid when configuration is broken). */
export function deps(c: AppContext): Promise<Deps> {
  let d = depsCache.get(c.req.raw);
  if (!d) {
    d = makeDeps(c.env, c.get("now"), (p) => c.executionCtx.waitUntil(p.catch((e) => console.error("deferred", e))));
    depsCache.set(c.req.raw, d);
  }
  return d;
}

/** Requires a valid access token of the request's realm; sets `claims`. */
export function auth(opts: AuthOptions = {}): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const token = bearer(c.req.header("Authorization"));
    if (!token) throw new ApiError("missing_token");
    const d = await deps(c);
    c.set("claims", await verifyAccess(d, c.get("realm"), token, opts));
    await next();
  };
}
