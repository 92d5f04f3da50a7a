import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { auth, deps } from "../middleware/auth";
import { DeviceSchema, DeviceUpdateBody } from "../schemas";
import { endSession, listDevices, updateCurrentDevice } from "../services/sessions";
import { bearerAuth, json, jsonBody, route } from "./define";

export const devices = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "get",
      path: "/v1/devices",
      operationId: "listDevices",
      errors: [],
      tags: ["devices"],
      summary: "List the devices logged in to this account",
      security: bearerAuth,
      middleware: [auth()] as const,
      responses: { 200: json("Devices", z.object({ devices: z.array(DeviceSchema) })) },
    }),
    async (c) => {
      const claims = c.get("claims");
      return c.json({ devices: await listDevices(await deps(c), claims.sub, claims.did) }, 200);
    },
  )
  .openapi(
    route({
      method: "put",
      path: "/v1/devices/current",
      operationId: "updateCurrentDevice",
      errors: ["session_revoked"],
      tags: ["devices"],
      summary: "Update this device: push token, description; records that it was seen",
      security: bearerAuth,
      middleware: [auth()] as const,
      request: jsonBody(DeviceUpdateBody),
      responses: { 200: json("The device", DeviceSchema) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      return c.json(await updateCurrentDevice(await deps(c), c.get("claims"), body), 200);
    },
  )
  .openapi(
    route({
      method: "delete",
      path: "/v1/devices/{device_id}",
      operationId: "logoutDevice",
      errors: ["session_revoked", "not_found"],
      tags: ["devices"],
      summary: "Log out one of this account's devices at once (strict)",
      security: bearerAuth,
      middleware: [auth({ strict: true })] as const,
      request: { params: z.object({ device_id: z.string().max(64) }) },
      responses: { 204: { description: "Logged out" } },
    }),
    async (c) => {
      const { device_id } = c.req.valid("param");
      const claims = c.get("claims");
      const d = await deps(c);
      if (!(await endSession(d, claims.realm, claims.sub, device_id))) {
        throw new ApiError("not_found", "No such device on this account");
      }
      d.audit({
        type: "logout",
        realm: claims.realm,
        userId: claims.sub,
        deviceId: device_id,
        detail: { by: claims.did },
      });
      return c.body(null, 204);
    },
  );
