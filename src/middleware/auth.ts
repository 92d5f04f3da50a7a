import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { type AuthOptions, bearer, verifyAccess } from "../services/auth";
import { deps } from "./deps";

export { BOOKMARK_HEADER, deps } from "./deps";

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
