import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context";
import { peekType, verifyToken } from "../crypto/jwt";
import { bearer } from "../services/auth";
import { resolveDeviceId } from "../services/sessions";
import { deps } from "./deps";

/**
 * The optional public token of a sign-in route (login, sign-up, reset, OTP, passkey, provider):
 * sets `tokenDevice` (its device id) and `deviceId` (that, else the body's well-formed
 * `device_id`, else a new one). A token that is not a valid public token of the realm is 401.
 * With `others: "route"`, a token of another type is left for the route to check (sign-up takes
 * an admin's access token).
 */
export function publicDevice(opts: { others?: "route" } = {}): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const token = bearer(c.req.header("Authorization"));
    let did: string | undefined;
    if (token && !(opts.others === "route" && peekType(token) !== "public")) {
      const d = await deps(c);
      const claims = await verifyToken(d.keys, token, {
        issuer: d.config.ISSUER,
        realm: c.get("realm"),
        type: "public",
        now: d.now,
      });
      did = claims.did;
    }
    c.set("tokenDevice", did);
    c.set("deviceId", resolveDeviceId(did, await bodyDeviceId(c.req.raw.method, c.req.json.bind(c.req))));
    await next();
  };
}

/** The body's `device_id` as sent (validated later by the route; resolveDeviceId checks its shape). */
async function bodyDeviceId(method: string, json: () => Promise<unknown>): Promise<string | undefined> {
  if (method === "GET") return undefined;
  try {
    const body = (await json()) as { device_id?: unknown } | null;
    return typeof body?.device_id === "string" ? body.device_id : undefined;
  } catch {
    return undefined;
  }
}
