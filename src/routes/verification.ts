import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { auth, deps } from "../middleware/auth";
import { publicDevice } from "../middleware/device";
import { EmailVerifyBody, UserSchema, VerificationBody, VerificationRequestBody } from "../schemas";
import { completeEmailChange } from "../services/accounts";
import { deliveryAvailable } from "../services/notifier";
import { toUser } from "../services/users";
import { confirmVerification, requestVerification } from "../services/verification";
import { bearerAuth, json, jsonBody, optionalAuth, route } from "./define";

/** Verified emails (docs/api.md §11): resending a code, proving an address, completing a pending change. */
export const verification = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "post",
      path: "/v1/users/verification",
      limit: "RL_RESET",
      operationId: "requestEmailVerification",
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      errors: ["delivery_unavailable"],
      tags: ["account"],
      summary: "Send a new email verification code",
      description:
        "Always 202 with `{}`, whether or not the address has an account or is already verified. A code (8 digits, 30 minutes, 5 tries; type `verify_email`) goes out after the response only to the current, unverified email of an account, at most once a minute and 10 times a day per address.",
      request: jsonBody(VerificationRequestBody),
      responses: { 202: json("Accepted", z.object({}).openapi("Empty")) },
    }),
    async (c) => {
      const { email } = c.req.valid("json");
      const d = await deps(c);
      if (!deliveryAvailable(d.config)) throw new ApiError("delivery_unavailable");
      const realm = c.get("realm");
      const deviceId = c.get("tokenDevice");
      const { sent } = await requestVerification(d, realm, email);
      d.audit({ type: "verification_requested", realm, deviceId, detail: { sent } });
      return c.json({}, 202);
    },
  )
  .openapi(
    route({
      method: "put",
      path: "/v1/users/verification",
      limit: "RL_RESET",
      operationId: "verifyEmail",
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      errors: ["invalid_code"],
      tags: ["account"],
      summary: "Prove an email address with the code sent to it",
      description:
        "The address is then `verified`. A listed bootstrap address claims its realm's admin seat now, if the realm has no active admin. Wrong, used, expired or unknown: 400 invalid_code.",
      request: jsonBody(VerificationBody),
      responses: { 204: { description: "The address is verified" } },
    }),
    async (c) => {
      const { email, code } = c.req.valid("json");
      const d = await deps(c);
      const realm = c.get("realm");
      const deviceId = c.get("tokenDevice");
      const result = await confirmVerification(d, realm, email, code);
      if (!result.ok) {
        d.audit({
          type: "verification_failed",
          realm,
          userId: result.userId,
          deviceId,
          detail: { reason: result.reason },
        });
        throw new ApiError("invalid_code");
      }
      d.audit({ type: "email_verified", realm, userId: result.user.id, deviceId });
      if (result.admin) d.audit({ type: "bootstrap_admin", realm, userId: result.user.id, deviceId });
      return c.body(null, 204);
    },
  )
  .openapi(
    route({
      method: "put",
      path: "/v1/users/me/email/verify",
      operationId: "completeEmailChange",
      errors: ["invalid_code", "email_in_use", "user_not_found", "realm_not_found"],
      tags: ["account"],
      summary: "Complete a pending email change with the code sent to the new address",
      description:
        "For realms that require verification (docs/api.md §4): the pending address becomes current and verified. No pending change, or a wrong, used or expired code: 400 invalid_code.",
      security: bearerAuth,
      middleware: [auth()] as const,
      request: jsonBody(EmailVerifyBody),
      responses: { 200: json("The user", UserSchema) },
    }),
    async (c) => {
      const { code } = c.req.valid("json");
      const claims = c.get("claims");
      const d = await deps(c);
      const event = { realm: claims.realm, userId: claims.sub, deviceId: claims.did };
      const result = await completeEmailChange(d, claims, code);
      if (!result.user) {
        d.audit({ type: "verification_failed", ...event, detail: { reason: result.reason } });
        throw new ApiError("invalid_code");
      }
      d.audit({ type: "email_changed", ...event, detail: { verified: true } });
      if (result.admin) d.audit({ type: "bootstrap_admin", ...event });
      return c.json(toUser(result.user), 200);
    },
  );
