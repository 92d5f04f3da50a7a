import { OpenAPIHono, z } from "@hono/zod-openapi";
import { and, asc, eq } from "drizzle-orm";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { adminOnly } from "../middleware/admin";
import { auth, deps } from "../middleware/auth";
import { Domain, DomainRuleBody, DomainRuleSchema } from "../schemas";
import { domainRules } from "../storage/schema";
import { bearerAuth, json, jsonBody, route } from "./define";

const DomainParam = z.object({ domain: Domain });

/** Domain rules (api.md §6). Changing a rule never touches existing users. */
export const domains = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "get",
      path: "/v1/domains",
      tags: ["domains"],
      summary: "List the realm's domain rules",
      security: bearerAuth,
      middleware: [auth(), adminOnly] as const,
      responses: { 200: json("Rules", z.object({ rules: z.array(DomainRuleSchema) })) },
    }),
    async (c) => {
      const d = await deps(c);
      const rows = await d.db
        .select()
        .from(domainRules)
        .where(eq(domainRules.realm, c.get("realm")))
        .orderBy(asc(domainRules.domain));
      return c.json({ rules: rows.map((r) => ({ domain: r.domain, rule: r.rule, created_at: r.createdAt })) }, 200);
    },
  )
  .openapi(
    route({
      method: "put",
      path: "/v1/domains/{domain}",
      tags: ["domains"],
      summary: "Allow or block an email domain (and its subdomains)",
      security: bearerAuth,
      middleware: [auth(), adminOnly] as const,
      request: { params: DomainParam, ...jsonBody(DomainRuleBody) },
      responses: { 200: json("The rule", DomainRuleSchema) },
    }),
    async (c) => {
      const { domain } = c.req.valid("param");
      const { rule } = c.req.valid("json");
      const d = await deps(c);
      const createdAt = new Date(d.now).toISOString();
      const [row] = await d.db
        .insert(domainRules)
        .values({ realm: c.get("realm"), domain, rule, createdAt })
        .onConflictDoUpdate({ target: [domainRules.realm, domainRules.domain], set: { rule } })
        .returning();
      if (!row) throw new Error("upsert returned no row");
      return c.json({ domain: row.domain, rule: row.rule, created_at: row.createdAt }, 200);
    },
  )
  .openapi(
    route({
      method: "delete",
      path: "/v1/domains/{domain}",
      tags: ["domains"],
      summary: "Remove a domain rule",
      security: bearerAuth,
      middleware: [auth(), adminOnly] as const,
      request: { params: DomainParam },
      responses: { 204: { description: "Removed" } },
    }),
    async (c) => {
      const { domain } = c.req.valid("param");
      const d = await deps(c);
      const gone = await d.db
        .delete(domainRules)
        .where(and(eq(domainRules.realm, c.get("realm")), eq(domainRules.domain, domain)))
        .returning({ domain: domainRules.domain });
      if (!gone.length) throw new ApiError("not_found", "No rule for this domain");
      return c.body(null, 204);
    },
  );
