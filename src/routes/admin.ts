import { OpenAPIHono, type RouteHandler, z } from "@hono/zod-openapi";
import type { AppEnv } from "../context";
import { adminAccess, adminOnly } from "../middleware/admin";
import { deps } from "../middleware/auth";
import { Domain, Roles, UserSchema } from "../schemas";
import { listUsers, setRoles, setStatus } from "../services/admin";
import { toUser } from "../services/users";
import { bearerAuth, json, jsonBody, route } from "./define";

const ListQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().max(512).optional(),
  q: z.string().trim().min(1).max(254).optional().openapi({ description: "prefix of email, name or phone" }),
  domain: Domain.optional(),
  status: z.enum(["active", "pending", "disabled"]).optional(),
});

const IdParam = z.object({ id: z.string().min(1).max(64) });
const RolesBody = z.object({ roles: Roles }).openapi("RolesUpdate");

/** POST /v1/users/{id}/activate and /deactivate: an admin, or an authority token of the user's domain. */
function statusRoute(action: "activate" | "deactivate", status: "active" | "disabled", summary: string) {
  const definition = route({
    method: "post",
    path: `/v1/users/{id}/${action}`,
    operationId: `${action}User`,
    errors: ["forbidden", "not_found", "last_admin", "user_not_found"],
    tags: ["admin"],
    summary,
    security: bearerAuth,
    middleware: [adminAccess({ authority: true })] as const,
    request: { params: IdParam },
    responses: { 200: json("The user", UserSchema) },
  });
  const handler: RouteHandler<typeof definition, AppEnv> = async (c) => {
    const { id } = c.req.valid("param");
    const d = await deps(c);
    const principal = c.get("principal");
    const user = await setStatus(d, c.get("realm"), id, status, principal);
    d.audit({ type: `user_${action}d`, realm: c.get("realm"), userId: id, detail: { by: principal.kind } });
    return c.json(toUser(user), 200);
  };
  return [definition, handler] as const;
}

/** Administration of users (docs/api.md §6): listing, approval, deactivation, roles. */
export const admin = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "get",
      path: "/v1/users",
      operationId: "listUsers",
      errors: ["forbidden", "user_not_found"],
      tags: ["admin"],
      summary: "List users (admin, or an authority token of the domain)",
      description: "Cursor pagination, oldest first; stays correct while users are added and deleted between pages.",
      security: bearerAuth,
      middleware: [adminAccess({ authority: true })] as const,
      request: { query: ListQuerySchema },
      responses: {
        200: json("A page", z.object({ users: z.array(UserSchema), next_cursor: z.string().nullable() })),
      },
    }),
    async (c) => {
      const query = c.req.valid("query");
      return c.json(await listUsers(await deps(c), c.get("realm"), query, c.get("principal")), 200);
    },
  )
  .openapi(...statusRoute("activate", "active", "Activate a user (approve a pending one)"))
  .openapi(...statusRoute("deactivate", "disabled", "Deactivate a user; every session ends at once"))
  .openapi(
    route({
      method: "put",
      path: "/v1/users/{id}/roles",
      operationId: "setUserRoles",
      errors: ["forbidden", "not_found", "last_admin", "user_not_found"],
      tags: ["admin"],
      summary: "Replace a user's roles; never leaves the realm without an admin",
      security: bearerAuth,
      middleware: [adminOnly] as const,
      request: { params: IdParam, ...jsonBody(RolesBody) },
      responses: { 200: json("The user", UserSchema) },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const { roles } = c.req.valid("json");
      const d = await deps(c);
      const user = await setRoles(d, c.get("realm"), id, roles);
      d.audit({ type: "roles_changed", realm: c.get("realm"), userId: id, detail: { roles: user.roles } });
      return c.json(toUser(user), 200);
    },
  );
