import { exports } from "cloudflare:workers";

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
export const deviceId = (seed = "") => (seed + crypto.randomUUID().replace(/-/g, "") + "x".repeat(32)).slice(0, 32).replace(/[^A-Za-z0-9]/g, "a");

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
  const res = await exports.default.fetch(new Request(`https://registry.test${path}`, { method, headers, body }));
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

/** Signs up a user and returns the User. */
export async function signUp(email = uniqueEmail(), extra: Record<string, unknown> = {}, prefix = "") {
  const res = await api("POST", `${prefix}/v1/users`, {
    body: { email, password: PASSWORD, full_name: "Test User", ...extra },
  });
  if (res.status !== 201) throw new Error(`sign-up failed: ${res.status} ${res.text}`);
  return res.body;
}

/** Logs in and returns the TokenPair. */
export async function login(email: string, opts: { device_id?: string; description?: string; password?: string; prefix?: string } = {}) {
  const res = await api("POST", `${opts.prefix ?? ""}/v1/tokens`, {
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
