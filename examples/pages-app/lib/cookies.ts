// Cookies of the example. Tokens live only in HttpOnly cookies that page scripts cannot read;
// the `__Host-` prefix makes the browser insist on Secure, Path=/ and no Domain, so a sibling
// subdomain cannot plant or overwrite them. (Browsers treat http://localhost as secure, so this
// works in local development too.)
import type { TokenPair as RegistryTokenPair } from "user-registry/client";

export const COOKIE = {
  /** The access token (a JWT). */
  access: "__Host-ur_at",
  /** The refresh token (opaque). */
  refresh: "__Host-ur_rt",
  /** This browser's device id, kept across logins so a re-login replaces this device's session. */
  device: "__Host-ur_did",
  /** The mfa_token of a login's first step (401 mfa_required), until the second step spends it. */
  mfa: "__Host-ur_mfa",
  /**
   * The `state` of a "Sign in with …" round trip, set when it starts and compared by
   * functions/oauth.ts when the registry sends the browser back (SameSite=Lax: that return is a
   * navigation from another site, on which a Strict cookie is not sent).
   */
  oauthState: "__Host-ur_oauth",
  /** The CSRF token: readable by page scripts, which echo it in the X-CSRF-Token header. */
  csrf: "__Host-ur_csrf",
} as const;

export const CSRF_HEADER = "x-csrf-token";

/** An mfa_token lives 5 minutes (docs/api.md §12); its cookie no longer. */
export const MFA_TOKEN_MAX_AGE = 300;

/** A sign-in at a provider has this long to come back. */
export const OAUTH_STATE_MAX_AGE = 600;

/** About 400 days, the longest lifetime browsers keep a cookie. */
const LONG = 400 * 24 * 3600;

export function readCookies(request: Request): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (request.headers.get("cookie") ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i < 0) continue;
    const name = part.slice(0, i).trim();
    if (!name || out.has(name)) continue;
    try {
      out.set(name, decodeURIComponent(part.slice(i + 1).trim()));
    } catch {
      // a value we did not write; ignore it
    }
  }
  return out;
}

export function serializeCookie(
  name: string,
  value: string,
  opts: { maxAge: number; httpOnly?: boolean; sameSite?: "Strict" | "Lax" },
): string {
  const parts = [
    `${name}=${encodeURIComponent(value)}`,
    "Path=/",
    "Secure",
    `SameSite=${opts.sameSite ?? "Strict"}`,
    `Max-Age=${opts.maxAge}`,
  ];
  if (opts.httpOnly !== false) parts.push("HttpOnly");
  return parts.join("; ");
}

export const clearCookie = (name: string) => serializeCookie(name, "", { maxAge: 0 });

/** The parts of the registry's TokenPair (user-registry/client's type) that go into cookies. */
export type TokenPair = Pick<
  RegistryTokenPair,
  "access_token" | "refresh_token" | "expires_in" | "refresh_expires_in" | "device_id"
>;

/**
 * Set-Cookie values for a new token pair. Both token cookies live as long as the refresh token:
 * the access token's own `exp` decides when it is refreshed (verify answers `token_expired`).
 * A first step's mfa_token left from an earlier login is cleared: a session is now set.
 */
export function tokenCookies(pair: TokenPair): string[] {
  const maxAge = Math.max(60, Math.floor(pair.refresh_expires_in));
  return [
    serializeCookie(COOKIE.access, pair.access_token, { maxAge }),
    serializeCookie(COOKIE.refresh, pair.refresh_token, { maxAge }),
    serializeCookie(COOKIE.device, pair.device_id, { maxAge: LONG }),
    clearCookie(COOKIE.mfa),
  ];
}

/** Set-Cookie values that end the session in this browser (the device id stays), an mfa_token too. */
export const endSessionCookies = (): string[] => [
  clearCookie(COOKIE.access),
  clearCookie(COOKIE.refresh),
  clearCookie(COOKIE.mfa),
];

/** 32 random bytes, base64url. */
export function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

export function newCsrfCookie(): string {
  return serializeCookie(COOKIE.csrf, randomToken(), { maxAge: LONG, httpOnly: false });
}

export const isDeviceId = (s: string | undefined): s is string => !!s && /^[A-Za-z0-9]{32}$/.test(s);
