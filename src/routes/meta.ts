import { OpenAPIHono, z } from "@hono/zod-openapi";
import { loadConfig } from "../config";
import type { AppContext, AppEnv } from "../context";
import { ApiError, errorBody } from "../errors";
import { deps } from "../middleware/auth";
import { json, noAuth, route } from "./define";

const JwksSchema = z
  .object({
    keys: z.array(
      z.object({
        kty: z.string(),
        crv: z.string(),
        x: z.string(),
        y: z.string(),
        kid: z.string(),
        alg: z.string(),
        use: z.string(),
      }),
    ),
  })
  .openapi("JWKS");

const MetadataSchema = z
  .object({
    issuer: z.url().openapi({ description: "Equal to the `iss` of every token" }),
    jwks_uri: z.url(),
    service_documentation: z.url(),
  })
  .openapi("ServerMetadata");

/**
 * Discovery metadata (api.md §14): the same few fields under both names, and only fields that are
 * true of this service. It has no OAuth authorization or token endpoint (logins are JSON calls of
 * its own), so none is claimed; libraries that start from an issuer URL need `issuer` and `jwks_uri`.
 */
const metadata = async (c: AppContext) => {
  const { config } = await deps(c);
  const issuer = config.ISSUER.replace(/\/+$/, "");
  c.header("Cache-Control", "public, max-age=3600");
  return c.json(
    { issuer: config.ISSUER, jwks_uri: `${issuer}/.well-known/jwks.json`, service_documentation: `${issuer}/docs` },
    200,
  );
};

export const meta = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "get",
      path: "/health",
      operationId: "getHealth",
      security: noAuth,
      errors: [],
      tags: ["meta"],
      summary: "Health: 503 naming the problem when configuration is missing or invalid",
      responses: {
        200: json("Healthy", z.object({ status: z.literal("ok") })),
        503: json(
          "Misconfigured",
          z.object({
            error: z.object({ code: z.string(), message: z.string() }),
            status: z.literal("misconfigured"),
            problems: z.array(z.string()),
          }),
        ),
      },
    }),
    async (c) => {
      const loaded = loadConfig(c.env);
      let problems = loaded.ok ? [] : loaded.problems;
      if (loaded.ok) {
        // The keys must import, too.
        await deps(c).catch((e: unknown) => {
          problems = [e instanceof ApiError ? e.message : "the configuration could not be loaded"];
        });
      }
      if (problems.length) {
        const body = errorBody("config_invalid", `The service is not configured: ${problems.join("; ")}`);
        return c.json({ ...body, status: "misconfigured" as const, problems }, 503);
      }
      return c.json({ status: "ok" as const }, 200);
    },
  )
  .openapi(
    route({
      method: "get",
      path: "/.well-known/jwks.json",
      operationId: "getJwks",
      security: noAuth,
      errors: [],
      tags: ["meta"],
      summary: "The public keys that verify this service's tokens",
      responses: { 200: json("JWKS", JwksSchema) },
    }),
    async (c) => {
      const d = await deps(c);
      c.header("Cache-Control", "public, max-age=300");
      return c.json(d.keys.jwks, 200);
    },
  )
  .openapi(
    route({
      method: "get",
      path: "/.well-known/openid-configuration",
      operationId: "getOpenIdConfiguration",
      security: noAuth,
      errors: [],
      tags: ["meta"],
      summary: "Issuer metadata (OpenID Connect Discovery): issuer and jwks_uri",
      responses: { 200: json("Metadata", MetadataSchema) },
    }),
    (c) => metadata(c),
  )
  .openapi(
    route({
      method: "get",
      path: "/.well-known/oauth-authorization-server",
      operationId: "getAuthorizationServerMetadata",
      security: noAuth,
      errors: [],
      tags: ["meta"],
      summary: "Issuer metadata (RFC 8414): issuer and jwks_uri",
      responses: { 200: json("Metadata", MetadataSchema) },
    }),
    (c) => metadata(c),
  );
