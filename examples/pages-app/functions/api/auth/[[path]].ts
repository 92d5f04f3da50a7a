// /api/auth/* → user-registry's /v1/* over the AUTH service binding (env.AUTH.fetch).
//
// The browser never holds a token: the access token from the cookie is added as a Bearer header,
// token pairs in responses are moved into HttpOnly cookies and removed from the body, an expired
// access token is refreshed once with the refresh cookie and the request retried, and a session
// that is over (logged out elsewhere, refresh token reused...) clears the cookies.
import { API_ORIGIN, describe, type Env, errorResponse, withCookies } from "../../../lib/auth";
import {
  COOKIE,
  clearCookie,
  endSessionCookies,
  isDeviceId,
  MFA_TOKEN_MAX_AGE,
  OAUTH_STATE_MAX_AGE,
  randomToken,
  readCookies,
  serializeCookie,
  type TokenPair,
  tokenCookies,
} from "../../../lib/cookies";
import { forwardHeaders, refreshTokens, SESSION_OVER } from "../../../lib/session";

const PREFIX = "/api/auth";
/** Request bodies above this are refused here (the API's own limit is 16 KiB). */
const MAX_BODY = 64 * 1024;

/** Routes that take credentials in the body (or none) and must not carry the session's Bearer token. */
const CREDENTIAL_ROUTE =
  /^(?:\/realms\/[^/]+)?\/(?:tokens|tokens\/public|tokens\/oidc|tokens\/oauth|tokens\/mfa|tokens\/passkey|tokens\/passkey\/options|users|users\/reset|otp|otp\/verify)$/;
/** Routes whose body gets this browser's device id (and a description) when it brings none. */
const LOGIN_ROUTE = /^(?:\/realms\/[^/]+)?\/(?:tokens|tokens\/oidc|tokens\/oauth|tokens\/passkey|otp\/verify)$/;
/** The second step of a login (docs/api.md §12): its mfa_token comes from the cookie, not the page. */
const MFA_ROUTE = /^(?:\/realms\/[^/]+)?\/tokens\/mfa$/;
const REFRESH_ROUTE = /^(?:\/realms\/[^/]+)?\/tokens\/refresh$/;
const LOGOUT_ROUTE = /^(?:\/realms\/[^/]+)?\/logout$/;
const DEVICE_ROUTE = /^(?:\/realms\/[^/]+)?\/devices\/([^/]+)$/;
/** The start of "Sign in with …" (docs/api.md §13). */
const AUTHORIZE_ROUTE = /^(?:\/realms\/[^/]+)?\/oauth\/[^/]+\/authorize$/;

/**
 * The response for the browser: tokens moved from the JSON body into cookies. A first step that
 * answers `401 mfa_required` leaves its `mfa_token` in a short-lived HttpOnly cookie too; the page
 * learns only that a second factor is needed, and which kinds (`mfa_methods`).
 */
async function toBrowser(res: Response, setCookies: string[]): Promise<Response> {
  const headers = new Headers({ "cache-control": "no-store" });
  // location: GET /v1/oauth/{provider}/authorize answers 302 to the provider.
  for (const name of ["content-type", "x-request-id", "retry-after", "location"]) {
    const v = res.headers.get(name);
    if (v) headers.set(name, v);
  }
  let body: BodyInit | null = res.body;
  if (res.ok && (res.headers.get("content-type") ?? "").includes("application/json")) {
    const data = (await res.json()) as Record<string, unknown>;
    if (typeof data.access_token === "string" && typeof data.refresh_token === "string") {
      setCookies = [...setCookies, ...tokenCookies(data as unknown as TokenPair)];
    }
    delete data.access_token;
    delete data.refresh_token;
    body = JSON.stringify(data);
  } else if (res.status === 401 && (res.headers.get("content-type") ?? "").includes("application/json")) {
    const data = (await res.json()) as Record<string, unknown>;
    if (typeof data.mfa_token === "string") {
      setCookies = [...setCookies, serializeCookie(COOKIE.mfa, data.mfa_token, { maxAge: MFA_TOKEN_MAX_AGE })];
      delete data.mfa_token;
    }
    body = JSON.stringify(data);
  }
  const out = new Response(res.status === 204 ? null : body, { status: res.status, headers });
  for (const c of setCookies) out.headers.append("set-cookie", c);
  return out;
}

async function apiError(res: Response): Promise<string | null> {
  try {
    return ((await res.clone().json()) as { error?: { code?: string } }).error?.code ?? null;
  } catch {
    return null;
  }
}

export const onRequest: PagesFunction<Env> = async ({ request, env }) => {
  const url = new URL(request.url);
  const path = url.pathname.slice(PREFIX.length) || "/";
  const target = new URL(`/v1${path}${url.search}`, API_ORIGIN);
  // `..` (also percent-encoded) must not climb out of /v1.
  if (!target.pathname.startsWith("/v1/")) return errorResponse(404, "not_found", "Not found");
  const route = target.pathname.slice(3);

  const cookies = readCookies(request);
  const access = cookies.get(COOKIE.access);
  const refresh = cookies.get(COOKIE.refresh);
  const deviceId = cookies.get(COOKIE.device);

  // Refreshing is this Function's business: the browser has no refresh token to send.
  if (request.method === "POST" && REFRESH_ROUTE.test(route)) {
    if (!refresh) return errorResponse(401, "missing_token", "Not logged in");
    const r = await refreshTokens(env, request, refresh);
    if (!r.ok) return errorResponse(r.status, r.code, r.message, r.setCookies);
    const { access_token: _a, refresh_token: _r, ...rest } = r.pair as TokenPair & Record<string, unknown>;
    const res = Response.json(rest, { headers: { "cache-control": "no-store" } });
    for (const c of r.setCookies) res.headers.append("set-cookie", c);
    return res;
  }

  let body: ArrayBuffer | string | null = null;
  if (request.method !== "GET" && request.method !== "HEAD") {
    body = await request.arrayBuffer();
    if (body.byteLength > MAX_BODY) return errorResponse(413, "payload_too_large", "The request body is too large");
    if (request.method === "POST" && LOGIN_ROUTE.test(route)) body = withDevice(body, deviceId, request);
    if (request.method === "POST" && MFA_ROUTE.test(route)) {
      const mfaToken = cookies.get(COOKIE.mfa);
      if (!mfaToken) return errorResponse(401, "invalid_token", "Log in again: the second step has expired");
      body = withMfaToken(body, mfaToken);
    }
  }

  const credentialRoute = CREDENTIAL_ROUTE.test(route) && request.method !== "GET";
  const send = (token: string | undefined) => {
    const headers = forwardHeaders(request);
    const type = request.headers.get("content-type");
    if (type) headers.set("content-type", type);
    if (token && !credentialRoute) headers.set("authorization", `Bearer ${token}`);
    // A redirect (the start of "Sign in with …") goes to the browser, not followed here.
    return env.AUTH.fetch(new Request(target, { method: request.method, headers, body, redirect: "manual" }));
  };

  let setCookies: string[] = [];
  // "Sign in with …": the state is made here and kept in a cookie, whatever the page sent;
  // functions/oauth.ts compares it when the registry sends the browser back.
  if (request.method === "GET" && AUTHORIZE_ROUTE.test(route)) {
    const state = randomToken();
    target.searchParams.set("state", state);
    setCookies.push(serializeCookie(COOKIE.oauthState, state, { maxAge: OAUTH_STATE_MAX_AGE, sameSite: "Lax" }));
  }
  let token = access;
  let refreshed = false;
  const refreshOnce = async () => {
    refreshed = true;
    const r = await refreshTokens(env, request, refresh!);
    if (!r.ok) return r;
    token = r.pair.access_token;
    setCookies = r.setCookies;
    return null;
  };

  // The access cookie is gone but the refresh cookie is not: refresh before sending.
  if (!credentialRoute && !token && refresh) {
    const failed = await refreshOnce();
    if (failed) return errorResponse(failed.status, failed.code, failed.message, failed.setCookies);
  }
  let res = await send(token);
  if (!credentialRoute && res.status === 401) {
    const code = await apiError(res);
    if (code === "token_expired" && refresh && !refreshed) {
      const failed = await refreshOnce();
      if (failed) return errorResponse(failed.status, failed.code, failed.message, failed.setCookies);
      res = await send(token);
    }
  }

  // Logging out ends the session here whatever the API says about the token.
  if (request.method === "POST" && LOGOUT_ROUTE.test(route) && (res.ok || res.status === 401)) {
    return withCookies(new Response(null, { status: 204, headers: { "cache-control": "no-store" } }), [
      ...endSessionCookies(),
    ]);
  }
  // This device logged out from the devices list.
  const device = DEVICE_ROUTE.exec(route)?.[1];
  if (request.method === "DELETE" && res.status === 204 && device && device === deviceId) {
    setCookies = endSessionCookies();
  }
  // The second step succeeded, or its mfa_token is of no more use: forget it.
  if (request.method === "POST" && MFA_ROUTE.test(route) && (res.ok || (await apiError(res)) === "invalid_token")) {
    setCookies = [...setCookies, clearCookie(COOKIE.mfa)];
  }
  if (!credentialRoute && (res.status === 401 || res.status === 403) && token) {
    const code = await apiError(res);
    if (code && SESSION_OVER.has(code)) setCookies = endSessionCookies();
  }
  return toBrowser(res, setCookies);
};

/** The login body with this browser's device id and a description added when it has none. */
function withDevice(body: ArrayBuffer, deviceId: string | undefined, request: Request): ArrayBuffer | string {
  let data: unknown;
  try {
    data = JSON.parse(new TextDecoder().decode(body));
  } catch {
    return body; // the API answers invalid_json
  }
  if (!data || typeof data !== "object" || Array.isArray(data)) return body;
  const obj = data as Record<string, unknown>;
  if (obj.device_id === undefined && isDeviceId(deviceId)) obj.device_id = deviceId;
  if (obj.description === undefined || obj.description === "")
    obj.description = describe(request.headers.get("user-agent"));
  return JSON.stringify(obj);
}

/** The second step's body with the mfa_token of this browser's first step (whatever the page sent). */
function withMfaToken(body: ArrayBuffer | string, mfaToken: string): ArrayBuffer | string {
  let data: unknown;
  try {
    data = JSON.parse(typeof body === "string" ? body : new TextDecoder().decode(body));
  } catch {
    return body; // the API answers invalid_json
  }
  if (!data || typeof data !== "object" || Array.isArray(data)) return body;
  return JSON.stringify({ ...(data as Record<string, unknown>), mfa_token: mfaToken });
}
