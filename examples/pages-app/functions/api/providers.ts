// GET /api/providers: the identity providers the login page offers ("Sign in with …"), from the
// SIGN_IN_PROVIDERS var (`google=Google,apple=Apple`). Each id must be one of the registry's
// OIDC_PROVIDERS, and this site's /oauth page must be listed in its OAUTH_REDIRECT_URIS.
import type { Env } from "../../lib/auth";

export const onRequestGet: PagesFunction<Env> = async ({ env }) => {
  const providers = (env.SIGN_IN_PROVIDERS ?? "")
    .split(",")
    .map((pair) => pair.trim())
    .filter(Boolean)
    .map((pair) => {
      const [id = "", label] = pair.split("=");
      return { id: id.trim(), label: (label ?? id).trim() };
    })
    .filter((p) => /^[a-z0-9][a-z0-9_-]{0,31}$/.test(p.id));
  return Response.json({ providers }, { headers: { "cache-control": "no-store" } });
};
