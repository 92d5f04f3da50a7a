import { OpenAPIHono, z } from "@hono/zod-openapi";
import { type AppEnv, clientIp } from "../context";
import { peekType } from "../crypto/jwt";
import { ApiError } from "../errors";
import { auth, deps } from "../middleware/auth";
import { PublicUserSchema, SignUpBody, UserSchema } from "../schemas";
import { sendWelcome } from "../services/accounts";
import { audit, selfActor } from "../services/audit";
import { bearer, verifyAccess } from "../services/auth";
import { noticeApprovalNeeded, requireUser, signUp, toPublicUser, toUser } from "../services/users";
import { findUserById } from "../storage/users";
import { bearerAuth, json, jsonBody, route } from "./define";
import { publicTokenDevice } from "./tokens";

export const users = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "post",
      path: "/v1/users",
      tags: ["users"],
      summary: "Sign up (or, with an admin's access token, create a user)",
      description:
        "Without a token, or with a public token, this is a sign-up. With an admin's access token the user is created active with source `admin`.",
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
        deviceId = await publicTokenDevice(c);
      } else if (token) {
        // An admin's access token: checked like on every other route, revocation included.
        const claims = await verifyAccess(d, realm, token);
        deviceId = claims.did;
        const caller = await requireUser(d, realm, claims.sub);
        if (!caller.roles.includes("admin")) throw new ApiError("forbidden");
        byAdmin = true;
        adminId = caller.id;
      }
      const user = await signUp(d, realm, body, { byAdmin, ip: clientIp(c) });
      if (byAdmin && !body.password) await sendWelcome(d, user);
      if (user.status === "pending") noticeApprovalNeeded(d, user);
      audit(d, c, {
        type: "signup",
        realm,
        userId: user.id,
        deviceId,
        actor: adminId ? { kind: "admin", id: adminId } : selfActor(user.id),
        detail: { by_admin: byAdmin },
      });
      return c.json(toUser(user), 201);
    },
  )
  .openapi(
    route({
      method: "get",
      path: "/v1/users/me",
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
