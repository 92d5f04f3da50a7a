import { env, exports } from "cloudflare:workers";
import { importJWK, type JWK, SignJWT } from "jose";
import { vi } from "vitest";

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

let counter = 0;
/** A unique email for this test file run. */
export const uniqueEmail = (domain = "example.com") =>
  `user${Date.now().toString(36)}${(counter++).toString(36)}${Math.random().toString(36).slice(2, 6)}@${domain}`;

/** A 32-character device id. */
export const deviceId = (seed = "") =>
  (seed + crypto.randomUUID().replace(/-/g, "") + "x".repeat(32)).slice(0, 32).replace(/[^A-Za-z0-9]/g, "a");

/** Calls the worker under test as a client would. */
export async function api<T = any>(
  method: string,
  path: string,
  opts: { body?: unknown; raw?: BodyInit; token?: string; headers?: Record<string, string> } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  let body: BodyInit | undefined = opts.raw;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers["Content-Type"] ??= "application/json";
  }
  const res = await (exports as unknown as { default: Fetcher }).default.fetch(
    new Request(`https://registry.test${path}`, { method, headers, body }),
  );
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON (e.g. /docs)
  }
  return { status: res.status, headers: res.headers, body: parsed as T, text };
}

export const PASSWORD = "correct horse battery";

/**
 * A `/v1/...` path under a realm prefix: `withPrefix("/v1/realms/acme", "/v1/users")` is
 * `/v1/realms/acme/users`; an empty prefix leaves the path as it is.
 */
export function withPrefix(prefix: string, path: string): string {
  if (/^\/v1\/realms\/[^/]+\/?$/.test(prefix)) return prefix.replace(/\/$/, "") + path.replace(/^\/v1/, "");
  return `${prefix}${path}`;
}

/** Signs up a user and returns the User. */
export async function signUp(email = uniqueEmail(), extra: Record<string, unknown> = {}, prefix = "") {
  const res = await api("POST", withPrefix(prefix, "/v1/users"), {
    body: { email, password: PASSWORD, full_name: "Test User", ...extra },
  });
  if (res.status !== 201) throw new Error(`sign-up failed: ${res.status} ${res.text}`);
  return res.body;
}

/** Logs in and returns the TokenPair. */
export async function login(
  email: string,
  opts: { device_id?: string; description?: string; password?: string; prefix?: string } = {},
) {
  const res = await api("POST", withPrefix(opts.prefix ?? "", "/v1/tokens"), {
    body: { email, password: opts.password ?? PASSWORD, device_id: opts.device_id, description: opts.description },
  });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.text}`);
  return res.body;
}

/** Signs up a fresh user and logs in on one device. */
export async function newSession(opts: { email?: string; device_id?: string } = {}) {
  const email = opts.email ?? uniqueEmail();
  const user = await signUp(email);
  const pair = await login(email, { device_id: opts.device_id });
  return { email, user, pair };
}

/** Decodes a JWT's payload without verifying it. */
export function claimsOf(token: string): Record<string, any> {
  const part = token.split(".")[1] ?? "";
  return JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/")));
}

/** A private JWK with its kid, as in JWT_PRIVATE_KEYS. */
export type TestJwk = JWK & { kid: string };

/** The key the worker signs with (the first of JWT_PRIVATE_KEYS). */
export const configuredKey = (): TestJwk => (JSON.parse(env.JWT_PRIVATE_KEYS as string) as TestJwk[])[0] as TestJwk;

/** A P-256 key that is not in the keyset (kid "test-2"). */
export const otherKey = (): TestJwk => JSON.parse(env.TEST_OTHER_KEY) as TestJwk;

/**
 * Signs arbitrary claims as ES256 with a private JWK (the configured key unless given), header
 * `kid` = the key's kid unless `kid` says otherwise (null leaves it out). For forging tokens in tests.
 */
export async function signTestToken(
  claims: Record<string, unknown>,
  opts: { jwk?: TestJwk; kid?: string | null; header?: Record<string, unknown> } = {},
): Promise<string> {
  const jwk = opts.jwk ?? configuredKey();
  const { kid: _kid, ...material } = jwk;
  const key = await importJWK({ ...material, alg: "ES256" }, "ES256");
  const kid = opts.kid === undefined ? jwk.kid : opts.kid;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "ES256", typ: typOf(claims.type), ...(kid === null ? {} : { kid }), ...opts.header })
    .sign(key);
}

/** The header `typ` the worker puts on a kind of token (api.md §2); `JWT` for anything else. */
export const typOf = (type: unknown): string =>
  type === "access" ? "at+jwt" : type === "public" ? "public+jwt" : type === "authority" ? "authority+jwt" : "JWT";

/** Claims of a well-formed access token for `user`, as the worker would mint them now. */
export function accessClaimsFor(
  user: { id: string; realm: string; email: string | null; roles: string[]; full_name: string | null },
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const iat = Math.floor(Date.now() / 1000);
  return {
    iss: env.ISSUER,
    aud: env.ISSUER,
    sub: user.id,
    realm: user.realm,
    type: "access",
    did: deviceId(),
    sid: crypto.randomUUID(),
    jti: crypto.randomUUID(),
    iat,
    exp: iat + 900,
    auth_time: iat,
    fresh: true,
    roles: user.roles,
    email: user.email,
    name: user.full_name,
    ...overrides,
  };
}

/** Base64url of a string or bytes (no padding). */
export function b64u(input: string | Uint8Array): string {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Creates a realm row directly in D1 (a unique id unless given) and returns its id. */
export async function createRealm(
  settings: {
    id?: string;
    registration?: "open" | "allowlist" | "closed";
    approval_required?: boolean;
    captcha_required?: boolean;
    email_verification?: "optional" | "required";
  } = {},
): Promise<string> {
  const id = settings.id ?? `r${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  const now = new Date().toISOString();
  await env.DB.prepare(
    "INSERT INTO realms (id, registration, approval_required, captcha_required, email_verification, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
  )
    .bind(
      id,
      settings.registration ?? "open",
      settings.approval_required ? 1 : 0,
      settings.captcha_required ? 1 : 0,
      settings.email_verification ?? "optional",
      now,
      now,
    )
    .run();
  return id;
}

/**
 * Calls the worker's fetch directly with a modified env (e.g. a webhook configured, or
 * ENVIRONMENT "production"), and waits for its deferred work (waitUntil) before returning.
 */
export async function apiWithEnv<T = any>(
  overrides: Partial<Cloudflare.Env>,
  method: string,
  path: string,
  opts: { body?: unknown; token?: string; headers?: Record<string, string> } = {},
): Promise<ApiResponse<T>> {
  const { default: worker } = await import("../src/index");
  const { createExecutionContext, waitOnExecutionContext } = await import("cloudflare:test");
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.body !== undefined) {
    body = JSON.stringify(opts.body);
    headers["Content-Type"] ??= "application/json";
  }
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`https://registry.test${path}`, { method, headers, body }),
    { ...env, ...overrides },
    ctx,
  );
  const text = await res.text();
  await waitOnExecutionContext(ctx);
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body: parsed as T, text };
}

/** Polls `probe` until it returns a value other than undefined/null/false (for work the worker defers). */
export async function waitFor<T>(
  probe: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 3000,
): Promise<T> {
  // Counts rounds, not Date.now(): tests may freeze Date with fake timers.
  for (let round = 0; ; round++) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value as T;
    if (round * 10 > timeoutMs) throw new Error("waitFor: timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Requests an OTP for a phone number and returns the code, read from the development notifier's
 * log line (no webhook is configured in tests). Used to prove a number before adding it.
 */
export async function phoneCode(phone: string, prefix = ""): Promise<string> {
  const log = vi.spyOn(console, "log");
  try {
    const res = await api("POST", withPrefix(prefix, "/v1/otp"), { body: { phone_number: phone } });
    if (res.status !== 202) throw new Error(`otp send failed: ${res.status} ${res.text}`);
    const sent = loggedNotifications(log).find((m) => m.type === "otp" && m.to === phone && m.code);
    if (!sent) throw new Error("no OTP in the log");
    return sent.code as string;
  } finally {
    log.mockRestore();
  }
}

/**
 * Freezes the Date the worker sees (the worker and its Durable Objects run in the tests'
 * isolate) and returns a clock to move it. Undo with vi.useRealTimers().
 */
export function frozenClock(start = Date.now()) {
  vi.useFakeTimers({ toFake: ["Date"] });
  let now = start;
  vi.setSystemTime(now);
  return {
    get now() {
      return now;
    },
    advance(ms: number) {
      now += ms;
      vi.setSystemTime(now);
      return now;
    },
    set(ms: number) {
      now = ms;
      vi.setSystemTime(now);
      return now;
    },
  };
}

/** The notifications the development notifier logged (no webhook in tests), from a console.log spy. */
export function loggedNotifications(spy: { mock: { calls: unknown[][] } }): Record<string, any>[] {
  return spy.mock.calls.flatMap((args) => {
    try {
      const m = JSON.parse(String(args[0]));
      return m && m.event === "notification" ? [m] : [];
    } catch {
      return [];
    }
  });
}

/** A JWT signed with HMAC-SHA-256 under `secret`: the classic algorithm-confusion attack. */
export function hs256(claims: Record<string, unknown>, secret: string, kid = configuredKey().kid): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: "HS256", typ: "JWT", kid })
    .sign(new TextEncoder().encode(secret));
}

/** What an attacker might use as an HMAC secret, taken from the public JWKS. */
export function publicKeySecrets(jwks: { keys: Record<string, string>[] }): string[] {
  const pub = jwks.keys[0] as Record<string, string>;
  return [
    pub.x as string,
    pub.y as string,
    JSON.stringify(pub),
    JSON.stringify(jwks),
    JSON.stringify({ kty: pub.kty, crv: pub.crv, x: pub.x, y: pub.y }),
  ];
}

/**
 * Waits for the code of a notification the development notifier logs (sent after the response),
 * given a console.log spy started before the send; the newest one of that type to that address.
 */
export function loggedCode(spy: { mock: { calls: unknown[][] } }, type: string, to: string): Promise<string> {
  return waitFor(
    () =>
      loggedNotifications(spy)
        .filter((m) => m.type === type && m.to === to && m.code)
        .at(-1)?.code as string | undefined,
  );
}

/**
 * Signs up and proves the address with the code mailed to it (read from the development log), as
 * its owner would; a BOOTSTRAP_ADMIN_EMAILS address then claims its realm's admin seat if free.
 * Returns the User as it is after the proof.
 */
export async function signUpVerified(email = uniqueEmail(), extra: Record<string, unknown> = {}, prefix = "") {
  const spy = vi.spyOn(console, "log");
  try {
    const user = await signUp(email, extra, prefix);
    const code = await loggedCode(spy, "verify_email", user.email);
    const res = await api("PUT", withPrefix(prefix, "/v1/users/verification"), { body: { email, code } });
    if (res.status !== 204) throw new Error(`verification failed: ${res.status} ${res.text}`);
    const row = await env.DB.prepare("SELECT roles, status FROM users WHERE id = ?")
      .bind(user.id)
      .first<{ roles: string; status: string }>();
    return {
      ...user,
      roles: JSON.parse(row?.roles ?? "[]") as string[],
      status: row?.status,
      email_verified: true,
      emails: user.emails.map((e: Record<string, unknown>) => ({ ...e, verified: true })),
    };
  } finally {
    spy.mockRestore();
  }
}

/** Gives a user the admin role, as the realm's admin (`adminToken`) would. */
export async function promote(prefix: string, adminToken: string, userId: string): Promise<void> {
  const res = await api("PUT", withPrefix(prefix, `/v1/users/${userId}/roles`), {
    token: adminToken,
    body: { roles: ["admin", "user"] },
  });
  if (res.status !== 200) throw new Error(`promote failed: ${res.status} ${res.text}`);
}
