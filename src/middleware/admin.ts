import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../context";
import { peekType } from "../crypto/jwt";
import { ApiError } from "../errors";
import { assertAdminMfa, bearer, verifyAccess } from "../services/auth";
import { verifyAuthority } from "../services/authority";
import { requireUser } from "../services/users";
import { deps } from "./auth";

/**
 * Requires an admin of the realm, as D1 says now (a demoted admin's still-valid token stops
 * working at once) — or, with `authority: true`, the holder of a domain authority token.
 * An authority token on a route it may not use is 403 forbidden. Options: `fresh` for the
 * admin's access token.
 */
export function adminAccess(opts: { authority?: boolean; fresh?: boolean } = {}): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const token = bearer(c.req.header("Authorization"));
    if (!token) throw new ApiError("missing_token");
    const d = await deps(c);
    const realm = c.get("realm");
    if (peekType(token) === "authority") {
      const claims = await verifyAuthority(d, realm, token);
      if (!opts.authority) throw new ApiError("forbidden");
      c.set("principal", { kind: "authority", domain: claims.domain, tokenId: claims.sub });
      return next();
    }
    const claims = await verifyAccess(d, realm, token, { fresh: opts.fresh });
    c.set("claims", claims);
    const user = await requireUser(d, realm, claims.sub);
    if (!user.roles.includes("admin")) throw new ApiError("forbidden");
    await assertAdminMfa(d, realm, claims.amr);
    c.set("principal", { kind: "admin", userId: user.id });
    await next();
  };
}

/** Requires an admin (access token only). */
export const adminOnly = adminAccess();
