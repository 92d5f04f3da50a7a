import type { MiddlewareHandler } from "hono";
import { getPath } from "hono/utils/url";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { realmExists } from "../services/realms";

/** `/v1/realms/{realm}/<rest>` is `/v1/<rest>` in that realm (docs/api.md §1). */
const REALM_PREFIX = /^\/v1\/realms\/([^/]+)(\/.+)$/;

/** The path the router sees: the realm prefix removed. */
export function routedPath(pathname: string): string {
  const m = REALM_PREFIX.exec(pathname);
  return m ? `/v1${m[2]}` : pathname;
}

/** The realm a path addresses; `default` for plain `/v1`. */
function realmOf(pathname: string): string {
  const m = REALM_PREFIX.exec(pathname);
  if (!m) return "default";
  try {
    return decodeURIComponent(m[1] as string);
  } catch {
    // A malformed escape (`%ZZ`, an encoded lone surrogate) names no realm: left as is, it fails REALM_ID (404).
    return m[1] as string;
  }
}

// Realms are created rarely; remembering that one exists for a few seconds saves a D1 read per request.
const known = new Map<string, number>();
const KNOWN_MS = 10_000;

/**
 * Sets `realm`; an unknown realm is 404 realm_not_found. The realm is read from the path as the
 * router decodes it (Hono's getPath), never from the raw URL: otherwise `/v1/%72ealms/b/...` would
 * be routed as realm b's route while judged as realm `default` (docs/api.md §16).
 */
export const realmContext: MiddlewareHandler<AppEnv> = async (c, next) => {
  const realm = realmOf(getPath(c.req.raw));
  c.set("realm", realm);
  if (realm !== "default") {
    const now = c.get("now");
    const seen = known.get(realm);
    if (!seen || now - seen > KNOWN_MS) {
      if (!(await realmExists(c.env.DB, realm))) throw new ApiError("realm_not_found");
      if (known.size > 1000) known.clear();
      known.set(realm, now);
    }
  }
  await next();
};
