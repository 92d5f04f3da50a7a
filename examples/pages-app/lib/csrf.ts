// CSRF protection for state-changing requests: the Origin must be this site, and the
// X-CSRF-Token header must echo the CSRF cookie (double submit). SameSite=Strict on the token
// cookies already keeps them off cross-site requests; these checks stand even where it would not.
import { COOKIE, CSRF_HEADER, readCookies } from "./cookies";

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** Constant-time comparison of two strings. */
function same(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** Why the request fails the CSRF checks, or null when it passes (or is safe). */
export function csrfProblem(request: Request): string | null {
  if (SAFE.has(request.method)) return null;
  const origin = request.headers.get("origin");
  if (!origin || origin !== new URL(request.url).origin) return "The request did not come from this site";
  const cookie = readCookies(request).get(COOKIE.csrf);
  const header = request.headers.get(CSRF_HEADER);
  if (!cookie || !header || !same(cookie, header)) return "The CSRF token is missing or does not match";
  return null;
}
