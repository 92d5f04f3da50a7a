import { createRoute, type RouteConfig, type z } from "@hono/zod-openapi";
import { ERRORS, type ErrorCode } from "../errors";
import { knownRoutes, limitedRoutes } from "../middleware/known-routes";
import type { Limiter } from "../middleware/limits";

export { knownRoutes, methodsFor, serves } from "../middleware/known-routes";

/** No token is taken. */
export const noAuth = [] as const;
/** An optional token (a public token, or an admin's access token): RFC-style `[{}, {bearer: []}]`. */
export const optionalAuth = [{}, { bearer: [] }] as const;
/** An access token is required. */
export const bearerAuth = [{ bearer: [] }] as const;

type Security = typeof noAuth | typeof optionalAuth | typeof bearerAuth;

/**
 * What every route declares, on top of @hono/zod-openapi's RouteConfig: a unique `operationId`, a
 * `summary`, its `security` (one of the three above) and the error codes it answers itself. The
 * codes every route of its kind shares (a body's 400/413/415, a token's 401s, a limiter's 429,
 * 500, 503) are added by `route()`, so a route cannot be documented without its errors.
 */
export type RouteSpec = Omit<RouteConfig, "security" | "operationId" | "summary"> & {
  operationId: string;
  summary: string;
  security: Security;
  errors: readonly ErrorCode[];
  /** The per-IP limiter that guards this route (docs/api.md §10), if any. */
  limit?: Limiter;
};

const BODY_ERRORS: ErrorCode[] = ["validation_failed", "invalid_json", "payload_too_large", "unsupported_media_type"];
const TOKEN_ERRORS: ErrorCode[] = ["missing_token", "invalid_token", "token_expired", "token_revoked"];
const OPTIONAL_TOKEN_ERRORS: ErrorCode[] = ["invalid_token", "token_expired"];
const SERVER_ERRORS: ErrorCode[] = ["internal_error", "config_invalid", "temporarily_unavailable"];

const header = (description: string, format?: string) => ({
  description,
  schema: { type: "string" as const, ...(format ? { format } : {}) },
});

/** Response headers (docs/api.md §1, §2, §10). */
export const HEADERS = {
  "X-Request-Id": header("The caller's request id when it sent a sane one, else a new one"),
  "X-D1-Bookmark": header(
    "D1 session bookmark of what this answer read or wrote; send it back for read-your-writes (on /v1 answers that used D1)",
  ),
  "Retry-After": header("Seconds to wait before trying again"),
  "WWW-Authenticate": header(
    'RFC 6750 challenge: `Bearer realm="user-registry"`, with `error="invalid_token"` when a presented token was rejected',
  ),
};

const ref = (name: keyof typeof HEADERS) => ({ $ref: `#/components/headers/${name}` });

/** The headers a response of `status` on `path` carries (references to HEADERS, registered in openapi.ts). */
export function responseHeaders(path: string, status: number) {
  return {
    "X-Request-Id": ref("X-Request-Id"),
    ...(path.startsWith("/v1/") ? { "X-D1-Bookmark": ref("X-D1-Bookmark") } : {}),
    ...(status === 401 ? { "WWW-Authenticate": ref("WWW-Authenticate") } : {}),
    ...(status === 429 ? { "Retry-After": ref("Retry-After") } : {}),
  };
}

/** The error response for these codes (all of one status), with the codes enumerated (plain JSON Schema). */
export function errorResponse(codes: readonly string[]) {
  const list = [...new Set(codes)].sort();
  return {
    description: list.map((c) => `\`${c}\``).join(", "),
    content: {
      "application/json": {
        schema: {
          type: "object" as const,
          required: ["error"],
          properties: {
            error: {
              type: "object" as const,
              required: ["code", "message"],
              properties: {
                code: { type: "string" as const, enum: list },
                message: { type: "string" as const },
                fields: {
                  type: "object" as const,
                  additionalProperties: { type: "string" as const },
                  description: "Only on validation_failed: each field's path and what is wrong with it",
                },
              },
            },
          },
        },
      },
    },
  };
}

/** Every error code a route can answer: its own and those its kind shares. */
export function routeErrors(config: RouteSpec): ErrorCode[] {
  const codes: ErrorCode[] = [...config.errors, ...SERVER_ERRORS];
  if (config.request?.body) codes.push(...BODY_ERRORS);
  if (config.request?.params || config.request?.query) codes.push("validation_failed");
  if (config.security === bearerAuth) codes.push(...TOKEN_ERRORS);
  if (config.security === optionalAuth) codes.push(...OPTIONAL_TOKEN_ERRORS);
  if (config.limit) codes.push("too_many_attempts");
  return codes;
}

/**
 * createRoute that also records the route for 405 answers, and documents its error responses
 * (grouped by status, codes enumerated) and response headers.
 */
export function route<const R extends RouteSpec>(config: R) {
  if (knownRoutes.some((r) => r.method === config.method.toUpperCase() && r.pattern.test(config.path))) {
    throw new Error(`route ${config.method} ${config.path} is defined twice`);
  }
  knownRoutes.push({
    method: config.method.toUpperCase(),
    // Exactly the path the router serves (it is strict about a trailing slash), literal dots included.
    pattern: new RegExp(
      `^${config.path
        .split(/\{[^}]+\}/)
        .map((part) => part.replace(/[.*+?^$()|[\]\\]/g, "\\$&"))
        .join("[^/]+")}$`,
    ),
  });
  if (config.limit) {
    if (config.path.includes("{")) throw new Error(`route ${config.path}: a limited path has no parameters`);
    limitedRoutes.push({ method: config.method.toUpperCase(), path: config.path, limiter: config.limit });
  }
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of routeErrors(config)) {
    const status = ERRORS[code][0];
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const responses: Record<string, object> = {};
  for (const [status, r] of Object.entries(config.responses)) {
    responses[status] = {
      ...r,
      headers: { ...responseHeaders(config.path, Number(status)), ...(r as { headers?: object }).headers },
    };
  }
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    if (responses[status]) continue; // a route's own description of that status wins
    responses[status] = { ...errorResponse(codes), headers: responseHeaders(config.path, status) };
  }
  const { errors: _errors, limit: _limit, ...rest } = config;
  return createRoute({
    ...rest,
    security: [...config.security] as RouteConfig["security"],
    responses: responses as R["responses"],
  });
}

/** A JSON request body; required unless `{}` is valid (an empty body reads as `{}`, see middleware/request.ts). */
export const jsonBody = <T extends z.ZodType>(schema: T) => ({
  body: { required: !schema.safeParse({}).success, content: { "application/json": { schema } } },
});

/** A JSON response. */
export const json = <T extends z.ZodType>(description: string, schema: T) => ({
  description,
  content: { "application/json": { schema } },
});
