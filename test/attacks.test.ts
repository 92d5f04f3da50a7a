// The token attack matrix for every place a token is accepted (the abuse issue), plus replays
// and races of the one-time secrets.
//
// Slots (where a token is presented):
// - access:         Authorization on GET /v1/users/me
// - public/login:   Authorization on POST /v1/tokens (its did becomes the device id)
// - public/sign-up: Authorization on POST /v1/users
// - public/otp:     Authorization on POST /v1/otp
// - authority:      Authorization on GET /v1/users
// - refresh:        refresh_token in the body of POST /v1/tokens/refresh (opaque, its own matrix)
//
// For every JWT slot the same attacks run (alg none, HS256 with the public key, kid games, a
// foreign key, expiry by a moved clock, nbf, issuer, realm, truncated and flipped signatures,
// tampered payloads, tokens of the other types), each against a control: the real token, and a
// token forged with our key and correct claims, are accepted, so every forgery fails for its own
// reason. Authority tokens are also checked against D1 (their hash must be stored): the matrix
// stores each forgery's hash first, so what rejects it is the signature and claims check alone.
// Every rejection must leave D1 as it was (failed attempts in the audit trail and the login
// throttle aside).

import { env } from "cloudflare:workers";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { sha256Hex } from "../src/crypto/random";
import { REJECTED_TOKEN_CODES } from "../src/errors";
import {
  type ApiResponse,
  accessClaimsFor,
  apiWithEnv,
  b64u,
  claimsOf,
  configuredKey,
  createRealm,
  deviceId,
  hs256,
  loggedNotifications,
  login,
  otherKey,
  PASSWORD,
  publicKeySecrets,
  signTestToken,
  signUp,
  signUpVerified,
  type TestJwk,
  uniqueEmail,
  withPrefix,
} from "./helpers";

type Env = Partial<Cloudflare.Env>;

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

const DAY = 86_400_000;
const nowSec = () => Math.floor(Date.now() / 1000);

/** Every request goes through the worker's fetch and waits for its deferred work (audit rows). */
const call = (
  method: string,
  path: string,
  opts: { body?: unknown; token?: string | null; headers?: Record<string, string>; env?: Env } = {},
) =>
  apiWithEnv(opts.env ?? {}, method, path, { body: opts.body, token: opts.token ?? undefined, headers: opts.headers });

// ---------------------------------------------------------------------------------------------
// Forgeries.

/** JWT header or payload replaced, signature kept. */
function withParts(
  token: string,
  parts: { header?: Record<string, unknown>; payload?: Record<string, unknown> },
): string {
  const [h, p, s] = token.split(".") as [string, string, string];
  return `${parts.header ? b64u(JSON.stringify(parts.header)) : h}.${parts.payload ? b64u(JSON.stringify(parts.payload)) : p}.${s}`;
}

function flipBit(token: string, part: 0 | 1 | 2, byte = 20): string {
  const pieces = token.split(".") as [string, string, string];
  const bin = atob((pieces[part] as string).replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  const at = Math.min(byte, bytes.length - 1);
  bytes[at] = (bytes[at] as number) ^ 0x01;
  pieces[part] = b64u(bytes);
  return pieces.join(".");
}

const unsigned = (alg: string, claims: Record<string, unknown>, signature = "") =>
  `${b64u(JSON.stringify({ alg, typ: "JWT", kid: configuredKey().kid }))}.${b64u(JSON.stringify(claims))}.${signature}`;

/** A keyset of both test keys: test-1 (the configured one) and test-2, both real kids. */
const twoKeys = (): Env => ({ JWT_PRIVATE_KEYS: JSON.stringify([configuredKey(), otherKey()]) });

// ---------------------------------------------------------------------------------------------
// Checks.

const APP_TABLES = async () =>
  (await env.DB.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all<{ name: string }>()).results
    .map((r) => r.name)
    .filter((n) => n !== "d1_migrations" && !n.startsWith("_cf_") && !n.startsWith("sqlite_"));

/** Row counts (and rowid sums) of the tables a rejected token must not touch. */
async function snapshot(): Promise<Record<string, string>> {
  const tables = (await APP_TABLES()).filter((t) => t !== "audit_events" && t !== "login_throttle");
  const rows = await env.DB.batch<{ n: number; r: number }>(
    tables.map((t) => env.DB.prepare(`SELECT count(*) AS n, total(rowid) AS r FROM "${t}"`)),
  );
  return Object.fromEntries(tables.map((t, i) => [t, `${rows[i]?.results[0]?.n}/${rows[i]?.results[0]?.r}`]));
}

/** A 401 (or 403) with this code, the error shape, and for a rejected token RFC 6750's header. */
function expectRefused(res: ApiResponse, code: string, status = 401) {
  expect({ status: res.status, code: res.body?.error?.code }, res.text.slice(0, 300)).toEqual({ status, code });
  expect(Object.keys(res.body.error).sort()).toEqual(["code", "message"]);
  if (status === 401 && REJECTED_TOKEN_CODES.has(code)) {
    const www = res.headers.get("WWW-Authenticate") ?? "";
    expect(www).toMatch(/^Bearer /);
    expect(www).toContain('error="invalid_token"');
  }
}

// ---------------------------------------------------------------------------------------------
// The JWT slots.

interface UseOpts {
  /** Another realm's prefix instead of the slot's own. */
  prefix?: string;
  env?: Env;
}

interface Slot {
  /** A real token for this slot, minted by the service. */
  token: string;
  /** Presents a token (null: none) the way this slot takes it. */
  use(token: string | null, opts?: UseOpts): Promise<ApiResponse>;
  /** Asserts that the answer is the slot's success. */
  accepted(res: ApiResponse, token: string): void;
  /** Claims a token forged with our key needs to be accepted here. */
  claims(): Record<string, unknown>;
  /** How long the real token lives (ms). */
  ttlMs: number;
  /** Another realm where the same request (with no token, or its own) would succeed. */
  otherPrefix: string;
  /** Tokens of other types presented here, and what they get. */
  wrongTypes: () => Promise<{ label: string; token: string; status: number; code: string }[]>;
}

let seq = 0;
const newPhone = () => `+1555${String((Math.floor(Math.random() * 1e7) + seq++) % 1e7).padStart(7, "0")}`;

/** A realm of its own and a second one, each with an admin (root@admin.test) and a user of the same email. */
async function twoRealms() {
  const realms = [await createRealm(), await createRealm()];
  const email = uniqueEmail("acme.test");
  const out = [];
  for (const realm of realms) {
    const prefix = `/v1/realms/${realm}`;
    const admin = await signUpVerified("root@admin.test", {}, prefix);
    const adminPair = await login("root@admin.test", { prefix });
    const user = await signUpVerified(email, {}, prefix);
    const pair = await login(email, { prefix });
    out.push({ realm, prefix, admin, adminPair, user, pair, email });
  }
  return out as [(typeof out)[number], (typeof out)[number]];
}

async function publicTokenOf(prefix: string): Promise<string> {
  const res = await call("POST", withPrefix(prefix, "/v1/tokens/public"), { body: {} });
  expect(res.status).toBe(201);
  return res.body.token;
}

async function publicSlot(target: "login" | "sign-up" | "otp"): Promise<Slot> {
  const [a, b] = await twoRealms();
  const token = await publicTokenOf(a.prefix);
  const authority = await call("POST", withPrefix(a.prefix, "/v1/domains/acme.test/authority-token"), {
    token: a.adminPair.access_token,
    body: {},
  });
  expect(authority.status).toBe(201);
  const use = (t: string | null, opts: UseOpts = {}) => {
    const prefix = opts.prefix ?? a.prefix;
    if (target === "login")
      return call("POST", withPrefix(prefix, "/v1/tokens"), {
        token: t,
        env: opts.env,
        body: { email: a.email, password: PASSWORD },
      });
    if (target === "sign-up") {
      return call("POST", withPrefix(prefix, "/v1/users"), {
        token: t,
        env: opts.env,
        body: { email: uniqueEmail(), password: PASSWORD, full_name: "Signer" },
      });
    }
    return call("POST", withPrefix(prefix, "/v1/otp"), { token: t, env: opts.env, body: { phone_number: newPhone() } });
  };
  return {
    token,
    use,
    accepted(res, t) {
      expect(res.status, res.text).toBe(target === "login" ? 200 : target === "sign-up" ? 201 : 202);
      if (target === "login") expect(res.body.device_id).toBe(claimsOf(t).did);
    },
    claims: () => ({
      iss: env.ISSUER,
      realm: a.realm,
      type: "public",
      did: deviceId(),
      jti: crypto.randomUUID(),
      iat: nowSec(),
      exp: nowSec() + 3600,
    }),
    ttlMs: 30 * DAY,
    otherPrefix: b.prefix,
    wrongTypes: async () => [
      // On sign-up an access token is an admin's way in: a plain user's is a valid token without the role.
      target === "sign-up"
        ? { label: "a user's access token", token: a.pair.access_token, status: 403, code: "forbidden" }
        : { label: "an access token", token: a.pair.access_token, status: 401, code: "invalid_token" },
      { label: "a refresh token", token: a.pair.refresh_token, status: 401, code: "invalid_token" },
      { label: "an authority token", token: authority.body.token, status: 401, code: "invalid_token" },
    ],
  };
}

async function accessSlot(): Promise<Slot> {
  const [a, b] = await twoRealms();
  const publicToken = await publicTokenOf(a.prefix);
  const authority = await call("POST", withPrefix(a.prefix, "/v1/domains/acme.test/authority-token"), {
    token: a.adminPair.access_token,
    body: {},
  });
  return {
    token: a.pair.access_token,
    use: (t, opts = {}) =>
      call("GET", withPrefix(opts.prefix ?? a.prefix, "/v1/users/me"), { token: t, env: opts.env }),
    accepted(res) {
      expect(res.status, res.text).toBe(200);
      expect(res.body.id).toBe(a.user.id);
    },
    claims: () => accessClaimsFor(a.user),
    ttlMs: 15 * 60_000,
    otherPrefix: b.prefix,
    wrongTypes: async () => [
      { label: "a public token", token: publicToken, status: 401, code: "invalid_token" },
      { label: "a refresh token", token: a.pair.refresh_token, status: 401, code: "invalid_token" },
      { label: "an authority token", token: authority.body.token, status: 401, code: "invalid_token" },
    ],
  };
}

/**
 * Authority tokens: D1 keeps each one's hash. So that a forgery is refused by the signature and
 * claims check (not merely because D1 does not know it), `use` stores the presented token's hash
 * for its id first (a row of its own, or the real row's hash swapped for the call), then restores.
 */
async function authoritySlot(): Promise<Slot> {
  const [a, b] = await twoRealms();
  const minted = await call("POST", withPrefix(a.prefix, "/v1/domains/acme.test/authority-token"), {
    token: a.adminPair.access_token,
    body: {},
  });
  expect(minted.status).toBe(201);
  const publicToken = await publicTokenOf(a.prefix);

  async function registered<T>(token: string | null, fn: () => Promise<T>): Promise<T> {
    let claims: Record<string, any> | null = null;
    try {
      claims = token ? claimsOf(token) : null;
    } catch {
      claims = null;
    }
    if (!token || claims?.type !== "authority" || typeof claims.sub !== "string") return fn();
    const row = await env.DB.prepare("SELECT token_hash FROM authority_tokens WHERE id = ?")
      .bind(claims.sub)
      .first<{ token_hash: string }>();
    const hash = await sha256Hex(token);
    if (row) {
      await env.DB.prepare("UPDATE authority_tokens SET token_hash = ? WHERE id = ?").bind(hash, claims.sub).run();
      try {
        return await fn();
      } finally {
        await env.DB.prepare("UPDATE authority_tokens SET token_hash = ? WHERE id = ?")
          .bind(row.token_hash, claims.sub)
          .run();
      }
    }
    await env.DB.prepare(
      "INSERT INTO authority_tokens (id, realm, domain, token_hash, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
      .bind(
        claims.sub,
        a.realm,
        String(claims.domain),
        hash,
        a.admin.id,
        new Date().toISOString(),
        new Date(Date.now() + 365 * DAY).toISOString(),
      )
      .run();
    try {
      return await fn();
    } finally {
      await env.DB.prepare("DELETE FROM authority_tokens WHERE id = ?").bind(claims.sub).run();
    }
  }

  return {
    token: minted.body.token,
    use: (t, opts = {}) =>
      registered(t, () => call("GET", withPrefix(opts.prefix ?? a.prefix, "/v1/users"), { token: t, env: opts.env })),
    accepted(res) {
      expect(res.status, res.text).toBe(200);
      expect(res.body.users.map((u: { id: string }) => u.id)).toEqual([a.user.id]);
    },
    claims: () => ({
      iss: env.ISSUER,
      aud: `${env.ISSUER}/authority`,
      sub: `forged${crypto.randomUUID().replace(/-/g, "")}`.slice(0, 32),
      realm: a.realm,
      type: "authority",
      domain: "acme.test",
      jti: crypto.randomUUID(),
      iat: nowSec(),
      exp: nowSec() + 3600,
    }),
    ttlMs: 90 * DAY,
    otherPrefix: b.prefix,
    wrongTypes: async () => [
      { label: "a public token", token: publicToken, status: 401, code: "invalid_token" },
      { label: "a refresh token", token: a.pair.refresh_token, status: 401, code: "invalid_token" },
      // An access token is an admin's way in here: a plain user's is valid but lacks the role.
      { label: "a user's access token", token: a.pair.access_token, status: 403, code: "forbidden" },
    ],
  };
}

type Attack = [label: string, run: (s: Slot) => Promise<void>];

/** Presents `token`, expects the refusal, and that nothing but the audit trail and throttle changed. */
async function refused(s: Slot, token: string, code = "invalid_token", opts: UseOpts & { status?: number } = {}) {
  const before = await snapshot();
  const res = await s.use(token, opts);
  expectRefused(res, code, opts.status ?? 401);
  expect(await snapshot(), "a refused token wrote to D1").toEqual(before);
}

const JWT_ATTACKS: Attack[] = [
  [
    "alg none: unsigned, and with the real signature kept; none/None/NONE",
    async (s) => {
      const claims = claimsOf(s.token);
      for (const alg of ["none", "None", "NONE", "nOnE"]) {
        await refused(s, unsigned(alg, claims));
        await refused(s, unsigned(alg, claims, s.token.split(".")[2]));
      }
      await refused(s, withParts(s.token, { header: { alg: "none", typ: "JWT" } }));
    },
  ],
  [
    "HS256 signed with the public key (x, y, the JWK, the JWKS)",
    async (s) => {
      const jwks = (await call("GET", "/.well-known/jwks.json")).body;
      const claims = claimsOf(s.token);
      for (const secret of publicKeySecrets(jwks)) {
        await refused(s, await hs256(claims, secret));
      }
      // Another asymmetric algorithm name on the ES256 signature.
      for (const alg of ["ES384", "ES512", "RS256", "PS256", "EdDSA"])
        await refused(s, withParts(s.token, { header: { alg, typ: "JWT", kid: "test-1" } }));
    },
  ],
  [
    "kid swapped to another real kid (a keyset of two keys)",
    async (s) => {
      const claims = s.claims();
      // Control: with both keys configured, a token of the second key under its own kid is accepted.
      const viaOther = await signTestToken(claims, { jwk: otherKey() });
      s.accepted(await s.use(viaOther, { env: twoKeys() }), viaOther);
      await refused(s, await signTestToken(s.claims(), { kid: otherKey().kid }), "invalid_token", { env: twoKeys() });
      await refused(
        s,
        await signTestToken(s.claims(), { jwk: otherKey(), kid: configuredKey().kid }),
        "invalid_token",
        { env: twoKeys() },
      );
      await refused(
        s,
        withParts(s.token, { header: { alg: "ES256", typ: "JWT", kid: otherKey().kid } }),
        "invalid_token",
        { env: twoKeys() },
      );
    },
  ],
  [
    "unknown kid, empty kid, no kid, kid as a path or a prototype key",
    async (s) => {
      for (const kid of ["nope", "", null, "../../jwks", "__proto__", "constructor", "test-1 "]) {
        await refused(s, await signTestToken(s.claims(), { kid }));
      }
    },
  ],
  [
    "a key that is not ours: under its own kid, relabelled as ours, or embedded as a jwk header",
    async (s) => {
      const other: TestJwk = otherKey();
      const { d: _d, kid: _kid, ...otherPublic } = other;
      await refused(s, await signTestToken(s.claims(), { jwk: other }));
      await refused(s, await signTestToken(s.claims(), { jwk: other, kid: configuredKey().kid }));
      await refused(s, await signTestToken(s.claims(), { jwk: other, kid: null, header: { jwk: otherPublic } }));
      await refused(
        s,
        await signTestToken(s.claims(), { jwk: other, header: { jku: "https://evil.example/jwks.json" } }),
      );
    },
  ],
  [
    "expired: the real token after its lifetime (the worker's clock moved), and a forged exp in the past",
    async (s) => {
      const start = Date.now();
      vi.useFakeTimers({ toFake: ["Date"] });
      vi.setSystemTime(start + s.ttlMs + 60_000);
      await refused(s, s.token, "token_expired");
      vi.setSystemTime(start);
      s.accepted(await s.use(s.token), s.token);
      vi.useRealTimers();
      await refused(
        s,
        await signTestToken({ ...s.claims(), iat: nowSec() - 7200, exp: nowSec() - 120 }),
        "token_expired",
      );
      // Expired and badly signed is invalid_token: the signature is judged first.
      await refused(
        s,
        await signTestToken({ ...s.claims(), iat: nowSec() - 7200, exp: nowSec() - 120 }, { jwk: otherKey() }),
      );
      // No exp, or a non-numeric one.
      const { exp: _exp, ...noExp } = s.claims();
      await refused(s, await signTestToken(noExp));
      await refused(s, await signTestToken({ ...s.claims(), exp: String(nowSec() + 3600) }));
    },
  ],
  [
    "not yet valid: nbf in the future",
    async (s) => {
      await refused(s, await signTestToken({ ...s.claims(), nbf: nowSec() + 3600 }));
      await refused(s, await signTestToken({ ...s.claims(), nbf: nowSec() + 120 }));
    },
  ],
  [
    "wrong issuer",
    async (s) => {
      for (const iss of [
        "https://evil.test",
        `${env.ISSUER}/`,
        String(env.ISSUER).toUpperCase(),
        "",
        undefined,
        [env.ISSUER],
      ]) {
        await refused(s, await signTestToken({ ...s.claims(), iss }));
      }
    },
  ],
  [
    "wrong realm: the real token on another realm, and claims naming another realm",
    async (s) => {
      await refused(s, s.token, "invalid_token", { prefix: s.otherPrefix });
      await refused(s, s.token, "invalid_token", { prefix: "" }); // realm default
      const own = s.claims().realm as string;
      for (const realm of ["default", own.toUpperCase(), `${own} `, undefined, [own]]) {
        await refused(s, await signTestToken({ ...s.claims(), realm }));
      }
    },
  ],
  [
    "truncated and bit-flipped signatures, and tampered payloads",
    async (s) => {
      const [h, p, sig] = s.token.split(".") as [string, string, string];
      for (const t of [
        `${h}.${p}.${sig.slice(0, -1)}`,
        `${h}.${p}.${sig.slice(0, 43)}`,
        `${h}.${p}.`,
        `${h}.${p}`,
        `${h}.${p}.${sig}.${sig}`,
        `${h}.${p}.${sig}=`,
      ]) {
        await refused(s, t);
      }
      for (const byte of [0, 20, 63]) await refused(s, flipBit(s.token, 2, byte));
      const claims = claimsOf(s.token);
      await refused(s, withParts(s.token, { payload: { ...claims, exp: claims.exp + 3600 } }));
      await refused(s, withParts(s.token, { payload: { ...claims, sub: "someone-else", did: deviceId() } }));
      await refused(s, withParts(s.token, { payload: { ...claims, roles: ["admin"], domain: "evil.test" } }));
      await refused(s, flipBit(s.token, 1, 5));
      // The real token still works: each change above is what was refused.
      s.accepted(await s.use(s.token), s.token);
    },
  ],
  [
    "tokens of the other types (public, access, refresh, authority) in this slot",
    async (s) => {
      for (const w of await s.wrongTypes()) {
        const before = await snapshot();
        const res = await s.use(w.token);
        expect({ label: w.label, status: res.status, code: res.body?.error?.code }).toEqual({
          label: w.label,
          status: w.status,
          code: w.code,
        });
        expect(await snapshot()).toEqual(before);
      }
      // Our key, this slot's claims, another type: the type is checked too.
      for (const type of ["access", "public", "authority", "refresh", undefined]) {
        if (type === s.claims().type) continue;
        await refused(s, await signTestToken({ ...s.claims(), type }));
      }
    },
  ],
];

describe.each([
  ["access token on GET /v1/users/me", accessSlot],
  ["public token on POST /v1/tokens (login)", () => publicSlot("login")],
  ["public token on POST /v1/users (sign-up)", () => publicSlot("sign-up")],
  ["public token on POST /v1/otp", () => publicSlot("otp")],
  ["authority token on GET /v1/users", authoritySlot],
] as const)("%s", (_name, make) => {
  let slot: Slot;
  beforeAll(async () => {
    vi.spyOn(console, "log").mockImplementation(() => {}); // OTP codes go to the development log
    slot = await make();
  });

  it("controls: the real token and a token forged with our key and correct claims are accepted", async () => {
    slot.accepted(await slot.use(slot.token), slot.token);
    const forged = await signTestToken(slot.claims());
    slot.accepted(await slot.use(forged), forged);
  });

  it.each(JWT_ATTACKS)("%s", async (_label, attack) => {
    vi.spyOn(console, "log").mockImplementation(() => {});
    await attack(slot);
  });
});

// ---------------------------------------------------------------------------------------------
// Revocation of JWTs.

describe("revoked access and authority tokens", () => {
  it("an access token after logout (its jti blacklisted) is 401 token_revoked; the other device's token still works", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const one = await login(email, { device_id: deviceId("one") });
    const two = await login(email, { device_id: deviceId("two") });
    expect((await call("POST", "/v1/logout", { token: one.access_token, body: {} })).status).toBe(204);
    const res = await call("GET", "/v1/users/me", { token: one.access_token });
    expectRefused(res, "token_revoked");
    expect(res.headers.get("WWW-Authenticate")).toContain("token_revoked");
    // A forgery of the same claims re-signed with our key carries the same jti: still revoked.
    expectRefused(
      await call("GET", "/v1/users/me", { token: await signTestToken(claimsOf(one.access_token)) }),
      "token_revoked",
    );
    expect((await call("GET", "/v1/users/me", { token: two.access_token })).status).toBe(200);
    // Logged out everywhere: both.
    expect((await call("POST", "/v1/logout", { token: two.access_token, body: { all: true } })).status).toBe(204);
    expectRefused(await call("GET", "/v1/users/me", { token: two.access_token }), "token_revoked");
  });

  it("a deleted user's tokens: 401 token_revoked (blacklisted), or 403 user_not_found for a valid one", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const fresh = await login(email, { device_id: deviceId("del") });
    const other = await login(email, { device_id: deviceId("oth") });
    expect((await call("DELETE", "/v1/users/me", { token: fresh.access_token })).status).toBe(204);
    for (const token of [fresh.access_token, other.access_token]) {
      const res = await call("GET", "/v1/users/me", { token });
      expect([401, 403]).toContain(res.status);
      expect(res.status === 401 ? "token_revoked" : "user_not_found").toBe(res.body.error.code);
    }
    // A token that is valid in every other way (not blacklisted): the user is gone.
    const valid = await signTestToken(accessClaimsFor(user));
    const res = await call("GET", "/v1/users/me", { token: valid });
    expectRefused(res, "user_not_found", 403);
    // The refresh token of a deleted user's session is dead as well.
    expectRefused(
      await call("POST", "/v1/tokens/refresh", { body: { refresh_token: other.refresh_token } }),
      "session_revoked",
    );
    // Re-registering the email makes a new user: the old tokens do not open it.
    const again = await signUp(email);
    expect(again.id).not.toBe(user.id);
    const stillValid = await call("GET", "/v1/users/me", { token: valid });
    expectRefused(stillValid, "user_not_found", 403);
  });

  it("a revoked authority token is 401 token_revoked at once; another token of the domain keeps working", async () => {
    const [a] = await twoRealms();
    const mint = () =>
      call("POST", withPrefix(a.prefix, "/v1/domains/acme.test/authority-token"), {
        token: a.adminPair.access_token,
        body: {},
      });
    const first = await mint();
    const second = await mint();
    const list = (t: string) => call("GET", withPrefix(a.prefix, "/v1/users"), { token: t });
    expect((await list(first.body.token)).status).toBe(200);
    const revoked = await call(
      "DELETE",
      withPrefix(a.prefix, `/v1/domains/acme.test/authority-token/${first.body.id}`),
      { token: a.adminPair.access_token },
    );
    expect(revoked.status).toBe(204);
    const before = await snapshot();
    expectRefused(await list(first.body.token), "token_revoked");
    expectRefused(
      await call("POST", withPrefix(a.prefix, `/v1/users/${a.user.id}/deactivate`), { token: first.body.token }),
      "token_revoked",
    );
    expect(await snapshot()).toEqual(before);
    expect((await list(second.body.token)).status).toBe(200);
    // Revoking twice, or another domain's id, is 404.
    expect(
      (
        await call("DELETE", withPrefix(a.prefix, `/v1/domains/acme.test/authority-token/${first.body.id}`), {
          token: a.adminPair.access_token,
        })
      ).status,
    ).toBe(404);
    expect(
      (
        await call("DELETE", withPrefix(a.prefix, `/v1/domains/other.test/authority-token/${second.body.id}`), {
          token: a.adminPair.access_token,
        })
      ).status,
    ).toBe(404);
    expect((await list(second.body.token)).status).toBe(200);
  });

  it("an authority token past its expiry is 401 token_expired, although D1 still holds it", async () => {
    const [a] = await twoRealms();
    const minted = await call("POST", withPrefix(a.prefix, "/v1/domains/acme.test/authority-token"), {
      token: a.adminPair.access_token,
      body: { expires_in_days: 1 },
    });
    const start = Date.now();
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(start + DAY - 60_000);
    expect((await call("GET", withPrefix(a.prefix, "/v1/users"), { token: minted.body.token })).status).toBe(200);
    vi.setSystemTime(start + DAY + 60_000);
    expectRefused(await call("GET", withPrefix(a.prefix, "/v1/users"), { token: minted.body.token }), "token_expired");
  });
});

// ---------------------------------------------------------------------------------------------
// Refresh tokens (opaque: rt1.<locator>.<mac>).

describe("refresh tokens on POST /v1/tokens/refresh", () => {
  const refresh = (token: unknown, prefix = "") =>
    call("POST", withPrefix(prefix, "/v1/tokens/refresh"), { body: { refresh_token: token } });

  async function session(prefix = "") {
    const email = uniqueEmail();
    const user = await signUp(email, {}, prefix);
    const pair = await login(email, { device_id: deviceId("rt"), prefix });
    return { email, user, pair };
  }

  /** Refused, nothing written, and the session still rotates afterwards (nothing was revoked). */
  async function refusedRefresh(token: unknown, code: string, prefix = "") {
    const before = await snapshot();
    expectRefused(await refresh(token, prefix), code);
    expect(await snapshot()).toEqual(before);
  }

  it("control: the real token rotates", async () => {
    const { pair } = await session();
    const res = await refresh(pair.refresh_token);
    expect(res.status).toBe(200);
    expect(res.body.refresh_token).not.toBe(pair.refresh_token);
    expect(claimsOf(res.body.access_token).fresh).toBe(false);
  });

  it("truncated, bit-flipped and re-encoded tokens are invalid_token and revoke nothing", async () => {
    const { pair } = await session();
    const t = pair.refresh_token as string;
    const [prefix, locator, mac] = t.split(".") as [string, string, string];
    for (const bad of [
      t.slice(0, -1),
      `${prefix}.${locator}.${mac.slice(0, 20)}`,
      `${prefix}.${locator}.`,
      `${prefix}.${locator}`,
      flipBit(t, 2, 0),
      flipBit(t, 2, 31),
      flipBit(t, 1, 3),
      `${t}A`,
      `${t}=`,
      `rt2.${locator}.${mac}`,
      `RT1.${locator}.${mac}`,
      `${prefix}.${locator}=.${mac}`,
      `${prefix}.${mac}.${locator}`,
    ]) {
      await refusedRefresh(bad, "invalid_token");
    }
    expect((await refresh(t)).status).toBe(200);
  });

  it("a locator pointing at another session, with this one's MAC, is refused and revokes neither", async () => {
    const mine = await session();
    const theirs = await session();
    const [p, , mac] = mine.pair.refresh_token.split(".") as [string, string, string];
    const [, theirLocator] = theirs.pair.refresh_token.split(".") as [string, string, string];
    const res = await refresh(`${p}.${theirLocator}.${mac}`);
    expect(res.status).toBe(401);
    expect(["invalid_token", "session_revoked"]).toContain(res.body.error.code);
    // A counter ahead of the session's.
    const fields = new TextDecoder()
      .decode(Uint8Array.from(atob(theirLocator.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)))
      .split("|");
    fields[4] = "7";
    await refusedRefresh(`${p}.${b64u(fields.join("|"))}.${mac}`, "invalid_token");
    expect((await refresh(mine.pair.refresh_token)).status).toBe(200);
    expect((await refresh(theirs.pair.refresh_token)).status).toBe(200);
  });

  it("a token of realm A on realm B's route (and a locator naming another realm) is invalid_token", async () => {
    const realm = await createRealm();
    const prefix = `/v1/realms/${realm}`;
    const { pair } = await session(prefix);
    await refusedRefresh(pair.refresh_token, "invalid_token");
    await refusedRefresh(pair.refresh_token, "invalid_token", `/v1/realms/${await createRealm()}`);
    expect((await refresh(pair.refresh_token, prefix)).status).toBe(200);
  });

  it("JWTs where the refresh token belongs (access, public, authority, alg none) are invalid_token", async () => {
    const { pair, user } = await session();
    const pub = await publicTokenOf("");
    for (const t of [
      pair.access_token,
      pub,
      unsigned("none", accessClaimsFor(user)),
      await signTestToken({ ...accessClaimsFor(user), type: "refresh" }),
    ]) {
      await refusedRefresh(t, "invalid_token");
    }
    // And the refresh token where an access token belongs.
    expectRefused(await call("GET", "/v1/users/me", { token: pair.refresh_token }), "invalid_token");
    expectRefused(await call("POST", "/v1/logout", { token: pair.refresh_token, body: {} }), "invalid_token");
  });

  it("expired: 30 days without rotation (the worker's clock moved) is token_expired", async () => {
    const { pair } = await session();
    const start = Date.now();
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(start + 30 * DAY + 60_000);
    expectRefused(await refresh(pair.refresh_token), "token_expired");
  });

  it("after logout is session_revoked", async () => {
    const { pair } = await session();
    expect((await call("POST", "/v1/logout", { token: pair.access_token, body: {} })).status).toBe(204);
    await refusedRefresh(pair.refresh_token, "session_revoked");
  });

  it("replayed more than 10 s after rotation: refresh_token_reused, and the whole session is revoked", async () => {
    const { email, pair } = await session();
    const other = await login(email, { device_id: deviceId("keep") });
    const start = Date.now();
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(start);
    const rotated = await refresh(pair.refresh_token);
    expect(rotated.status).toBe(200);
    // Inside the grace window the retry gets the same new token and revokes nothing.
    vi.setSystemTime(start + 9_000);
    const retry = await refresh(pair.refresh_token);
    expect(retry.status).toBe(200);
    expect(retry.body.refresh_token).toBe(rotated.body.refresh_token);
    // After it: theft.
    vi.setSystemTime(start + 11_000);
    expectRefused(await refresh(pair.refresh_token), "refresh_token_reused");
    expectRefused(await refresh(pair.refresh_token), "session_revoked");
    expectRefused(await refresh(rotated.body.refresh_token), "session_revoked");
    for (const token of [pair.access_token, rotated.body.access_token, retry.body.access_token]) {
      expectRefused(await call("GET", "/v1/users/me", { token }), "token_revoked");
    }
    // Only that device: the user's other session lives on.
    expect((await call("GET", "/v1/users/me", { token: other.access_token })).status).toBe(200);
    expect((await refresh(other.refresh_token)).status).toBe(200);
  });

  it("a deleted user's refresh token is session_revoked", async () => {
    const { pair } = await session();
    expect((await call("DELETE", "/v1/users/me", { token: pair.access_token })).status).toBe(204);
    await refusedRefresh(pair.refresh_token, "session_revoked");
  });
});

// ---------------------------------------------------------------------------------------------
// One-time codes and races.

const notifications = loggedNotifications;

describe("replays and races", () => {
  it("a reset code works once: reused (also with another password, or for another email) it is 400 invalid_code", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const email = uniqueEmail();
    const victim = uniqueEmail();
    await signUp(email);
    await signUp(victim);
    expect((await call("POST", "/v1/users/reset", { body: { email } })).status).toBe(202);
    const code = notifications(log).find((n) => n.type === "reset" && n.to === email)?.code as string;
    expect(code).toMatch(/^\d{8}$/);
    const reset = (who: string, password: string) =>
      call("PUT", "/v1/users/reset", { body: { email: who, code, password, password_confirmation: password } });
    // Someone else's email with this code: refused, and it does not burn the code.
    expect((await reset(victim, "stolen password 1")).body.error.code).toBe("invalid_code");
    expect((await reset(email, "first new password")).status).toBe(204);
    for (const password of ["first new password", "second new password"]) {
      const res = await reset(email, password);
      expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status: 400, code: "invalid_code" });
    }
    await login(email, { password: "first new password" });
    await login(victim);
  });

  it("an OTP works once: verified twice, the second is 401 otp_expired; ten at once log in once", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const codeFor = async (phone: string) => {
      expect((await call("POST", "/v1/otp", { body: { phone_number: phone } })).status).toBe(202);
      return notifications(log)
        .filter((n) => n.type === "otp" && n.to === phone)
        .at(-1)?.code as string;
    };
    const phone = newPhone();
    const otp = await codeFor(phone);
    expect(otp).toMatch(/^\d{6}$/);
    const first = await call("POST", "/v1/otp/verify", { body: { phone_number: phone, otp } });
    expect(first.status).toBe(200);
    const again = await call("POST", "/v1/otp/verify", { body: { phone_number: phone, otp } });
    expectRefused(again, "otp_expired");

    const raced = newPhone();
    const code = await codeFor(raced);
    const results = await Promise.all(
      Array.from({ length: 10 }, () => call("POST", "/v1/otp/verify", { body: { phone_number: raced, otp: code } })),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    for (const r of results.filter((r) => r.status !== 200)) expect(r.body.error.code).toBe("otp_expired");
  });

  it("ten concurrent sign-ups with one email make one user: one 201, nine 409 user_exists", async () => {
    const email = uniqueEmail();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        call("POST", "/v1/users", {
          body: { email: i % 2 ? email.toUpperCase() : ` ${email} `, password: PASSWORD, full_name: `Racer ${i}` },
        }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    for (const r of results.filter((x) => x.status === 409)) expect(r.body.error.code).toBe("user_exists");
    const users = await env.DB.prepare("SELECT count(*) AS n FROM users WHERE realm = 'default' AND email = ?")
      .bind(email)
      .first<{ n: number }>();
    const emails = await env.DB.prepare("SELECT count(*) AS n FROM user_emails WHERE email = ?")
      .bind(email)
      .first<{ n: number }>();
    expect({ users: users?.n, emails: emails?.n }).toEqual({ users: 1, emails: 1 });
    await login(email);
  });

  it("ten concurrent reset completions with one code: exactly one 204", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    const email = uniqueEmail();
    await signUp(email);
    await call("POST", "/v1/users/reset", { body: { email } });
    const code = notifications(log).find((n) => n.type === "reset" && n.to === email)?.code as string;
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        call("PUT", "/v1/users/reset", {
          body: { email, code, password: `racer password ${i}`, password_confirmation: `racer password ${i}` },
        }),
      ),
    );
    const winners = results.map((r, i) => [r.status, i] as const).filter(([s]) => s === 204);
    expect(winners).toHaveLength(1);
    for (const r of results.filter((x) => x.status !== 204)) expect(r.body.error.code).toBe("invalid_code");
    await login(email, { password: `racer password ${winners[0]?.[1]}` });
  });
});
