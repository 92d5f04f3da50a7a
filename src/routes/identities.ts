import { OpenAPIHono, z } from "@hono/zod-openapi";
import { providerById, verifyIdToken } from "../auth-methods/oidc";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { auth, deps } from "../middleware/auth";
import { link } from "../services/identities";
import { requireUser } from "../services/users";
import { listIdentities, unlinkUnlessLast } from "../storage/identities";
import { bearerAuth, json, jsonBody, route } from "./define";
import { IdToken, Nonce, ProviderId } from "./oauth";

const LinkBody = z.object({ provider: ProviderId, id_token: IdToken, nonce: Nonce.optional() }).openapi("LinkIdentity");

export const IdentitySchema = z
  .object({ provider: z.string(), subject: z.string(), email: z.string().nullable(), created_at: z.string() })
  .openapi("Identity");

const toIdentity = (r: { provider: string; subject: string; email: string | null; createdAt: string }) => ({
  provider: r.provider,
  subject: r.subject,
  email: r.email,
  created_at: r.createdAt,
});

/** The identity provider accounts linked to the signed-in user (docs/api.md §13). */
export const identityRoutes = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "get",
      path: "/v1/users/me/identities",
      operationId: "listIdentities",
      errors: ["user_not_found", "account_disabled", "account_pending"],
      tags: ["account"],
      summary: "The identity provider accounts linked to mine",
      security: bearerAuth,
      middleware: [auth()] as const,
      responses: { 200: json("Linked identities", z.object({ identities: z.array(IdentitySchema) })) },
    }),
    async (c) => {
      const claims = c.get("claims");
      const d = await deps(c);
      const user = await requireUser(d, claims.realm, claims.sub);
      return c.json({ identities: (await listIdentities(d.db, user.id)).map(toIdentity) }, 200);
    },
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/users/me/identities",
      operationId: "linkIdentity",
      errors: [
        "fresh_token_required",
        "identity_in_use",
        "provider_unavailable",
        "user_not_found",
        "account_disabled",
        "account_pending",
      ],
      tags: ["account"],
      summary: "Link an identity provider account (fresh token)",
      description:
        "The ID token is checked as for POST /v1/tokens/oidc. An identity linked to another account, or a second one of the same provider: 409 identity_in_use.",
      security: bearerAuth,
      middleware: [auth({ fresh: true })] as const,
      request: jsonBody(LinkBody),
      responses: { 201: json("Linked", IdentitySchema) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const claims = c.get("claims");
      const d = await deps(c);
      const user = await requireUser(d, claims.realm, claims.sub);
      const ident = await verifyIdToken(d, claims.realm, providerById(d, body.provider), body.id_token, body.nonce);
      const row = await link(d, user.id, claims.realm, ident);
      d.audit({
        type: "identity_linked",
        realm: claims.realm,
        userId: user.id,
        deviceId: claims.did,
        detail: { provider: ident.provider },
      });
      return c.json(toIdentity(row), 201);
    },
  )
  .openapi(
    route({
      method: "delete",
      path: "/v1/users/me/identities/{provider}",
      operationId: "unlinkIdentity",
      errors: [
        "fresh_token_required",
        "last_credential",
        "not_found",
        "user_not_found",
        "account_disabled",
        "account_pending",
      ],
      tags: ["account"],
      summary: "Unlink an identity provider account (fresh token)",
      description:
        "409 last_credential when it is the account's only way in (no password, phone number or other identity).",
      security: bearerAuth,
      middleware: [auth({ fresh: true })] as const,
      request: { params: z.object({ provider: ProviderId }) },
      responses: { 204: { description: "Unlinked" } },
    }),
    async (c) => {
      const { provider } = c.req.valid("param");
      const claims = c.get("claims");
      const d = await deps(c);
      const user = await requireUser(d, claims.realm, claims.sub);
      if (!(await unlinkUnlessLast(d.db, user.id, provider))) {
        const has = (await listIdentities(d.db, user.id)).some((i) => i.provider === provider);
        if (has) throw new ApiError("last_credential");
        throw new ApiError("not_found", "No identity of this provider is linked");
      }
      d.audit({
        type: "identity_unlinked",
        realm: claims.realm,
        userId: user.id,
        deviceId: claims.did,
        detail: { provider },
      });
      return c.body(null, 204);
    },
  );
