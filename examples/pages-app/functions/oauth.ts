// /oauth: the end of "Sign in with …" (docs/api.md §13). The registry sends the browser here with
// ?code=<one-time code>&state=…; this Function checks the state against the cookie set when the
// round trip started (functions/api/auth/[[path]].ts), swaps the code for a session over the AUTH
// binding and redirects. The code never reaches a page script, and the redirect keeps it out of
// the history. Without a code the static /oauth page is served: it goes on to the profile after
// ?signed_in=1, or explains ?error=… (the registry's or this Function's).
import { API_ORIGIN, describe, type Env } from "../lib/auth";
import {
  COOKIE,
  clearCookie,
  isDeviceId,
  MFA_TOKEN_MAX_AGE,
  readCookies,
  serializeCookie,
  type TokenPair,
  tokenCookies,
} from "../lib/cookies";
import { forwardHeaders } from "../lib/session";

/** Equal strings, compared in time that does not depend on where they differ. */
function sameString(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ (y[i] ?? 0);
  return diff === 0;
}

function redirect(location: string, setCookies: string[]): Response {
  const res = new Response(null, { status: 302, headers: { location, "cache-control": "no-store" } });
  for (const c of setCookies) res.headers.append("set-cookie", c);
  return res;
}

export const onRequestGet: PagesFunction<Env> = async ({ request, env, next }) => {
  const url = new URL(request.url);
  const code = url.searchParams.get("code");
  if (code === null) return next();
  const cookies = readCookies(request);
  const expected = cookies.get(COOKIE.oauthState);
  // One round trip, one state: spent whatever happens next.
  const setCookies = [clearCookie(COOKIE.oauthState)];
  const state = url.searchParams.get("state") ?? "";
  if (!expected || !sameString(state, expected)) return redirect("/oauth?error=invalid_state", setCookies);

  const deviceId = cookies.get(COOKIE.device);
  const headers = forwardHeaders(request);
  headers.set("content-type", "application/json");
  const res = await env.AUTH.fetch(
    new Request(`${API_ORIGIN}/v1/tokens/oauth`, {
      method: "POST",
      headers,
      body: JSON.stringify({
        code,
        description: describe(request.headers.get("user-agent")),
        ...(isDeviceId(deviceId) ? { device_id: deviceId } : {}),
      }),
    }),
  );
  const data = (await res.json().catch(() => ({}))) as Record<string, unknown> & { error?: { code?: string } };
  if (res.ok && typeof data.access_token === "string") {
    // Not straight to /profile: this navigation began on the provider's site, so the browser
    // would not send the new SameSite=Strict cookies with it. The /oauth page moves on from here.
    return redirect("/oauth?signed_in=1", [...setCookies, ...tokenCookies(data as unknown as TokenPair)]);
  }
  // The account has an authenticator app: the provider was the first step; the login page asks
  // for the code, and /api/auth/tokens/mfa takes the mfa_token from this cookie.
  if (res.status === 401 && typeof (data as { mfa_token?: unknown }).mfa_token === "string") {
    const mfa = serializeCookie(COOKIE.mfa, data.mfa_token as string, { maxAge: MFA_TOKEN_MAX_AGE });
    return redirect("/login?step=mfa", [...setCookies, mfa]);
  }
  const error = /^[a-z_]{1,64}$/.test(data.error?.code ?? "") ? (data.error?.code as string) : "provider_error";
  return redirect(`/oauth?error=${error}`, setCookies);
};
