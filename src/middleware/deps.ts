import type { AppContext } from "../context";
import { clientIp } from "../context";
import { type Actor, type AuditOrigin, auditEntry, recordAudit } from "../services/audit";
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

/** The actor of a request as the middleware authenticated it (read when the event is recorded). */
export function requestActor(c: AppContext): Actor {
  const principal = c.get("principal");
  if (principal?.kind === "admin") return { kind: "admin", id: principal.userId };
  if (principal?.kind === "authority") return { kind: "authority", id: principal.tokenId };
  const claims = c.get("claims");
  return { kind: "user", id: claims?.sub ?? null };
}

/** Where a request's audit events come from: its IP, request id and authenticated actor. */
const requestOrigin = (c: AppContext): AuditOrigin => ({
  ip: clientIp(c),
  requestId: c.get("requestId") ?? null,
  actor: requestActor(c),
});

/**
 * The request's Deps, built once (throws 503 config_invalid when configuration is broken). Its
 * `audit` records events with this request's origin, so no service needs Hono's context.
 */
export function deps(c: AppContext): Promise<Deps> {
  let d = depsCache.get(c.req.raw);
  if (!d) {
    const defer = (p: Promise<unknown>) => c.executionCtx.waitUntil(p.catch((e) => console.error("deferred", e)));
    d = makeDeps(c.env, c.get("now"), defer, d1Session(c)).then((built) => {
      built.audit = (e) => recordAudit(built, requestOrigin(c), e);
      built.auditEntry = (e) => auditEntry(built.now, requestOrigin(c), e);
      return built;
    });
    depsCache.set(c.req.raw, d);
  }
  return d;
}
