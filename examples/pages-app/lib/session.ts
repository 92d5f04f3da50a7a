// The browser session: tokens from cookies, verified over the binding, refreshed when expired.
import { API_ORIGIN, type Claims, type Env, type VerifyOptions } from "./auth";
import { COOKIE, endSessionCookies, readCookies, type TokenPair, tokenCookies } from "./cookies";

/**
 * Codes after which the tokens in this browser are of no further use: the cookies are cleared
 * and the user is sent to the login page. (`forbidden`, `fresh_token_required`, `429` or a 5xx
 * leave the session alone.) public/app.js keeps the same list for the browser (it has no build
 * step to import this one): change both together.
 */
export const SESSION_OVER = new Set([
  "missing_token",
  "invalid_token",
  "token_expired",
  "token_revoked",
  "session_revoked",
  "refresh_token_reused",
  "user_not_found",
  "account_disabled",
  "account_pending",
]);

/** HTTP status of the verify codes that are not 401 (docs/api.md §2). */
const STATUS: Record<string, number> = {
  forbidden: 403,
  user_not_found: 403,
  account_disabled: 403,
  account_pending: 403,
  config_invalid: 503,
  internal_error: 500,
};

export interface ApiFailure {
  ok: false;
  status: number;
  code: string;
  message: string;
  /** Set-Cookie values to send with the failure (clearing the session when it is over). */
  setCookies: string[];
}

/** Headers worth passing from the browser's request to the API. */
export function forwardHeaders(request: Request): Headers {
  const h = new Headers({ accept: "application/json" });
  for (const name of ["cf-connecting-ip", "x-request-id", "user-agent"]) {
    const v = request.headers.get(name);
    if (v) h.set(name, v);
  }
  return h;
}

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  try {
    const body = (await res.json()) as { error?: { code?: string; message?: string } };
    return { code: body.error?.code ?? "internal_error", message: body.error?.message ?? res.statusText };
  } catch {
    return { code: "internal_error", message: res.statusText };
  }
}

/** POST /v1/tokens/refresh over the binding. On a dead session the failure clears the cookies. */
export async function refreshTokens(
  env: Env,
  request: Request,
  refreshToken: string,
): Promise<{ ok: true; pair: TokenPair; setCookies: string[] } | ApiFailure> {
  const headers = forwardHeaders(request);
  headers.set("content-type", "application/json");
  const res = await env.AUTH.fetch(
    new Request(`${API_ORIGIN}/v1/tokens/refresh`, {
      method: "POST",
      headers,
      body: JSON.stringify({ refresh_token: refreshToken }),
    }),
  );
  if (res.ok) {
    const pair = (await res.json()) as TokenPair;
    return { ok: true, pair, setCookies: tokenCookies(pair) };
  }
  const { code, message } = await errorOf(res);
  const over = res.status === 401 || SESSION_OVER.has(code);
  return { ok: false, status: res.status, code, message, setCookies: over ? endSessionCookies() : [] };
}

export type Authenticated = { ok: true; claims: Claims; accessToken: string; setCookies: string[] } | ApiFailure;

/**
 * The session of this request: the access-token cookie verified with `env.AUTH.verify`; when it
 * has expired (or its cookie is gone) the refresh cookie is spent once for a new pair, which is
 * verified in turn. The caller sends `setCookies` with its response.
 */
export async function authenticate(env: Env, request: Request, options: VerifyOptions = {}): Promise<Authenticated> {
  const cookies = readCookies(request);
  const access = cookies.get(COOKIE.access);
  const refresh = cookies.get(COOKIE.refresh);
  const fail = (code: string, message: string, setCookies?: string[]): ApiFailure => ({
    ok: false,
    status: STATUS[code] ?? 401,
    code,
    message,
    setCookies: setCookies ?? (SESSION_OVER.has(code) ? endSessionCookies() : []),
  });

  if (!access && !refresh) return fail("missing_token", "Not logged in", []);
  if (access) {
    const r = await env.AUTH.verify(access, options);
    if (r.ok) return { ok: true, claims: r.claims, accessToken: access, setCookies: [] };
    if (r.code !== "token_expired" || !refresh) return fail(r.code, r.message);
  }
  const refreshed = await refreshTokens(env, request, refresh!);
  if (!refreshed.ok) return refreshed;
  const r = await env.AUTH.verify(refreshed.pair.access_token, options);
  if (!r.ok) return fail(r.code, r.message, SESSION_OVER.has(r.code) ? undefined : refreshed.setCookies);
  return { ok: true, claims: r.claims, accessToken: refreshed.pair.access_token, setCookies: refreshed.setCookies };
}
