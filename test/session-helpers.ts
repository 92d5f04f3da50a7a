// Helpers for the device-session tests (sessions, device-object, rpc).
import { env } from "cloudflare:workers";
import { deviceSessionName } from "../src/storage/keys";
import { api } from "./helpers";

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const DAY = 24 * 60 * MINUTE;

export { frozenClock } from "./helpers";

/** POST /v1/tokens/refresh. */
export const refresh = (refreshToken: unknown) =>
  api("POST", "/v1/tokens/refresh", { body: { refresh_token: refreshToken } });

/** GET /v1/users/me: a non-strict route (signature + KV blacklist). */
export const me = (accessToken: string) => api("GET", "/v1/users/me", { token: accessToken });

/**
 * A strict-route probe: DELETE of a well-formed device id the caller does not have. A token the
 * strict check accepts gets 404 not_found; a refused one gets 401 with the reason.
 */
export const strictProbe = (accessToken: string) =>
  api("DELETE", `/v1/devices/${"Z".repeat(32)}`, { token: accessToken });

/** GET /v1/devices. */
export const listDevices = (accessToken: string) => api("GET", "/v1/devices", { token: accessToken });

/** AuthService.verify through the consumer worker's real service binding. */
export async function verifyRpc(token: unknown, options?: Record<string, unknown>): Promise<any> {
  const res = await env.CONSUMER.fetch("http://consumer/verify", {
    method: "POST",
    body: JSON.stringify({ token, options }),
  });
  if (res.status !== 200) throw new Error(`consumer /verify: ${res.status} ${await res.text()}`);
  return res.json();
}

/** The stub of one device's session object, addressed as the worker addresses it. */
export function deviceStub(userId: string, deviceId: string, realm = "default") {
  const ns = env.DEVICE_SESSIONS;
  return ns.get(ns.idFromName(deviceSessionName(realm, userId, deviceId)));
}

/** The error code of an API response, or undefined. */
export const codeOf = (res: { body: any }): string | undefined => res.body?.error?.code;
