import type { MiddlewareHandler } from "hono";
import type { AppContext, AppEnv } from "../context";
import { ApiError } from "../errors";
import { type AuthOptions, bearer, verifyAccess } from "../services/auth";
import type { Deps } from "../services/deps";
import { makeDeps } from "../services/deps";

const depsCache = new WeakMap<Request, Promise<Deps>>();

/**
 * A bookmark a client may hand back, in D1's own shape; anything else is ignored, so a bad
 * bookmark can never fail a query later on.
 */
const SANE_BOOKMARK = /^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{32}$/;
export const BOOKMARK_HEADER = "X-D1-Bookmark";

/**
 * The request's D1 session (D1 Sessions API): reads of GET requests may be served by a replica,
 * other methods start at the primary; a bookmark from an earlier response (X-D1-Bookmark) makes
 * this request see at least what that one wrote. The session's bookmark goes back out in the
 * same header (see requestContext).
 */
function d1Session(c: AppContext): D1DatabaseSession | undefined {
  if (typeof c.env.DB.withSession !== "function") return undefined;
  const given = c.req.header(BOOKMARK_HEADER);
  const start = c.req.method === "GET" ? "first-unconstrained" : "first-primary";
  let session: D1DatabaseSession;
  try {
    session = c.env.DB.withSession(given && SANE_BOOKMARK.test(given) ? given : start);
  } catch {
    // A bookmark D1 does not accept is ignored rather than failing the request.
    session = c.env.DB.withSession(start);
  }
  c.set("d1Session", session);
  return session;
}

/** The request's Deps, built once (throws 503 config_invalid when configuration is broken). */
export function deps(c: AppContext): Promise<Deps> {
  let d = depsCache.get(c.req.raw);
  if (!d) {
    const defer = (p: Promise<unknown>) => c.executionCtx.waitUntil(p.catch((e) => console.error("deferred", e)));
    d = makeDeps(c.env, c.get("now"), defer, d1Session(c));
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
