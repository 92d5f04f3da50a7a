// Helpers of the registry-node tests: calls to the worker served by global-setup.mjs.
import { importJWK, SignJWT } from "jose";
import { inject } from "vitest";

export const registry = () => inject("registry");

/** One JSON call to the registry; returns status and parsed body. */
export async function api(method, path, { body, token, base } = {}) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${base ?? registry().url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

export const PASSWORD = "correct horse battery";
export const uniqueEmail = (domain = "example.test") => `u${crypto.randomUUID().slice(0, 12)}@${domain}`;

/** Signs up and logs in a new user; returns the email, the user and the token pair. */
export async function newSession(email = uniqueEmail()) {
  const signed = await api("POST", "/v1/users", { body: { email, password: PASSWORD, full_name: "Node Test" } });
  if (signed.status !== 201) throw new Error(`sign-up: ${signed.status} ${JSON.stringify(signed.body)}`);
  const login = await api("POST", "/v1/tokens", { body: { email, password: PASSWORD } });
  if (login.status !== 200) throw new Error(`login: ${login.status} ${JSON.stringify(login.body)}`);
  return { email, user: signed.body, pair: login.body };
}

/** One token of each kind: access (and its refresh), public, and a domain authority token. */
export async function tokensOfEachKind() {
  const { pair } = await newSession();
  const pub = (await api("POST", "/v1/tokens/public", { body: {} })).body.token;
  // root@admin.test is made an admin by global-setup.mjs.
  const admin = await api("POST", "/v1/tokens", { body: { email: "root@admin.test", password: PASSWORD } });
  const authority = await api("POST", "/v1/domains/acme.test/authority-token", {
    token: admin.body.access_token,
    body: {},
  });
  if (authority.status !== 201)
    throw new Error(`authority token: ${authority.status} ${JSON.stringify(authority.body)}`);
  return { access: pair.access_token, pair, public: pub, authority: authority.body.token };
}

const b64json = (part) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
export const claimsOf = (token) => b64json(token.split(".")[1]);

/** Re-signs a token's claims with the registry's key (changes merged in), keeping its header. */
export async function resign(token, changes = {}) {
  const header = b64json(token.split(".")[0]);
  const { kid, ...jwk } = JSON.parse(registry().key);
  const key = await importJWK({ ...jwk, alg: "ES256" }, "ES256");
  return new SignJWT({ ...claimsOf(token), ...changes }).setProtectedHeader({ ...header, kid }).sign(key);
}
