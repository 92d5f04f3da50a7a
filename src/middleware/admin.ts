import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context";
import { ApiError } from "../errors";
import { requireUser } from "../services/users";
import { deps } from "./auth";

/**
 * Requires the caller (already authenticated) to be an admin of the realm, as D1 says now:
 * a demoted admin's still-valid token stops working at once.
 */
export const adminOnly: MiddlewareHandler<AppEnv> = async (c, next) => {
  const claims = c.get("claims");
  const user = await requireUser(await deps(c), claims.realm, claims.sub);
  if (!user.roles.includes("admin")) throw new ApiError("forbidden");
  await next();
};
