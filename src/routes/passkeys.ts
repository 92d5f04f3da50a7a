import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { AuthenticationResponseJSON, RegistrationResponseJSON } from "@simplewebauthn/server";
import {
  checkPasskeyLogin,
  loginOptions,
  passkeysOf,
  registerPasskey,
  registrationOptions,
  removePasskey,
} from "../auth-methods/passkey";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { auth, deps } from "../middleware/auth";
import { publicDevice } from "../middleware/device";
import {
  PasskeyLoginBody,
  PasskeyRegisterBody,
  PasskeySchema,
  TokenPairSchema,
  WebAuthnOptionsSchema,
} from "../schemas";
import { completeLogin } from "../services/login";
import { bearerAuth, json, jsonBody, optionalAuth, route } from "./define";

const fresh = auth({ fresh: true });
const EmptyBody = z.object({}).openapi("Empty");

/** Passkeys (WebAuthn, docs/api.md §12): managing one's own, and signing in with one. */
export const passkeys = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "post",
      path: "/v1/users/me/passkeys/options",
      tags: ["passkeys"],
      operationId: "passkeyCreationOptions",
      summary: "Creation options for a new passkey",
      errors: ["fresh_token_required", "user_not_found", "account_disabled", "account_pending", "passkeys_unavailable"],
      description:
        "For navigator.credentials.create(): resident key required, user verification preferred, no attestation. The challenge lives 5 minutes and works once. 503 passkeys_unavailable without WEBAUTHN_RP_ID.",
      security: bearerAuth,
      middleware: [fresh] as const,
      responses: { 200: json("PublicKeyCredentialCreationOptionsJSON", WebAuthnOptionsSchema) },
    }),
    async (c) => c.json(await registrationOptions(await deps(c), c.get("claims")), 200),
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/users/me/passkeys",
      tags: ["passkeys"],
      operationId: "addPasskey",
      summary: "Add a passkey",
      errors: [
        "fresh_token_required",
        "user_not_found",
        "account_disabled",
        "account_pending",
        "passkeys_unavailable",
        "invalid_passkey",
      ],
      description:
        "The registration response (JSON form). Its challenge must be one this user got from the options route, unspent and under 5 minutes old; its origin one of WEBAUTHN_ORIGINS, its RP ID WEBAUTHN_RP_ID. Otherwise 400 invalid_passkey.",
      security: bearerAuth,
      middleware: [fresh] as const,
      request: jsonBody(PasskeyRegisterBody),
      responses: { 201: json("The passkey", PasskeySchema) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const claims = c.get("claims");
      const d = await deps(c);
      const passkey = await registerPasskey(d, claims, {
        response: body.response as unknown as RegistrationResponseJSON,
        name: body.name,
      });
      d.audit({
        type: "passkey_added",
        realm: claims.realm,
        userId: claims.sub,
        deviceId: claims.did,
        detail: { passkey_id: passkey.id },
      });
      return c.json(passkey, 201);
    },
  )
  .openapi(
    route({
      method: "get",
      path: "/v1/users/me/passkeys",
      tags: ["passkeys"],
      operationId: "listPasskeys",
      summary: "List one's passkeys",
      errors: ["user_not_found", "account_disabled", "account_pending"],
      security: bearerAuth,
      middleware: [auth()] as const,
      responses: { 200: json("Passkeys", z.object({ passkeys: z.array(PasskeySchema) })) },
    }),
    async (c) => c.json({ passkeys: await passkeysOf(await deps(c), c.get("claims")) }, 200),
  )
  .openapi(
    route({
      method: "delete",
      path: "/v1/users/me/passkeys/{id}",
      tags: ["passkeys"],
      operationId: "deletePasskey",
      summary: "Remove a passkey",
      errors: ["fresh_token_required", "user_not_found", "account_disabled", "account_pending", "not_found"],
      description: "404 not_found when the caller has no passkey with this id.",
      security: bearerAuth,
      middleware: [fresh] as const,
      request: { params: z.object({ id: z.string().min(1).max(1366) }) },
      responses: { 204: { description: "Removed" } },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const claims = c.get("claims");
      const d = await deps(c);
      await removePasskey(d, claims, id);
      d.audit({
        type: "passkey_removed",
        realm: claims.realm,
        userId: claims.sub,
        deviceId: claims.did,
        detail: { passkey_id: id },
      });
      return c.body(null, 204);
    },
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/tokens/passkey/options",
      tags: ["tokens"],
      operationId: "passkeyRequestOptions",
      summary: "Request options for signing in with a passkey",
      errors: ["passkeys_unavailable"],
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      description: "For navigator.credentials.get() with a discoverable credential (no user named).",
      request: jsonBody(EmptyBody),
      responses: { 200: json("PublicKeyCredentialRequestOptionsJSON", WebAuthnOptionsSchema) },
    }),
    async (c) => c.json(await loginOptions(await deps(c), c.get("realm")), 200),
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/tokens/passkey",
      limit: "RL_LOGIN",
      tags: ["tokens"],
      operationId: "passkeyLogin",
      summary: "Sign in with a passkey",
      errors: [
        "passkeys_unavailable",
        "invalid_credentials",
        "account_disabled",
        "account_pending",
        "email_unverified",
        "too_many_attempts",
      ],
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      description:
        'The authentication response (JSON form). `amr` is `["hwk"]`, plus `"mfa"` when the authenticator verified the user (required for accounts with TOTP on). A bad signature, unknown credential, a credential of another user, wrong origin or RP ID, a spent or expired challenge, missing user verification where required, or a signature counter that did not move forward: 401 invalid_credentials (the last also audited as a possibly cloned key).',
      request: jsonBody(PasskeyLoginBody),
      responses: { 200: json("Tokens for this device", TokenPairSchema) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const d = await deps(c);
      const realm = c.get("realm");
      const deviceId = c.get("deviceId");
      const result = await checkPasskeyLogin(d, realm, body.response as unknown as AuthenticationResponseJSON);
      if (!result.ok) {
        d.audit({
          type: result.reason === "counter_regression" ? "passkey_counter_regression" : "login_failed",
          realm,
          userId: result.userId,
          deviceId,
          detail: { method: "passkey", reason: result.reason, passkey_id: result.passkeyId, why: result.detail },
        });
        throw new ApiError("invalid_credentials", "The passkey could not be verified");
      }
      // A passkey that verified its user stands for both factors: the seam's gate lets it through.
      const pair = await completeLogin(d, {
        user: result.user,
        device: { id: deviceId, description: body.description ?? null },
        amr: result.amr,
        audit: { detail: { amr: result.amr } },
      });
      return c.json(pair, 200);
    },
  );
