import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { auth, deps } from "../middleware/auth";
import { publicDevice } from "../middleware/device";
import {
  EmailChangeBody,
  PasswordChangeBody,
  PendingEmailSchema,
  ResetCompleteBody,
  ResetRequestBody,
  UserPatchBody,
  UserSchema,
} from "../schemas";
import { changeEmail, changePassword, completeReset, deleteUser, requestReset, updateUser } from "../services/accounts";
import { selfActor } from "../services/audit";
import { toUser } from "../services/users";
import { bearerAuth, json, jsonBody, optionalAuth, route } from "./define";

const IdParam = z.object({
  id: z.string().min(1).max(64).openapi({ description: "A user id, or `me`" }),
});

const ROUTE_FOR: Record<string, string> = {
  email: "PUT /v1/users/me/email",
  password: "PUT /v1/users/me/password",
  password_confirmation: "PUT /v1/users/me/password",
  current_password: "PUT /v1/users/me/password",
};

/** PATCH never changes credentials: an email or password in the body is refused, naming the route that does. */
const refuseCredentialFields: MiddlewareHandler<AppEnv> = async (c, next) => {
  const body: unknown = await c.req.json().catch(() => null);
  if (body && typeof body === "object" && !Array.isArray(body)) {
    const fields: Record<string, string> = {};
    for (const key of Object.keys(body)) {
      const target = ROUTE_FOR[key];
      if (target) fields[key] = `cannot be changed here: use ${target}`;
    }
    const routes = [...new Set(Object.keys(fields).map((k) => ROUTE_FOR[k]))];
    if (routes.length) {
      throw new ApiError("validation_failed", `Use ${routes.join(" and ")} for this change`, { fields });
    }
  }
  await next();
};

/** Account management (docs/api.md §4): profile edits, email and password changes, deletion, reset codes. */
export const account = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "post",
      path: "/v1/users/reset",
      limit: "RL_RESET",
      operationId: "requestPasswordReset",
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      errors: ["delivery_unavailable"],
      tags: ["account"],
      summary: "Ask for a password reset code",
      description:
        "Always 202 with `{}`, whether or not the email has an account. The code (8 digits, 15 minutes, 5 tries) goes out through the notifier after the response; a failed delivery is logged, not reported. Per account: a new code at most every 60 s (a pending code is not replaced meanwhile) and at most 10 a UTC day; a refused send is still 202 {}. A production deployment without any delivery channel answers 503 delivery_unavailable for every email.",
      request: jsonBody(ResetRequestBody),
      responses: { 202: json("Accepted", z.object({}).openapi("Empty")) },
    }),
    async (c) => {
      const { email } = c.req.valid("json");
      const d = await deps(c);
      const realm = c.get("realm");
      const deviceId = c.get("tokenDevice");
      const { userId, sent } = await requestReset(d, realm, email);
      d.audit({
        type: "reset_requested",
        realm,
        userId,
        deviceId,
        detail: {
          known: userId !== null,
          // A known account's request that the interval or the daily cap refused (nothing was sent).
          ...(userId && !sent ? { throttled: true } : {}),
        },
      });
      return c.json({}, 202);
    },
  )
  .openapi(
    route({
      method: "put",
      path: "/v1/users/reset",
      limit: "RL_RESET",
      operationId: "resetPassword",
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      errors: ["invalid_code"],
      tags: ["account"],
      summary: "Set a new password with a reset code",
      description:
        "Every failure (wrong, used, expired, unknown email, too many tries) is 400 invalid_code; after 10 failed tries in a UTC day across an account's codes, every code of it is. Success ends every session of the user.",
      request: jsonBody(ResetCompleteBody),
      responses: { 204: { description: "Password set; all sessions ended" } },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const d = await deps(c);
      const realm = c.get("realm");
      const deviceId = c.get("tokenDevice");
      const result = await completeReset(d, realm, body);
      if (!result.ok) {
        d.audit({
          type: "reset_failed",
          realm,
          userId: result.userId,
          deviceId,
          detail: { reason: result.reason },
        });
        throw new ApiError("invalid_code");
      }
      d.audit({ type: "reset_completed", realm, userId: result.userId, deviceId, actor: selfActor(result.userId) });
      return c.body(null, 204);
    },
  )
  .openapi(
    route({
      method: "put",
      path: "/v1/users/me/email",
      operationId: "changeEmail",
      errors: ["invalid_credentials", "fresh_token_required", "email_in_use", "user_not_found", "domain_not_allowed"],
      tags: ["account"],
      summary: "Change the email",
      description:
        "The new email is appended to the history and becomes current (an email held before becomes current again, keeping its `verified`). A new address starts unverified and is sent a code (`verify_email`); the old address is sent an `email_changed` notice. In a realm that requires verification (`email_verification: required`, or an allowlist realm) an address this user has not proven waits for its code instead: `202 {pending_email, expires_in}`, then `PUT /v1/users/me/email/verify`. `current_password` is required when the account has a password; without one, a fresh token is required instead.",
      security: bearerAuth,
      middleware: [auth()] as const,
      request: jsonBody(EmailChangeBody),
      responses: {
        200: json("The user", UserSchema),
        202: json("The change waits for the code sent to the new address", PendingEmailSchema),
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const claims = c.get("claims");
      const d = await deps(c);
      const result = await changeEmail(d, claims, body);
      const event = { realm: claims.realm, userId: claims.sub, deviceId: claims.did };
      if (result.kind === "pending") {
        d.audit({ type: "email_change_pending", ...event });
        return c.json({ pending_email: result.pending_email, expires_in: result.expires_in }, 202);
      }
      if (result.kind === "changed") d.audit({ type: "email_changed", ...event });
      return c.json(toUser(result.user), 200);
    },
  )
  .openapi(
    route({
      method: "put",
      path: "/v1/users/me/password",
      operationId: "changePassword",
      errors: ["invalid_credentials", "fresh_token_required", "user_not_found"],
      tags: ["account"],
      summary: "Change the password; every other device is logged out",
      description:
        "`current_password` is required when the account has a password; an account without one may set its first password with a fresh token.",
      security: bearerAuth,
      middleware: [auth()] as const,
      request: jsonBody(PasswordChangeBody),
      responses: { 204: { description: "Password changed" } },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const claims = c.get("claims");
      const d = await deps(c);
      const { firstPassword } = await changePassword(d, claims, body);
      d.audit({
        type: "password_changed",
        realm: claims.realm,
        userId: claims.sub,
        deviceId: claims.did,
        detail: { first_password: firstPassword },
      });
      return c.body(null, 204);
    },
  )
  .openapi(
    route({
      method: "patch",
      path: "/v1/users/{id}",
      operationId: "updateUser",
      errors: ["forbidden", "not_found", "phone_in_use", "user_not_found"],
      tags: ["account"],
      summary: "Edit a user (oneself, or anyone as an admin)",
      description:
        "Name, phone number (E.164, unique in the realm; null removes it), image URL (https; null removes it) and profile (replaced whole; at most 4 KiB). Email and password have their own routes.",
      security: bearerAuth,
      middleware: [auth(), refuseCredentialFields] as const,
      request: { params: IdParam, ...jsonBody(UserPatchBody) },
      responses: { 200: json("The user", UserSchema) },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const body = c.req.valid("json");
      const claims = c.get("claims");
      const d = await deps(c);
      const user = await updateUser(d, claims, id, body);
      d.audit({
        type: "user_updated",
        realm: claims.realm,
        userId: user.id,
        deviceId: claims.did,
        detail: { fields: Object.keys(body), by: user.id === claims.sub ? undefined : claims.sub },
      });
      return c.json(toUser(user), 200);
    },
  )
  .openapi(
    route({
      method: "delete",
      path: "/v1/users/{id}",
      operationId: "deleteUser",
      errors: ["forbidden", "fresh_token_required", "not_found", "last_admin", "user_not_found"],
      tags: ["account"],
      summary: "Delete a user (oneself with a fresh token, or anyone as an admin)",
      description: "Every session ends, then the account is removed; its email may register again.",
      security: bearerAuth,
      middleware: [auth()] as const,
      request: { params: IdParam },
      responses: { 204: { description: "Deleted" } },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const claims = c.get("claims");
      const d = await deps(c);
      const { userId, byAdmin } = await deleteUser(d, claims, id);
      d.audit({
        type: "user_deleted",
        realm: claims.realm,
        userId,
        deviceId: claims.did,
        detail: byAdmin ? { by: claims.sub } : { self: true },
      });
      return c.body(null, 204);
    },
  );
