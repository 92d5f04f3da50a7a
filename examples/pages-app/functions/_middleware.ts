// Runs before every request, pages and static files included:
// 1. security headers on every response, and a CSRF cookie for browsers that have none;
// 2. CSRF checks (Origin + double-submit token) on state-changing /api/* requests;
// 3. the signed-in pages (/profile, /devices, /security) need a session: without one the browser is
//    redirected to /login (strict verify, so a device logged out elsewhere is noticed at once).
import { type Env, errorResponse, withCookies } from "../lib/auth";
import { COOKIE, newCsrfCookie, readCookies } from "../lib/cookies";
import { csrfProblem } from "../lib/csrf";
import { authenticate } from "../lib/session";

const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "same-origin",
};

const PROTECTED = new Set(["/profile", "/devices", "/security"]);

const headers: PagesFunction<Env> = async ({ request, next }) => {
  const res = await next();
  const out = new Response(res.body, res);
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) {
    if (!out.headers.has(name)) out.headers.set(name, value);
  }
  if (!readCookies(request).has(COOKIE.csrf)) out.headers.append("set-cookie", newCsrfCookie());
  return out;
};

const csrf: PagesFunction<Env> = async ({ request, next }) => {
  const url = new URL(request.url);
  if (url.pathname.startsWith("/api/")) {
    const problem = csrfProblem(request);
    if (problem) return errorResponse(403, "csrf_failed", problem);
  }
  return next();
};

const pages: PagesFunction<Env> = async ({ request, env, next }) => {
  if (request.method !== "GET" && request.method !== "HEAD") return next();
  const url = new URL(request.url);
  if (url.pathname === "/") return new Response(null, { status: 302, headers: { location: "/profile" } });
  const page = url.pathname.replace(/\/$/, "").replace(/\.html$/, "");
  if (!PROTECTED.has(page)) return next();

  const session = await authenticate(env, request, { strict: true });
  if (session.ok) {
    const res = withCookies(await next(), session.setCookies);
    const out = new Response(res.body, res);
    out.headers.set("cache-control", "no-store");
    return out;
  }
  const login = new URL("/login", url);
  login.searchParams.set("next", page);
  // Say why when this browser had a session that has now ended.
  if (session.code !== "missing_token") login.searchParams.set("reason", session.code);
  const res = new Response(null, { status: 302, headers: { location: login.pathname + login.search } });
  res.headers.set("cache-control", "no-store");
  for (const c of session.setCookies) res.headers.append("set-cookie", c);
  return res;
};

export const onRequest = [headers, csrf, pages];
