/**
 * `user-registry/client`: typed calls to user-registry's HTTP API (docs/api.md) and `authFetch`,
 * which attaches the access token and, when the registry answers `token_expired`, refreshes once
 * for all concurrent callers (one refresh in flight) and retries. The refresh token is kept in the
 * given storage (memory by default).
 *
 * Uses only the standard fetch API (browsers, React Native, Node ≥ 18, Workers, Deno, Bun); its
 * type declarations need no Workers types.
 */

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

// ------------------------------------------------------------------------------------------
// Wire types (docs/api.md §2–§5). test/sdk-types.test.ts checks them against the API's schemas.

export interface EmailEntry {
  email: string;
  current: boolean;
  /** A code sent to this address was accepted. */
  verified: boolean;
  added_at: string;
}
export interface User {
  id: string;
  realm: string;
  email: string | null;
  /** Whether the current email was proven by a code sent to it. */
  email_verified: boolean;
  emails: EmailEntry[];
  phone_number: string | null;
  full_name: string | null;
  image_url: string | null;
  roles: string[];
  status: "active" | "pending" | "disabled";
  source: "password" | "phone" | "admin" | "oidc";
  profile: Record<string, unknown>;
  created_at: string;
  updated_at: string;
  [field: string]: unknown;
}
export interface PublicUser {
  id: string;
  full_name: string | null;
  image_url: string | null;
}
export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_expires_in: number;
  device_id: string;
  user: User;
}
export interface Device {
  device_id: string;
  description: string | null;
  current: boolean;
  created_at: string;
  last_seen_at: string;
  push_token: string | null;
  push_token_updated_at: string | null;
}
export interface PublicToken {
  token: string;
  device_id: string;
  expires_in: number;
}
export interface SignUpInput {
  email: string;
  password: string;
  password_confirmation?: string;
  full_name: string;
  phone_number?: string;
  profile?: Record<string, unknown>;
  captcha_token?: string;
  device_id?: string;
}
export interface LoginInput {
  email: string;
  password: string;
  device_id?: string;
  description?: string;
}
export interface UserPatch {
  full_name?: string;
  phone_number?: string | null;
  /** The OTP sent to a new phone_number (POST /v1/otp), proving the caller holds it. */
  phone_otp?: string;
  image_url?: string | null;
  profile?: Record<string, unknown>;
}
export interface OtpSent {
  expires_in: number;
  retry_after: number;
}
export interface OtpVerifyInput {
  phone_number: string;
  otp: string;
  name?: string;
  fcm_token?: string;
  device_id?: string;
  description?: string;
}

// Second factors and passkeys (docs/api.md §12).

export interface TotpEnrolment {
  /** The shared secret, base32 (for typing into the app). */
  secret: string;
  /** `otpauth://totp/…`, for a QR code. */
  otpauth_uri: string;
}
export interface RecoveryCodes {
  /** Shown once; each works once. */
  recovery_codes: string[];
}
/** `GET /v1/users/me/mfa`: which second factors the account has now. */
export interface MfaStatus {
  /** An authenticator app is on (enrolled and confirmed; a pending enrolment does not count). */
  totp: boolean;
  /** Recovery codes not used yet (0 without the app). */
  recovery_codes_left: number;
  /** Registered passkeys. */
  passkeys: number;
}
/** The second step of a login that answered `401 mfa_required`: exactly one of `code` and `recovery_code`. */
export type MfaLoginInput =
  | { mfa_token: string; code: string; recovery_code?: never }
  | { mfa_token: string; recovery_code: string; code?: never };
export interface Passkey {
  id: string;
  name: string | null;
  created_at: string;
  last_used_at: string | null;
  backed_up: boolean;
  transports: string[];
}
/** How a passkey may reach the browser (WebAuthn's AuthenticatorTransport, with the newer values). */
export type PasskeyTransport = "ble" | "cable" | "hybrid" | "internal" | "nfc" | "smart-card" | "usb";
export type UserVerification = "discouraged" | "preferred" | "required";
/** A credential named in WebAuthn options, its id base64url. */
export interface PasskeyDescriptor {
  id: string;
  type: "public-key";
  transports?: PasskeyTransport[];
}
/**
 * WebAuthn creation options in their JSON form (PublicKeyCredentialCreationOptionsJSON), as
 * `passkeyRegistrationOptions` answers them: hand them to the platform as they are, e.g.
 * `startRegistration({ optionsJSON })` of @simplewebauthn/browser.
 */
export interface PasskeyCreationOptions {
  rp: { id?: string; name: string };
  /** The user handle (`id`, base64url) and the names the authenticator shows. */
  user: { id: string; name: string; displayName: string };
  challenge: string;
  pubKeyCredParams: { alg: number; type: "public-key" }[];
  timeout?: number;
  /** The account's passkeys, so the same authenticator is not registered twice. */
  excludeCredentials?: PasskeyDescriptor[];
  authenticatorSelection?: {
    authenticatorAttachment?: "platform" | "cross-platform";
    requireResidentKey?: boolean;
    residentKey?: "discouraged" | "preferred" | "required";
    userVerification?: UserVerification;
  };
  hints?: ("hybrid" | "security-key" | "client-device")[];
  attestation?: "direct" | "enterprise" | "indirect" | "none";
  attestationFormats?: ("fido-u2f" | "packed" | "android-safetynet" | "android-key" | "tpm" | "apple" | "none")[];
  extensions?: { credProps?: boolean };
}
/**
 * WebAuthn request options in their JSON form (PublicKeyCredentialRequestOptionsJSON), as
 * `passkeyLoginOptions` answers them: e.g. `startAuthentication({ optionsJSON })`.
 */
export interface PasskeyRequestOptions {
  challenge: string;
  timeout?: number;
  rpId?: string;
  /** Empty for a discoverable credential (no user named). */
  allowCredentials?: PasskeyDescriptor[];
  userVerification?: UserVerification;
  hints?: ("hybrid" | "security-key" | "client-device")[];
}
/** @deprecated Use `PasskeyCreationOptions` or `PasskeyRequestOptions`. */
export type WebAuthnOptions = PasskeyCreationOptions | PasskeyRequestOptions;
/** A WebAuthn registration or authentication response in its JSON form (what @simplewebauthn/browser returns). */
export interface WebAuthnResponse {
  id: string;
  rawId: string;
  type: "public-key";
  response: { clientDataJSON: string };
  clientExtensionResults?: object;
  authenticatorAttachment?: string;
}
export interface PasskeyLoginInput {
  response: WebAuthnResponse;
  device_id?: string;
  description?: string;
}

// Identity providers (docs/api.md §13).

export interface OidcLoginInput {
  /** The id of a provider of the registry's OIDC_PROVIDERS. */
  provider: string;
  id_token: string;
  /** The nonce the app gave the provider. */
  nonce?: string;
  /** For a new account (Apple gives the name to the app only). */
  name?: string;
  device_id?: string;
  description?: string;
}
export interface OauthLoginInput {
  /** The one-time code the registry put on the app's redirect_uri. */
  code: string;
  device_id?: string;
  description?: string;
}
export interface Identity {
  provider: string;
  subject: string;
  email: string | null;
  created_at: string;
}
export type FederatedTokenPair = TokenPair & { created: boolean };

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

/** 32 random bytes, base64url: an OAuth `state`. */
function randomState(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

const ACCESS = "access_token";
const REFRESH = "refresh_token";
const DEVICE = "device_id";

/** Builds a client. Nothing is fetched until the first call. */
export function createClient(options: ClientOptions) {
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
  const enc = encodeURIComponent;

  return {
    authFetch,
    refresh,
    /** The stored access token, if any. */
    accessToken: async () => (await storage.get(key(ACCESS))) ?? null,
    /** Forgets the stored tokens without calling the registry. */
    clear: forget,
    publicToken: async (device_id?: string) => {
      const t = await call<PublicToken>("POST", "/v1/tokens/public", { device_id: device_id ?? (await deviceId()) });
      await storage.set(key(DEVICE), t.device_id);
      return t;
    },
    signUp: (input: SignUpInput) => call<User>("POST", "/v1/users", input),
    /** Password login. With an authenticator app on it throws `RegistryError` `mfa_required` carrying `mfaToken`: finish with `mfaLogin`. */
    login: (input: LoginInput) => signIn<TokenPair>("/v1/tokens", input),
    logout: async (opts: { all?: boolean } = {}) => {
      try {
        await authed<void>("POST", "/v1/logout", opts);
      } finally {
        await forget();
      }
    },
    me: () => authed<User>("GET", "/v1/users/me"),
    getUser: (id: string) => authed<User | PublicUser>("GET", `/v1/users/${encodeURIComponent(id)}`),
    updateUser: (id: string, patch: UserPatch) => authed<User>("PATCH", `/v1/users/${encodeURIComponent(id)}`, patch),
    deleteUser: async (id: string) => authed<void>("DELETE", `/v1/users/${encodeURIComponent(id)}`),
    changeEmail: (input: { email: string; current_password?: string }) =>
      authed<User>("PUT", "/v1/users/me/email", input),
    changePassword: (input: { password: string; password_confirmation: string; current_password?: string }) =>
      authed<void>("PUT", "/v1/users/me/password", input),
    requestPasswordReset: (email: string) => call<Record<string, never>>("POST", "/v1/users/reset", { email }),
    resetPassword: (input: { email: string; code: string; password: string; password_confirmation: string }) =>
      call<void>("PUT", "/v1/users/reset", input),
    devices: () => authed<{ devices: Device[] }>("GET", "/v1/devices"),
    updateDevice: (input: { push_token?: string | null; description?: string | null }) =>
      authed<Device>("PUT", "/v1/devices/current", input),
    logoutDevice: (id: string) => authed<void>("DELETE", `/v1/devices/${encodeURIComponent(id)}`),
    sendOtp: (input: { phone_number: string; captcha_token?: string }) => call<OtpSent>("POST", "/v1/otp", input),
    verifyOtp: (input: OtpVerifyInput) => signIn<TokenPair & { created: boolean }>("/v1/otp/verify", input),

    // Second factors (docs/api.md §12). Enrolment and removal need a fresh access token (a login just now).
    /** Whether the authenticator app is on, how many recovery codes are left, how many passkeys. */
    mfaStatus: () => authed<MfaStatus>("GET", "/v1/users/me/mfa"),
    /** Starts enrolling an authenticator app: the secret and its otpauth URI; on once `confirmTotp` accepts a first code. */
    enrolTotp: () => authed<TotpEnrolment>("POST", "/v1/users/me/mfa/totp"),
    /** Confirms the enrolment with the app's first code; answers the 10 recovery codes (shown once). */
    confirmTotp: (code: string) => authed<RecoveryCodes>("PUT", "/v1/users/me/mfa/totp", { code }),
    /** Turns the authenticator app off; the recovery codes go too. */
    removeTotp: () => authed<void>("DELETE", "/v1/users/me/mfa/totp"),
    /** A new set of recovery codes; the previous set stops working. */
    regenerateRecoveryCodes: () => authed<RecoveryCodes>("POST", "/v1/users/me/mfa/recovery-codes"),
    /** The second step after `401 mfa_required` (`RegistryError.mfaToken`): an app code or a recovery code. */
    mfaLogin: async (input: MfaLoginInput) => keep(await call<TokenPair>("POST", "/v1/tokens/mfa", input)),

    // Passkeys (docs/api.md §12).
    /** Creation options for `navigator.credentials.create()` (fresh access token). */
    passkeyRegistrationOptions: () => authed<PasskeyCreationOptions>("POST", "/v1/users/me/passkeys/options"),
    /** Registers the passkey from the platform's registration response (fresh access token). */
    registerPasskey: (input: { response: WebAuthnResponse; name?: string }) =>
      authed<Passkey>("POST", "/v1/users/me/passkeys", input),
    passkeys: () => authed<{ passkeys: Passkey[] }>("GET", "/v1/users/me/passkeys"),
    deletePasskey: (id: string) => authed<void>("DELETE", `/v1/users/me/passkeys/${enc(id)}`),
    /** Request options for `navigator.credentials.get()` with a discoverable credential (no user named). */
    passkeyLoginOptions: () => call<PasskeyRequestOptions>("POST", "/v1/tokens/passkey/options", {}),
    /** Signs in with the platform's authentication response. */
    passkeyLogin: (input: PasskeyLoginInput) => signIn<TokenPair>("/v1/tokens/passkey", input),

    // Identity providers (docs/api.md §13).
    /** Signs in with a provider's ID token (native apps). */
    oidcLogin: (input: OidcLoginInput) => signIn<FederatedTokenPair>("/v1/tokens/oidc", input),
    /**
     * Where to send the browser to start a web sign-in (`GET /v1/oauth/{provider}/authorize`); the
     * registry comes back to `redirectUri` (listed in its OAUTH_REDIRECT_URIS) with `?code&state`.
     * `state` is a new random value unless one is given. Keep it where only this browser or app
     * can read it (sessionStorage, an HttpOnly cookie) and, on the return, call `oauthLogin` only
     * when the returned `state` equals it: otherwise someone else's code could be swapped here,
     * signing this browser into their account (login CSRF).
     */
    oauthAuthorizeUrl: (provider: string, redirectUri: string, state: string = randomState()) => {
      const q = new URLSearchParams({ redirect_uri: redirectUri, state });
      return { url: url(`/v1/oauth/${enc(provider)}/authorize?${q}`), state };
    },
    /** Swaps the one-time code of the web flow for a session. */
    oauthLogin: (input: OauthLoginInput) => signIn<FederatedTokenPair>("/v1/tokens/oauth", input),
    identities: () => authed<{ identities: Identity[] }>("GET", "/v1/users/me/identities"),
    /** Links a provider's identity to this account (fresh access token). */
    linkIdentity: (input: { provider: string; id_token: string; nonce?: string }) =>
      authed<Identity>("POST", "/v1/users/me/identities", input),
    /** `409 last_credential` when it is the account's only way in. */
    unlinkIdentity: (provider: string) => authed<void>("DELETE", `/v1/users/me/identities/${enc(provider)}`),
  };
}

export type Client = ReturnType<typeof createClient>;
