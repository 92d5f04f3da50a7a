import { OpenAPIHono, z } from "@hono/zod-openapi";
import { type AppEnv, clientIp } from "../context";
import { peekType } from "../crypto/jwt";
import { ApiError } from "../errors";
import { auth, deps } from "../middleware/auth";
import { publicDevice } from "../middleware/device";
import { PublicUserSchema, SignUpBody, UserSchema } from "../schemas";
import { sendWelcome } from "../services/accounts";
import { assertAdminMfa, bearer, verifyAccess } from "../services/auth";
import { noticeApprovalNeeded, requireUser, signUp, toPublicUser, toUser } from "../services/users";
import { sendVerification } from "../services/verification";
import { findUserById } from "../storage/users";
import { bearerAuth, json, jsonBody, optionalAuth, route } from "./define";

export const users = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "post",
      path: "/v1/users",
      limit: "RL_SIGNUP",
      operationId: "signUp",
      security: optionalAuth,
      middleware: [publicDevice({ others: "route" })] as const,
      errors: [
        "user_exists",
        "phone_in_use",
        "domain_not_allowed",
        "registration_closed",
        "forbidden",
        "token_revoked",
        "captcha_failed",
        "captcha_unavailable",
        "account_disabled",
        "user_not_found",
        "delivery_failed",
        "delivery_unavailable",
      ],
      tags: ["users"],
      summary: "Sign up (or, with an admin's access token, create a user)",
      description:
        "Without a token, or with a public token, this is a sign-up. With an admin's access token the user is created active with source `admin`. The email starts unverified and is sent a code (`verify_email`; prove it with `PUT /v1/users/verification`); a user created by an admin without a password gets a `welcome` code instead, which proves the address when used. A `phone_number` needs `phone_otp`, the code `POST /v1/otp` sent to it, for every caller (admins included).",
      request: jsonBody(SignUpBody),
      responses: { 201: json("The new user", UserSchema) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const d = await deps(c);
      const realm = c.get("realm");
      const token = bearer(c.req.header("Authorization"));
      let byAdmin = false;
      let adminId: string | null = null;
      let deviceId: string | undefined;
      if (token && peekType(token) === "public") {
        deviceId = c.get("tokenDevice");
      } else if (token) {
        // An admin's access token: checked like on every other route, revocation included.
        const claims = await verifyAccess(d, realm, token);
        deviceId = claims.did;
        const caller = await requireUser(d, realm, claims.sub);
        if (!caller.roles.includes("admin")) throw new ApiError("forbidden");
        await assertAdminMfa(d, realm, claims.amr);
        byAdmin = true;
        adminId = caller.id;
      }
      const user = await signUp(d, realm, body, { byAdmin, ip: clientIp(c), deviceId, adminId });
      // A welcome code (a reset code) proves the address when used; everyone else gets a verification code.
      if (byAdmin && !body.password) await sendWelcome(d, user);
      else await sendVerification(d, user, body.email);
      if (user.status === "pending") noticeApprovalNeeded(d, user);
      return c.json(toUser(user), 201);
    },
  )
  .openapi(
    route({
      method: "get",
      path: "/v1/users/me",
      operationId: "getMe",
      errors: ["user_not_found"],
      tags: ["users"],
      summary: "The signed-in user",
      security: bearerAuth,
      middleware: [auth()] as const,
      responses: { 200: json("The user", UserSchema) },
    }),
    async (c) => {
      const claims = c.get("claims");
      return c.json(toUser(await requireUser(await deps(c), claims.realm, claims.sub)), 200);
    },
  )
  .openapi(
    route({
      method: "get",
      path: "/v1/users/{id}",
      operationId: "getUser",
      errors: ["user_not_found", "not_found"],
      tags: ["users"],
      summary: "A user: everything for oneself and admins, id, name and image for anyone else",
      security: bearerAuth,
      middleware: [auth()] as const,
      request: { params: z.object({ id: z.string().max(64) }) },
      responses: { 200: json("The user", z.union([UserSchema, PublicUserSchema])) },
    }),
    async (c) => {
      const { id } = c.req.valid("param");
      const claims = c.get("claims");
      const d = await deps(c);
      const caller = await requireUser(d, claims.realm, claims.sub);
      if (id === caller.id) return c.json(toUser(caller), 200);
      const user = await findUserById(d.db, claims.realm, id);
      if (!user) throw new ApiError("not_found", "User not found");
      return c.json(caller.roles.includes("admin") ? toUser(user) : toPublicUser(user), 200);
    },
  );
