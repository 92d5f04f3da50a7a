import type { Context, MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import { type AppEnv, clientIp } from "../context";
import { ApiError } from "../errors";
import { BOOKMARK_HEADER } from "./deps";
import { serves } from "./known-routes";

const utf8Decoder = new TextDecoder();

const MAX_BODY_BYTES = 16 * 1024;
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const JSON_TYPE = /^application\/([\w.-]+\+)?json$/i;

/**
 * Request id (the caller's when sane, else new), request time, and headers every response carries.
 * The headers are set before the route answers: Hono builds the route's response (an error's too)
 * with them, and a route may still replace Content-Security-Policy or Cache-Control. Set on the
 * finished response instead, each c.header() would copy the whole Response.
 */
export const requestContext: MiddlewareHandler<AppEnv> = async (c, next) => {
  const given = c.req.header("X-Request-Id");
  const requestId = given && SANE_REQUEST_ID.test(given) ? given : crypto.randomUUID();
  c.set("requestId", requestId);
  const started = Date.now();
  c.set("now", started);
  c.header("X-Request-Id", requestId);
  c.header("X-Content-Type-Options", "nosniff");
  c.header("Referrer-Policy", "no-referrer");
  c.header("X-Frame-Options", "DENY");
  c.header("Strict-Transport-Security", "max-age=31536000; includeSubDomains");
  c.header("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'");
  // Tokens and personal data must never sit in a shared or browser cache.
  c.header("Cache-Control", "no-store");
  await next();
  const bookmark = c.get("d1Session")?.getBookmark();
  if (bookmark) setOnAnswer(c, BOOKMARK_HEADER, bookmark);
  logRequest(c, started);
};

/** Sets a header on the finished response in place; a response with immutable headers is copied. */
function setOnAnswer(c: Context<AppEnv>, name: string, value: string): void {
  try {
    c.res.headers.set(name, value);
  } catch {
    c.header(name, value);
  }
}

/**
 * One JSON line per request: ids, route pattern, status, duration, who and where. Never a
 * header, body, token or query string (those can hold secrets); the route is the pattern, not
 * the path, so ids in paths stay out as well.
 */
function logRequest(c: Context<AppEnv>, started: number): void {
  const claims = c.get("claims");
  const principal = c.get("principal");
  const cf = (c.req.raw as { cf?: { colo?: unknown } }).cf;
  console.log(
    JSON.stringify({
      level: "info",
      event: "request",
      request_id: c.get("requestId"),
      method: c.req.method,
      // After next(), routeIndex is that of the handler that answered.
      route: routePath(c),
      status: c.res.status,
      duration_ms: Date.now() - started,
      realm: c.get("realm") ?? null,
      user_id: claims?.sub ?? (principal?.kind === "admin" ? principal.userId : null),
      device_id: claims?.did ?? null,
      ip: clientIp(c),
      colo: typeof cf?.colo === "string" ? cf.colo : null,
    }),
  );
}

/**
 * JSON bodies (docs/api.md §1): non-JSON content type 415, more than 16 KiB 413 (counted while
 * streaming, so a missing or lying Content-Length does not help), unparsable 400 invalid_json.
 * The parsed body is cached on the request for the route's validator. An empty body reads as {}.
 * Only for a route that exists: an unknown path is 404 and a wrong method 405, whatever the body.
 */
export const jsonBody: MiddlewareHandler<AppEnv> = async (c, next) => {
  const method = c.req.method;
  if (method !== "POST" && method !== "PUT" && method !== "PATCH" && method !== "DELETE") return next();
  // c.req.path is the path the router sees (realm prefix taken off, see app.ts).
  if (!serves(c.req.path, method)) return next();
  const declared = Number(c.req.header("Content-Length") ?? "0");
  if (declared > MAX_BODY_BYTES) throw new ApiError("payload_too_large");
  const bytes = await readCapped(c.req.raw.body, MAX_BODY_BYTES);
  if (bytes === null) throw new ApiError("payload_too_large");
  const mediaType = (c.req.header("Content-Type") ?? "").split(";")[0]?.trim() ?? "";
  let value: unknown = {};
  if (bytes.byteLength > 0) {
    if (!JSON_TYPE.test(mediaType)) throw new ApiError("unsupported_media_type");
    const text = utf8Decoder.decode(bytes);
    try {
      value = JSON.parse(text);
    } catch {
      throw new ApiError("invalid_json");
    }
  } else if (mediaType && !JSON_TYPE.test(mediaType)) {
    throw new ApiError("unsupported_media_type");
  }
  c.req.bodyCache.json = Promise.resolve(value);
  // The bytes as read, for anything that asks whether there was a body (the route's media-type gate).
  const cache = c.req.bodyCache as { arrayBuffer?: Promise<ArrayBuffer> };
  cache.arrayBuffer = Promise.resolve(bytes.buffer as ArrayBuffer);
  return next();
};

async function readCapped(body: ReadableStream<Uint8Array> | null, cap: number): Promise<Uint8Array | null> {
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > cap) {
      await reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

/** The allowed browser origins from CORS_ORIGINS (comma- or space-separated; `*` for any, without credentials). */
/** CORS_ORIGINS parsed once per isolate (per value: tests change it between runs). */
let parsedCors: { raw: string | undefined; any: boolean; list: Set<string> } | undefined;
function corsOrigins(raw: string | undefined): { any: boolean; list: Set<string> } {
  if (parsedCors && parsedCors.raw === raw) return parsedCors;
  const items = (raw ?? "").split(/[\s,]+/).filter(Boolean);
  const list = new Set(items.filter((o) => o !== "*").map((o) => o.replace(/\/$/, "")));
  parsedCors = { raw, any: items.includes("*"), list };
  return parsedCors;
}

/**
 * CORS for browser frontends: listed origins are echoed and may send credentials; with `*`
 * any origin may call without credentials (never `*` together with credentials); preflights
 * answer 204. Without CORS_ORIGINS no CORS headers are sent.
 */
export const cors: MiddlewareHandler<AppEnv> = async (c, next) => {
  const origin = c.req.header("Origin");
  const allowed = corsOrigins(c.env.CORS_ORIGINS);
  const listed = !!origin && allowed.list.has(origin);
  const allowOrigin = listed ? origin : allowed.any ? "*" : null;
  if (c.req.method === "OPTIONS" && c.req.header("Access-Control-Request-Method")) {
    if (!allowOrigin) return c.body(null, 204, { Vary: "Origin" });
    const headers: Record<string, string> = {
      "Access-Control-Allow-Origin": allowOrigin,
      "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
      "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-Id, X-D1-Bookmark",
      "Access-Control-Max-Age": "600",
      Vary: "Origin",
    };
    if (listed) headers["Access-Control-Allow-Credentials"] = "true";
    return c.body(null, 204, headers);
  }
  // Before the route answers, as in requestContext.
  if (allowOrigin) {
    c.header("Access-Control-Allow-Origin", allowOrigin);
    c.header("Access-Control-Expose-Headers", "X-Request-Id, Retry-After, WWW-Authenticate, X-D1-Bookmark");
    if (listed) c.header("Access-Control-Allow-Credentials", "true");
    c.header("Vary", "Origin", { append: true });
  }
  await next();
};
