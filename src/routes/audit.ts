import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../context";
import { adminOnly } from "../middleware/admin";
import { deps } from "../middleware/auth";
import { listAudit } from "../services/audit";
import { bearerAuth, json, route } from "./define";

const AuditQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().max(512).optional(),
  user_id: z.string().min(1).max(64).optional(),
  type: z
    .string()
    .regex(/^[a-z][a-z0-9_]{0,63}$/, "is not an event type")
    .optional(),
  since: z
    .string()
    .max(64)
    .refine((s) => !Number.isNaN(Date.parse(s)), "is not an ISO-8601 time")
    .transform((s) => new Date(Date.parse(s)).toISOString())
    .optional()
    .openapi({ description: "ISO-8601 time: events at or after it", example: "2026-11-01T00:00:00.000Z" }),
});

const ActorSchema = z
  .object({ kind: z.enum(["user", "admin", "authority", "system"]), id: z.string().nullable() })
  .openapi("AuditActor");

const AuditEventSchema = z
  .object({
    id: z.string(),
    at: z.string(),
    type: z.string(),
    realm: z.string(),
    user_id: z.string().nullable(),
    actor: ActorSchema,
    device_id: z.string().nullable(),
    ip: z.string().nullable(),
    detail: z.record(z.string(), z.unknown()).nullable(),
  })
  .openapi("AuditEvent");

/** The audit trail (api.md §15), for the realm's admins. */
export const auditTrail = new OpenAPIHono<AppEnv>().openapi(
  route({
    method: "get",
    path: "/v1/audit",
    operationId: "listAuditEvents",
    errors: ["forbidden", "user_not_found", "account_disabled", "account_pending"],
    tags: ["admin"],
    summary: "Read the realm's audit trail (admin)",
    description:
      "Newest first; cursor pagination as GET /v1/users (stays correct while events are added). `actor` says who acted: a user, an admin, an authority token (its id) or the system.",
    security: bearerAuth,
    middleware: [adminOnly] as const,
    request: { query: AuditQuerySchema },
    responses: {
      200: json("A page", z.object({ events: z.array(AuditEventSchema), next_cursor: z.string().nullable() })),
    },
  }),
  async (c) => {
    const query = c.req.valid("query");
    return c.json(await listAudit(await deps(c), c.get("realm"), query), 200);
  },
);
