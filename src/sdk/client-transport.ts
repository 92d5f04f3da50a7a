// The transport of `user-registry/client`: fetch and error parsing, token storage, the
// single-flight refresh and `authFetch`. The typed calls (client-*.ts) are built on it.
import type { TokenPair } from "./client-types.js";

/** Minimal fetch types, so the declarations need neither DOM nor Workers types. */
export interface FetchResponse {
  readonly ok: boolean;
  readonly status: number;
  readonly headers: { get(name: string): string | null };
  json(): Promise<unknown>;
  text(): Promise<string>;
}
export interface FetchInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: unknown;
}
export type FetchLike = (url: string, init?: FetchInit) => Promise<FetchResponse>;

/** Where the client keeps its tokens: localStorage, AsyncStorage, a Map… (sync or async). */
export interface TokenStorage {
  get(key: string): string | null | undefined | Promise<string | null | undefined>;
  set(key: string, value: string): void | Promise<void>;
  delete(key: string): void | Promise<void>;
}

/** A storage in memory (the default). */
export function memoryStorage(): TokenStorage {
  const m = new Map<string, string>();
  return { get: (k) => m.get(k) ?? null, set: (k, v) => void m.set(k, v), delete: (k) => void m.delete(k) };
}

export interface ClientOptions {
  /** The registry's base URL, e.g. `https://auth.example.com` (a realm: `https://…/v1/realms/acme` is not needed, see `realm`). */
  baseUrl: string;
  /** The realm (default `default`): calls go to `/v1/realms/<realm>/...`. */
  realm?: string;
  storage?: TokenStorage;
  fetch?: FetchLike;
  /** Prefix of the storage keys (default `user-registry:`). */
  storageKey?: string;
}

/** An error answer of the registry (docs/api.md §1). */
export class RegistryError extends Error {
  readonly status: number;
  readonly code: string;
  readonly fields?: Record<string, string>;
  /** Private, so neither `console.log(error)`, `JSON.stringify` nor an error reporter records it. */
  readonly #mfaToken?: string;
  /** With `401 mfa_required`: the second factors the account accepts (`totp`, `recovery_code`). */
  readonly mfaMethods?: string[];
  constructor(
    status: number,
    code: string,
    message: string,
    fields?: Record<string, string>,
    mfa?: { mfa_token?: string; mfa_methods?: string[] },
  ) {
    super(message);
    this.name = "RegistryError";
    this.status = status;
    this.code = code;
    this.fields = fields;
    if (typeof mfa?.mfa_token === "string") this.#mfaToken = mfa.mfa_token;
    if (Array.isArray(mfa?.mfa_methods)) this.mfaMethods = mfa.mfa_methods;
  }
  /**
   * With `401 mfa_required`: the token for `mfaLogin` (docs/api.md §12). A live credential for
   * the second step, so it is no own enumerable property: logging or serialising the error
   * leaves it out.
   */
  get mfaToken(): string | undefined {
    return this.#mfaToken;
  }
}

export const ACCESS = "access_token";
export const REFRESH = "refresh_token";
export const DEVICE = "device_id";

/** The plumbing shared by the typed calls of one client. */
export function createTransport(options: ClientOptions) {
  const base = options.baseUrl.replace(/\/+$/, "");
  const prefix =
    options.realm && options.realm !== "default" ? `/v1/realms/${encodeURIComponent(options.realm)}` : "/v1";
  const storage = options.storage ?? memoryStorage();
  const key = (k: string) => `${options.storageKey ?? "user-registry:"}${k}`;
  const doFetch: FetchLike = options.fetch ?? ((url, init) => (globalThis.fetch as unknown as FetchLike)(url, init));

  const url = (path: string) =>
    /^https?:\/\//.test(path) ? path : `${base}${path.startsWith("/v1/") ? prefix + path.slice(3) : path}`;

  async function parse<T>(res: FetchResponse): Promise<T> {
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    const body = text ? JSON.parse(text) : undefined;
    if (!res.ok) {
      const b = body as
        | { error?: { code?: string; message?: string; fields?: Record<string, string> }; mfa_token?: string }
        | undefined;
      const e = b?.error;
      throw new RegistryError(
        res.status,
        e?.code ?? "http_error",
        e?.message ?? `HTTP ${res.status}`,
        e?.fields,
        b as { mfa_token?: string; mfa_methods?: string[] } | undefined,
      );
    }
    return body as T;
  }

  async function call<T>(method: string, path: string, body?: unknown, token?: string | null): Promise<T> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (token) headers.authorization = `Bearer ${token}`;
    return parse<T>(
      await doFetch(url(path), { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) }),
    );
  }

  async function keep<P extends TokenPair>(pair: P): Promise<P> {
    await Promise.all([
      storage.set(key(ACCESS), pair.access_token),
      storage.set(key(REFRESH), pair.refresh_token),
      storage.set(key(DEVICE), pair.device_id),
    ]);
    return pair;
  }

  async function forget(): Promise<void> {
    await Promise.all([storage.delete(key(ACCESS)), storage.delete(key(REFRESH))]);
  }

  let refreshing: Promise<TokenPair> | null = null;

  /** Rotates the refresh token; concurrent callers share one request. */
  function refresh(): Promise<TokenPair> {
    if (refreshing) return refreshing;
    const run = async (): Promise<TokenPair> => {
      // Nothing below runs before `refreshing` is set, so the `finally` always clears this
      // refresh, even when the storage throws at once.
      await null;
      try {
        const refreshToken = await storage.get(key(REFRESH));
        if (!refreshToken) throw new RegistryError(401, "missing_token", "Not logged in");
        try {
          return await keep(await call<TokenPair>("POST", "/v1/tokens/refresh", { refresh_token: refreshToken }));
        } catch (e) {
          // The session is over (reused, revoked, expired): the tokens are of no more use.
          if (e instanceof RegistryError && e.status === 401) await forget();
          throw e;
        }
      } finally {
        if (refreshing === p) refreshing = null;
      }
    };
    const p = run();
    refreshing = p;
    return p;
  }

  const codeOf = async (res: FetchResponse): Promise<string | null> => {
    if (res.status !== 401) return null;
    const www = res.headers.get("www-authenticate") ?? "";
    const m = /error_description="([a-z_]+)"/.exec(www);
    return m ? (m[1] as string) : null;
  };

  /**
   * fetch with the access token attached. On 401 token_expired it refreshes (once, shared by
   * every caller waiting at that moment) and retries once with the new token. A path starting
   * with `/v1/` goes to the client's realm.
   */
  async function authFetch(path: string, init: FetchInit = {}): Promise<FetchResponse> {
    const send = (token: string | null | undefined) =>
      doFetch(url(path), {
        ...init,
        headers: { ...(init.headers ?? {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
      });
    const token = await storage.get(key(ACCESS));
    const res = await send(token);
    if ((await codeOf(res)) !== "token_expired") return res;
    // Another caller may have refreshed already: use its token if it is newer than ours.
    const current = await storage.get(key(ACCESS));
    const fresh = current && current !== token ? current : (await refresh()).access_token;
    return send(fresh);
  }

  /** A typed authenticated call through authFetch. */
  async function authed<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    return parse<T>(
      await authFetch(path, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) }),
    );
  }

  const deviceId = async () => (await storage.get(key(DEVICE))) ?? undefined;
  /** A login route: this client's device id unless the input names one; the pair is kept. */
  const signIn = async <P extends TokenPair>(path: string, input: object): Promise<P> =>
    keep(await call<P>("POST", path, { device_id: await deviceId(), ...input }));

  return { url, call, authed, authFetch, refresh, keep, forget, signIn, deviceId, storage, key };
}

export type Transport = ReturnType<typeof createTransport>;
