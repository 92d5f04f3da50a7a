// What this Pages project knows about user-registry: the RPC surface of its `AuthService`
// entrypoint (docs/api.md §7), reached only through the `AUTH` service binding.
import type { AccessClaims } from "user-registry/verify";

/** Claims of a verified access token (docs/api.md §2), as user-registry/verify declares them. */
export type Claims = AccessClaims;

export type VerifyResult = { ok: true; claims: Claims } | { ok: false; code: string; message: string };

export interface VerifyOptions {
  fresh?: boolean;
  roles?: string[];
  strict?: boolean;
  realm?: string;
}

/** The `AuthService` entrypoint as seen through a service binding. */
export interface AuthService {
  fetch(request: Request): Promise<Response>;
  verify(token: string, options?: VerifyOptions): Promise<VerifyResult>;
  getUser(id: string, realm?: string): Promise<Record<string, unknown> | null>;
}

export interface Env {
  AUTH: AuthService;
  /** "Sign in with …" buttons of the login page: `id=Label` pairs, comma-separated, e.g. `google=Google,apple=Apple`; ids are those of the registry's OIDC_PROVIDERS. */
  SIGN_IN_PROVIDERS?: string;
}

/** What the middleware of /api/app/* hands to the handlers behind it. */
export type AppData = { claims: Claims };

/**
 * Requests over a service binding still need an absolute URL; its host is never resolved
 * (the binding decides where the request goes), so any name will do.
 */
export const API_ORIGIN = "https://user-registry.internal";

/** The error shape of docs/api.md §1, for the errors this project answers itself. */
export function errorResponse(status: number, code: string, message: string, setCookies: string[] = []): Response {
  const res = Response.json({ error: { code, message } }, { status, headers: { "cache-control": "no-store" } });
  for (const c of setCookies) res.headers.append("set-cookie", c);
  return res;
}

/** A copy of `res` whose headers can be changed, with `setCookies` appended. */
export function withCookies(res: Response, setCookies: string[]): Response {
  if (setCookies.length === 0) return res;
  const copy = new Response(res.body, res);
  for (const c of setCookies) copy.headers.append("set-cookie", c);
  return copy;
}

/** A short description of the browser, for the devices list ("Chrome on Linux"). */
export function describe(ua: string | null): string {
  if (!ua) return "Web browser";
  const browser = /Edg\//.test(ua)
    ? "Edge"
    : /Firefox\//.test(ua)
      ? "Firefox"
      : /Chrom(e|ium)\//.test(ua)
        ? "Chrome"
        : /Safari\//.test(ua)
          ? "Safari"
          : "Web browser";
  const os = /Android/.test(ua)
    ? "Android"
    : /iPhone|iPad/.test(ua)
      ? "iOS"
      : /Windows/.test(ua)
        ? "Windows"
        : /Mac OS X/.test(ua)
          ? "macOS"
          : /Linux/.test(ua)
            ? "Linux"
            : "";
  return os ? `${browser} on ${os}` : browser;
}
