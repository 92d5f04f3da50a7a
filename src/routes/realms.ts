import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { adminOnly } from "../middleware/admin";
import { deps } from "../middleware/auth";
import { Timestamp } from "../schemas";
import { listRealms, putRealm } from "../services/realms";
import { REALM_ID } from "../storage/realms";
import type { RealmRow } from "../storage/schema";
import { iso } from "../time";
import { bearerAuth, json, jsonBody, route } from "./define";

const RealmSchema = z
  .object({
    id: z.string(),
    registration: z.enum(["open", "allowlist", "closed"]),
    approval_required: z.boolean(),
    captcha_required: z.boolean(),
    admin_mfa_required: z.boolean(),
    email_verification: z.enum(["optional", "required"]).openapi({
      description:
        "`required`: a correct password on an unverified account answers 403 email_unverified, and an email change waits for its code. An allowlist realm always requires verification, whatever this says.",
    }),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .openapi("Realm");

const RealmBody = z
  .object({
    registration: z.enum(["open", "allowlist", "closed"]),
    approval_required: z.boolean(),
    captcha_required: z.boolean(),
    admin_mfa_required: z.boolean().optional().openapi({
      description:
        "Admin routes refuse access tokens without `mfa` in `amr` (403 mfa_required). Unchanged when left out.",
    }),
    email_verification: z
      .enum(["optional", "required"])
      .optional()
      .openapi({ description: "Default `optional` for a new realm; left as it is when omitted" }),
  })
  .openapi("RealmSettings");

const toRealm = (r: RealmRow) => ({
  id: r.id,
  registration: r.registration,
  approval_required: r.approvalRequired,
  captcha_required: r.captchaRequired,
  admin_mfa_required: r.adminMfaRequired,
  email_verification: r.emailVerification,
  created_at: r.createdAt,
  updated_at: r.updatedAt,
});

/** Only admins of realm `default` create realms and change their settings (docs/api.md §6). */
const defaultRealmOnly: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.get("realm") !== "default") throw new ApiError("forbidden", "Only admins of realm default manage realms");
  await next();
};

export const realms = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "get",
      path: "/v1/realms",
      operationId: "listRealms",
      errors: ["forbidden", "user_not_found"],
      tags: ["realms"],
      summary: "List realms (admins of realm default)",
      security: bearerAuth,
      middleware: [adminOnly, defaultRealmOnly] as const,
      responses: { 200: json("Realms", z.object({ realms: z.array(RealmSchema) })) },
    }),
    async (c) => {
      const d = await deps(c);
      const rows = await listRealms(d);
      return c.json({ realms: rows.map(toRealm) }, 200);
    },
  )
  .openapi(
    route({
      method: "put",
      path: "/v1/realms/{realm}",
      operationId: "putRealm",
      errors: ["forbidden", "user_not_found"],
      tags: ["realms"],
      summary: "Create a realm or change its settings (admins of realm default)",
      security: bearerAuth,
      middleware: [adminOnly, defaultRealmOnly] as const,
      request: {
        params: z.object({
          realm: z.string().regex(REALM_ID, { error: "must be 1-32 characters of a-z, 0-9 and -" }),
        }),
        ...jsonBody(RealmBody),
      },
      responses: { 200: json("The realm", RealmSchema) },
    }),
    async (c) => {
      const { realm } = c.req.valid("param");
      const body = c.req.valid("json");
      const d = await deps(c);
      const now = iso(d.now);
      const settings = {
        registration: body.registration,
        approvalRequired: body.approval_required,
        captchaRequired: body.captcha_required,
        ...(body.admin_mfa_required === undefined ? {} : { adminMfaRequired: body.admin_mfa_required }),
        ...(body.email_verification ? { emailVerification: body.email_verification } : {}),
        updatedAt: now,
      };
      const row = await putRealm(d, realm, settings);
      d.audit({ type: "realm_updated", realm, userId: c.get("claims").sub, detail: body });
      return c.json(toRealm(row), 200);
    },
  );
