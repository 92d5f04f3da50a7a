import { OpenAPIHono, z } from "@hono/zod-openapi";
import { passwordLogin } from "../auth-methods/password";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { auth, deps } from "../middleware/auth";
import { publicDevice } from "../middleware/device";
import { LoginBody, LogoutBody, MfaLoginBody, PublicTokenBody, RefreshBody, TokenPairSchema } from "../schemas";
import { finishMfaLogin } from "../services/mfa";
import { endSession, endSessionsBefore, mintPublicToken, refreshSession } from "../services/sessions";
import { bearerAuth, json, jsonBody, noAuth, optionalAuth, route } from "./define";

const PublicTokenSchema = z
  .object({ token: z.string(), device_id: z.string(), expires_in: z.number().int() })
  .openapi("PublicToken");

export const tokens = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "post",
      path: "/v1/tokens/public",
      operationId: "createPublicToken",
      security: noAuth,
      errors: [],
      tags: ["tokens"],
      summary: "Get an anonymous device token",
      request: jsonBody(PublicTokenBody),
      responses: { 201: json("A public token", PublicTokenSchema) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      return c.json(await mintPublicToken(await deps(c), c.get("realm"), body.device_id), 201);
    },
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/tokens",
      limit: "RL_LOGIN",
      operationId: "login",
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      errors: [
        "invalid_credentials",
        "mfa_required",
        "account_disabled",
        "account_pending",
        "email_unverified",
        "too_many_attempts",
        "realm_not_found",
      ],
      tags: ["tokens"],
      summary: "Log in with email and password",
      description:
        "Optionally with a public token in Authorization: its device id is used. With an authenticator app on, a correct password answers 401 mfa_required with `mfa_token` and `mfa_methods`, and no session starts: POST /v1/tokens/mfa finishes the login.",
      request: jsonBody(LoginBody),
      responses: { 200: json("Tokens for this device", TokenPairSchema) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const d = await deps(c);
      const realm = c.get("realm");
      const deviceId = c.get("deviceId");
      const pair = await passwordLogin(d, realm, {
        email: body.email,
        password: body.password,
        device: { id: deviceId, description: body.description ?? null },
      });
      return c.json(pair, 200);
    },
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/tokens/mfa",
      limit: "RL_LOGIN",
      tags: ["tokens"],
      operationId: "finishMfaLogin",
      summary: "Finish a login with the second factor",
      errors: ["invalid_otp", "account_disabled", "account_pending", "email_unverified", "too_many_attempts"],
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      description:
        "The `mfa_token` of a 401 mfa_required, with the authenticator app's `code` or one `recovery_code`. The token lives 5 minutes, allows 5 tries, is spent by its success and starts the session on the first step's device. Wrong code: 401 invalid_otp (counted by the account's login throttle); an expired, spent or exhausted token: 401 invalid_token.",
      request: jsonBody(MfaLoginBody),
      responses: { 200: json("Tokens for the first step's device", TokenPairSchema) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const d = await deps(c);
      const realm = c.get("realm");
      const result = await finishMfaLogin(d, realm, { ...body, presentedDeviceId: c.get("tokenDevice") });
      if (!result.ok) {
        d.audit({
          type: "mfa_failed",
          realm,
          userId: result.userId,
          deviceId: result.deviceId,
          detail: { method: body.code !== undefined ? "totp" : "recovery_code" },
        });
        throw new ApiError("invalid_otp");
      }
      return c.json(result.pair, 200);
    },
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/tokens/refresh",
      operationId: "refreshTokens",
      security: noAuth,
      errors: [
        "invalid_token",
        "token_expired",
        "session_revoked",
        "refresh_token_reused",
        "user_not_found",
        "account_disabled",
        "account_pending",
      ],
      tags: ["tokens"],
      summary: "Rotate a refresh token",
      request: jsonBody(RefreshBody),
      responses: { 200: json("New tokens (the access token is not fresh)", TokenPairSchema) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      return c.json(await refreshSession(await deps(c), c.get("realm"), body.refresh_token), 200);
    },
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/logout",
      operationId: "logout",
      errors: [],
      tags: ["tokens"],
      summary: "Log out this device, or every device with all: true",
      security: bearerAuth,
      middleware: [auth()] as const,
      request: jsonBody(LogoutBody),
      responses: { 204: { description: "Logged out" } },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const claims = c.get("claims");
      const d = await deps(c);
      // Everywhere: decided by the sessions_valid_after write, after which nothing fails the
      // answer (this device's session is among those ended). One device: decided by its object.
      if (body.all) await endSessionsBefore(d, claims.realm, claims.sub);
      else await endSession(d, claims.realm, claims.sub, claims.did);
      d.audit({
        type: "logout",
        realm: claims.realm,
        userId: claims.sub,
        deviceId: claims.did,
        detail: { all: !!body.all },
      });
      return c.body(null, 204);
    },
  );
