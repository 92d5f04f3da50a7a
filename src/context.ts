import type { Context } from "hono";
import type { Config } from "./config";
import type { AccessClaims } from "./crypto/jwt";
import type { Env } from "./env";
import type { Principal } from "./principal";

/** Typed context variables set by the middleware. */
export interface Variables {
  requestId: string;
  realm: string;
  /** Request time in ms; every service takes its time from here so tests can move the clock. */
  now: number;
  claims: AccessClaims;
  /** Who acts on admin routes: an admin, or a domain authority token's holder. */
  principal: Principal;
  /** The device id of the request's public token, when it sent one (publicDevice middleware). */
  tokenDevice?: string;
  /** The device a sign-in is for: the public token's, else the body's `device_id` when well-formed, else new. */
  deviceId: string;
  /** The request's D1 session, when the binding supports sessions. */
  d1Session?: D1DatabaseSession;
}

export interface AppEnv {
  Bindings: Env;
  Variables: Variables;
}

export type AppContext = Context<AppEnv>;

/** The client's IP as Cloudflare saw it; never taken from X-Forwarded-For, which clients control. */
export const clientIp = (c: AppContext): string | null => c.req.header("CF-Connecting-IP") ?? null;

export type { Config };
