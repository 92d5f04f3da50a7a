import { OpenAPIHono } from "@hono/zod-openapi";
import { confirmTotpEnrolment, enrolTotp, mfaStatus, regenerateRecoveryCodes, removeTotp } from "../auth-methods/totp";
import type { AppEnv } from "../context";
import { auth, deps } from "../middleware/auth";
import { MfaStatusSchema, RecoveryCodesSchema, TotpConfirmBody, TotpEnrolmentSchema } from "../schemas";
import { accountChanged, addSessionMethods, endAllSessions } from "../services/sessions";
import { bearerAuth, json, jsonBody, route } from "./define";

const fresh = auth({ fresh: true });

/** The authenticator app of the signed-in user (docs/api.md §12). Every change needs a fresh token. */
export const mfa = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "get",
      path: "/v1/users/me/mfa",
      tags: ["mfa"],
      operationId: "mfaStatus",
      summary: "Which second factors the account has",
      errors: ["user_not_found", "account_disabled", "account_pending"],
      description:
        "Whether the authenticator app is on (a pending enrolment is not), how many recovery codes are unused, and how many passkeys are registered. Any access token; nothing changes.",
      security: bearerAuth,
      middleware: [auth()] as const,
      responses: { 200: json("The account's second factors", MfaStatusSchema) },
    }),
    async (c) => c.json(await mfaStatus(await deps(c), c.get("claims")), 200),
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/users/me/mfa/totp",
      tags: ["mfa"],
      operationId: "startTotp",
      summary: "Start setting up an authenticator app",
      errors: ["fresh_token_required", "user_not_found", "account_disabled", "account_pending", "totp_already_enabled"],
      description:
        "A new secret and its otpauth:// URI (for a QR code). Nothing changes for logins until PUT confirms it with a first code. 409 totp_already_enabled when one is on.",
      security: bearerAuth,
      middleware: [fresh] as const,
      responses: { 201: json("The secret to put in the app", TotpEnrolmentSchema) },
    }),
    async (c) => c.json(await enrolTotp(await deps(c), c.get("claims")), 201),
  )
  .openapi(
    route({
      method: "put",
      path: "/v1/users/me/mfa/totp",
      tags: ["mfa"],
      operationId: "confirmTotp",
      summary: "Confirm the authenticator app with its first code",
      errors: [
        "fresh_token_required",
        "user_not_found",
        "account_disabled",
        "account_pending",
        "totp_not_enabled",
        "totp_already_enabled",
        "invalid_code",
      ],
      description:
        "TOTP is then on: logins answer 401 mfa_required until POST /v1/tokens/mfa. Returns 10 recovery codes, shown this once. The account's other sessions end (they began with one factor); this one carries on, its `amr` now including `otp` and `mfa`. A wrong code is 400 invalid_code.",
      security: bearerAuth,
      middleware: [fresh] as const,
      request: jsonBody(TotpConfirmBody),
      responses: { 200: json("Recovery codes", RecoveryCodesSchema) },
    }),
    async (c) => {
      const { code } = c.req.valid("json");
      const claims = c.get("claims");
      const d = await deps(c);
      const result = await confirmTotpEnrolment(d, claims, code);
      // This session just proved the app; the others began without it.
      await addSessionMethods(d, claims, ["otp", "mfa"]);
      await endAllSessions(d, claims.realm, claims.sub, claims.did);
      await accountChanged(d, claims.realm, claims.sub, [claims.did]);
      d.audit({ type: "totp_enabled", realm: claims.realm, userId: claims.sub, deviceId: claims.did });
      return c.json(result, 200);
    },
  )
  .openapi(
    route({
      method: "delete",
      path: "/v1/users/me/mfa/totp",
      tags: ["mfa"],
      operationId: "removeTotp",
      summary: "Remove the authenticator app and its recovery codes",
      errors: ["fresh_token_required", "user_not_found", "account_disabled", "account_pending", "totp_not_enabled"],
      security: bearerAuth,
      middleware: [fresh] as const,
      responses: { 204: { description: "Removed (or there was none)" } },
    }),
    async (c) => {
      const claims = c.get("claims");
      const d = await deps(c);
      const had = await removeTotp(d, claims);
      await accountChanged(d, claims.realm, claims.sub);
      if (had) d.audit({ type: "totp_removed", realm: claims.realm, userId: claims.sub, deviceId: claims.did });
      return c.body(null, 204);
    },
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/users/me/mfa/recovery-codes",
      tags: ["mfa"],
      operationId: "regenerateRecoveryCodes",
      summary: "Replace the recovery codes",
      errors: ["fresh_token_required", "user_not_found", "account_disabled", "account_pending", "totp_not_enabled"],
      description: "10 new codes, shown this once; the old set stops working. 409 totp_not_enabled without TOTP.",
      security: bearerAuth,
      middleware: [fresh] as const,
      responses: { 200: json("Recovery codes", RecoveryCodesSchema) },
    }),
    async (c) => {
      const claims = c.get("claims");
      const d = await deps(c);
      const result = await regenerateRecoveryCodes(d, claims);
      d.audit({
        type: "recovery_codes_regenerated",
        realm: claims.realm,
        userId: claims.sub,
        deviceId: claims.did,
      });
      return c.json(result, 200);
    },
  );
