import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { adminAccess, adminOnly } from "../middleware/admin";
import { deps } from "../middleware/auth";
import { Domain, DomainRuleBody, DomainRuleSchema, Timestamp } from "../schemas";
import { createAuthorityToken, revokeAuthorityToken } from "../services/authority";
import { listDomainRules, removeDomainRule, setDomainRule } from "../services/domains";
import { bearerAuth, json, jsonBody, route } from "./define";

const DomainParam = z.object({ domain: Domain });

const AuthorityTokenBody = z
  .object({ expires_in_days: z.number().int().min(1).max(365).optional() })
  .openapi("AuthorityTokenRequest");
const AuthorityTokenSchema = z
  .object({ id: z.string(), token: z.string(), domain: z.string(), expires_at: Timestamp })
  .openapi("AuthorityToken");

/** Domain rules (docs/api.md §6). Changing a rule never touches existing users. */
export const domains = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "get",
      path: "/v1/domains",
      operationId: "listDomainRules",
      errors: ["forbidden", "user_not_found"],
      tags: ["domains"],
      summary: "List the realm's domain rules",
      security: bearerAuth,
      middleware: [adminOnly] as const,
      responses: { 200: json("Rules", z.object({ rules: z.array(DomainRuleSchema) })) },
    }),
    async (c) => {
      const d = await deps(c);
      return c.json({ rules: await listDomainRules(d, c.get("realm")) }, 200);
    },
  )
  .openapi(
    route({
      method: "put",
      path: "/v1/domains/{domain}",
      operationId: "setDomainRule",
      errors: ["forbidden", "user_not_found"],
      tags: ["domains"],
      summary: "Allow or block an email domain (and its subdomains)",
      security: bearerAuth,
      middleware: [adminOnly] as const,
      request: { params: DomainParam, ...jsonBody(DomainRuleBody) },
      responses: { 200: json("The rule", DomainRuleSchema) },
    }),
    async (c) => {
      const { domain } = c.req.valid("param");
      const { rule } = c.req.valid("json");
      const d = await deps(c);
      return c.json(await setDomainRule(d, c.get("realm"), domain, rule), 200);
    },
  )
  .openapi(
    route({
      method: "delete",
      path: "/v1/domains/{domain}",
      operationId: "deleteDomainRule",
      errors: ["forbidden", "not_found", "user_not_found"],
      tags: ["domains"],
      summary: "Remove a domain rule",
      security: bearerAuth,
      middleware: [adminOnly] as const,
      request: { params: DomainParam },
      responses: { 204: { description: "Removed" } },
    }),
    async (c) => {
      const { domain } = c.req.valid("param");
      const d = await deps(c);
      await removeDomainRule(d, c.get("realm"), domain);
      return c.body(null, 204);
    },
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/domains/{domain}/authority-token",
      operationId: "createAuthorityToken",
      errors: ["forbidden", "fresh_token_required", "user_not_found"],
      tags: ["domains"],
      summary: "Mint a token that manages this email domain's users (returned once)",
      description:
        "Its holder can list, activate and deactivate users whose email is in exactly this domain, and nothing else. Needs an admin's fresh token.",
      security: bearerAuth,
      middleware: [adminAccess({ fresh: true })] as const,
      request: { params: DomainParam, ...jsonBody(AuthorityTokenBody) },
      responses: { 201: json("The token (shown only now)", AuthorityTokenSchema) },
    }),
    async (c) => {
      const { domain } = c.req.valid("param");
      const body = c.req.valid("json");
      const principal = c.get("principal");
      const d = await deps(c);
      const createdBy = principal.kind === "admin" ? principal.userId : "";
      const created = await createAuthorityToken(d, c.get("realm"), domain, createdBy, body.expires_in_days ?? 90);
      d.audit({
        type: "authority_token_created",
        realm: c.get("realm"),
        userId: createdBy,
        detail: { domain, id: created.id },
      });
      return c.json(created, 201);
    },
  )
  .openapi(
    route({
      method: "delete",
      path: "/v1/domains/{domain}/authority-token/{id}",
      operationId: "revokeAuthorityToken",
      errors: ["forbidden", "not_found", "user_not_found"],
      tags: ["domains"],
      summary: "Revoke an authority token at once",
      security: bearerAuth,
      middleware: [adminOnly] as const,
      request: { params: DomainParam.extend({ id: z.string().max(64) }) },
      responses: { 204: { description: "Revoked" } },
    }),
    async (c) => {
      const { domain, id } = c.req.valid("param");
      const d = await deps(c);
      if (!(await revokeAuthorityToken(d, c.get("realm"), domain, id))) {
        throw new ApiError("not_found", "No live authority token with this id for this domain");
      }
      d.audit({ type: "authority_token_revoked", realm: c.get("realm"), detail: { domain, id } });
      return c.body(null, 204);
    },
  );
