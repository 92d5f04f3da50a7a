import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { getPath } from "hono/utils/url";
import { loadConfig } from "./config";
import type { AppEnv } from "./context";
import { ApiError, errorBody, isTransientStoreError, REJECTED_TOKEN_CODES } from "./errors";
import { limitedRoutes } from "./middleware/known-routes";
import { ipLimit } from "./middleware/limits";
import { realmContext, routedPath } from "./middleware/realm";
import { cors, jsonBody, requestContext } from "./middleware/request";
import { account } from "./routes/account";
import { admin } from "./routes/admin";
import { auditTrail } from "./routes/audit";
import { knownRoutes, methodsFor } from "./routes/define";
import { devices } from "./routes/devices";
import { renderDocs } from "./routes/docs";
import { domains } from "./routes/domains";
import { identityRoutes } from "./routes/identities";
import { meta } from "./routes/meta";
import { mfa } from "./routes/mfa";
import { oauthRoutes } from "./routes/oauth";
import { finishDocument, registerDocumentParts } from "./routes/openapi";
import { otp } from "./routes/otp";
import { passkeys } from "./routes/passkeys";
import { realms } from "./routes/realms";
import { tokens } from "./routes/tokens";
import { users } from "./routes/users";
import { verification } from "./routes/verification";

function validationFields(issues: { path: PropertyKey[]; message: string }[]): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const issue of issues) {
    const key = issue.path.map(String).join(".") || "body";
    fields[key] ??= issue.message;
  }
  return fields;
}

/** Builds the Hono app: middleware, routes, 404/405 and the single onError. */
export function buildApp() {
  const app = new OpenAPIHono<AppEnv>({
    getPath: (req) => routedPath(getPath(req)),
    defaultHook: (result) => {
      if (!result.success) {
        throw new ApiError("validation_failed", undefined, { fields: validationFields(result.error.issues) });
      }
    },
  });

  app.use("*", requestContext, cors);
  app.use("/v1/*", realmContext);
  // Each limited route declared its limiter (route({ limit })); it runs before the body is read.
  for (const { method, path, limiter } of limitedRoutes) app.on(method, path, ipLimit(limiter));
  app.use("/v1/*", jsonBody);

  // account before users: its fixed paths (/v1/users/reset, /v1/users/me/...) win over {id} patterns.
  // The chain's type carries every route, for Hono's typed client (`hc<AppType>`).
  const routes = app
    .route("/", meta)
    .route("/", tokens)
    .route("/", oauthRoutes)
    .route("/", identityRoutes)
    .route("/", account)
    .route("/", mfa)
    .route("/", passkeys)
    .route("/", verification)
    .route("/", admin)
    .route("/", users)
    .route("/", devices)
    .route("/", domains)
    .route("/", realms)
    .route("/", otp)
    .route("/", auditTrail);

  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
  });
  registerDocumentParts(app);
  const docConfig = {
    openapi: "3.1.0",
    info: {
      title: "user-registry",
      version: "1.1.0",
      description:
        "User registry and authentication API. Every /v1 route also answers under /v1/realms/{realm}/...; plain /v1 is realm `default`.",
    },
  };
  // Built once per issuer (the document names it in `servers`).
  const documents = new Map<string, ReturnType<typeof app.getOpenAPI31Document>>();
  const document = (c: Context<AppEnv>) => {
    const loaded = loadConfig(c.env);
    const issuer = loaded.ok ? loaded.config.ISSUER : "";
    let doc = documents.get(issuer);
    if (!doc) {
      doc = finishDocument(app.getOpenAPI31Document(docConfig), issuer || undefined);
      documents.set(issuer, doc);
    }
    return doc;
  };
  app.get("/openapi.json", (c) => {
    c.header("Cache-Control", "public, max-age=300");
    return c.json(document(c));
  });
  // Not declared with route(), so listed by hand: a wrong method on them is 405, not 404.
  knownRoutes.push({ method: "GET", pattern: /^\/openapi\.json$/ }, { method: "GET", pattern: /^\/docs$/ });
  app.get("/docs", (c) => {
    c.header("Cache-Control", "public, max-age=300");
    c.header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'");
    return c.html(renderDocs(document(c) as Parameters<typeof renderDocs>[0]));
  });

  app.notFound((c) => {
    // The path as the router saw it: realm prefix taken off, percent-escapes decoded.
    const allowed = methodsFor(c.req.path);
    if (allowed.length) {
      c.header("Allow", [...new Set(allowed)].join(", "));
      return c.json(errorBody("method_not_allowed"), 405);
    }
    return c.json(errorBody("not_found"), 404);
  });

  app.onError((err, c) => {
    if (err instanceof ApiError) {
      if (err.headers) for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
      if (err.status === 401) {
        // RFC 6750: error="invalid_token" only when a presented token was rejected.
        c.header(
          "WWW-Authenticate",
          REJECTED_TOKEN_CODES.has(err.code)
            ? `Bearer realm="user-registry", error="invalid_token", error_description="${err.code}"`
            : 'Bearer realm="user-registry"',
        );
      }
      if (err.status >= 500)
        console.error(
          JSON.stringify({ level: "error", request_id: c.get("requestId"), code: err.code, message: err.message }),
        );
      return c.json({ ...errorBody(err.code, err.message, err.fields), ...err.body }, err.status as 400);
    }
    if (err instanceof HTTPException) {
      const code =
        err.status === 415 ? "unsupported_media_type" : err.status === 413 ? "payload_too_large" : "invalid_json";
      return c.json(errorBody(code), err.status === 415 || err.status === 413 ? err.status : 400);
    }
    // A store that could not be reached: nothing was committed by this step, and a retry may work.
    if (isTransientStoreError(err)) {
      console.error(
        JSON.stringify({
          level: "error",
          request_id: c.get("requestId"),
          code: "temporarily_unavailable",
          path: new URL(c.req.url).pathname,
          error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
        }),
      );
      c.header("Retry-After", "1");
      return c.json(errorBody("temporarily_unavailable"), 503);
    }
    // Unexpected: log everything we know (never secrets: the error carries no request data), answer nothing internal.
    console.error(
      JSON.stringify({
        level: "error",
        request_id: c.get("requestId"),
        path: new URL(c.req.url).pathname,
        error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
        stack: err instanceof Error ? err.stack : undefined,
      }),
    );
    return c.json(errorBody("internal_error"), 500);
  });

  return routes;
}

export type App = ReturnType<typeof buildApp>;
