// GET /api/app/session: what the app knows about the signed-in user, from the verified claims
// and env.AUTH.getUser (RPC, no HTTP round trip).
import type { AppData, Env } from "../../../lib/auth";

export const onRequestGet: PagesFunction<Env, string, AppData> = async ({ env, data }) => {
  const { claims } = data;
  const user = await env.AUTH.getUser(claims.sub, claims.realm);
  return Response.json(
    {
      user_id: claims.sub,
      name: user?.full_name ?? claims.name ?? null,
      device_id: claims.did,
      roles: claims.roles,
      fresh: claims.fresh,
      /** How this session's login was checked (RFC 8176: pwd, otp, hwk, fed, mfa…). */
      amr: claims.amr ?? [],
      access_expires_at: new Date(claims.exp * 1000).toISOString(),
    },
    { headers: { "cache-control": "no-store" } },
  );
};
