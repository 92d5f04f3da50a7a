import { env } from "cloudflare:workers";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import {
  accessClaimsFor,
  api,
  apiWithEnv,
  b64u,
  claimsOf,
  configuredKey,
  createRealm,
  hs256,
  login,
  newSession,
  otherKey,
  PASSWORD,
  publicKeySecrets,
  signTestToken,
  signUp,
  uniqueEmail,
} from "./helpers";

const ME = "/v1/users/me";

/** Asserts a 401 with `code`, the error shape and a WWW-Authenticate header naming invalid_token. */
async function expectRejected(token: string, code = "invalid_token", path = ME) {
  const res = await api("GET", path, { headers: { Authorization: `Bearer ${token}` } });
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status: 401, code });
  expect(Object.keys(res.body.error).sort()).toEqual(["code", "message"]);
  const www = res.headers.get("WWW-Authenticate") ?? "";
  expect(www).toMatch(/^Bearer /);
  expect(www).toContain('error="invalid_token"');
  return res;
}

/** Replaces the payload of a JWT, keeping its header and signature. */
function withPayload(token: string, payload: Record<string, unknown>): string {
  const [h, , s] = token.split(".");
  return `${h}.${b64u(JSON.stringify(payload))}.${s}`;
}

/** Flips one bit in the middle of the signature (all of whose bits count). */
function flipSignatureBit(token: string): string {
  const [h, p, s] = token.split(".") as [string, string, string];
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  bytes[20] = (bytes[20] as number) ^ 0x01;
  return `${h}.${p}.${b64u(bytes)}`;
}

let session: Awaited<ReturnType<typeof newSession>>;
let realToken: string;

beforeAll(async () => {
  session = await newSession();
  realToken = session.pair.access_token;
});

describe("the real thing works (so the attacks below fail for their own reason)", () => {
  it("a login token opens /me", async () => {
    const res = await api("GET", ME, { token: realToken });
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(session.user.id);
  });

  it("a token forged by the test with the configured key opens /me", async () => {
    const token = await signTestToken(accessClaimsFor(session.user));
    const res = await api("GET", ME, { token });
    expect(res.status).toBe(200);
    expect(res.body.id).toBe(session.user.id);
  });
});

describe("missing token", () => {
  it("no Authorization header is 401 missing_token with WWW-Authenticate", async () => {
    const res = await api("GET", ME);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: { code: "missing_token", message: expect.any(String) } });
    const www = res.headers.get("WWW-Authenticate") ?? "";
    expect(www).toMatch(/^Bearer /);
    expect(www).not.toContain("error=");
  });

  it.each(["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc"])("Authorization %j is missing_token", async (h) => {
    const res = await api("GET", ME, { headers: { Authorization: h } });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("missing_token");
  });
});

describe("the token attack matrix", () => {
  it("alg none", async () => {
    const claims = accessClaimsFor(session.user);
    const header = b64u(JSON.stringify({ alg: "none", typ: "JWT", kid: configuredKey().kid }));
    const body = b64u(JSON.stringify(claims));
    await expectRejected(`${header}.${body}.`);
    // The same with the real token's signature left on.
    await expectRejected(`${header}.${body}.${realToken.split(".")[2]}`);
    // And "None"/"NONE" spellings.
    await expectRejected(`${b64u(JSON.stringify({ alg: "NONE", typ: "JWT" }))}.${body}.`);
  });

  it("HS256 signed with the public key (x coordinate, JWK JSON, PEM-ish)", async () => {
    const jwks = (await api("GET", "/.well-known/jwks.json")).body;
    const claims = accessClaimsFor(session.user);
    for (const secret of publicKeySecrets(jwks)) {
      await expectRejected(await hs256(claims, secret));
    }
  });

  it("unknown kid", async () => {
    const claims = accessClaimsFor(session.user);
    // Signed with the right key but labelled with a kid that is not in the keyset.
    await expectRejected(await signTestToken(claims, { kid: "nope" }));
    await expectRejected(await signTestToken(claims, { kid: "" }));
    await expectRejected(await signTestToken(claims, { kid: "__proto__" }));
    // No kid at all.
    await expectRejected(await signTestToken(claims, { kid: null }));
  });

  it("a key that is not ours, under its own kid and re-labelled as ours", async () => {
    const claims = accessClaimsFor(session.user);
    const other = otherKey();
    expect(other.kid).toBe("test-2");
    await expectRejected(await signTestToken(claims, { jwk: other }));
    await expectRejected(await signTestToken(claims, { jwk: other, kid: configuredKey().kid }));
  });

  it("an embedded jwk header does not choose the key", async () => {
    const claims = accessClaimsFor(session.user);
    const { d: _d, kid: _kid, ...otherPublic } = otherKey();
    await expectRejected(await signTestToken(claims, { jwk: otherKey(), kid: null, header: { jwk: otherPublic } }));
    await expectRejected(
      await signTestToken(claims, { jwk: otherKey(), kid: configuredKey().kid, header: { jwk: otherPublic } }),
    );
  });

  it("expired: token_expired", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await signTestToken(accessClaimsFor(session.user, { iat: now - 3600, exp: now - 120 }));
    const res = await expectRejected(token, "token_expired");
    expect(res.headers.get("WWW-Authenticate")).toContain("token_expired");
  });

  it("expired and badly signed is invalid_token, not token_expired", async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = accessClaimsFor(session.user, { iat: now - 3600, exp: now - 120 });
    await expectRejected(await signTestToken(claims, { jwk: otherKey() }));
  });

  it("no exp at all", async () => {
    const claims = accessClaimsFor(session.user);
    delete claims.exp;
    await expectRejected(await signTestToken(claims));
  });

  it("nbf in the future", async () => {
    const now = Math.floor(Date.now() / 1000);
    await expectRejected(await signTestToken(accessClaimsFor(session.user, { nbf: now + 3600 })));
  });

  it("wrong iss", async () => {
    for (const iss of ["https://evil.test", `${env.ISSUER}/`, undefined]) {
      await expectRejected(await signTestToken(accessClaimsFor(session.user, { iss })));
    }
  });

  it("wrong realm in the claims", async () => {
    for (const realm of ["other", "Default", undefined]) {
      await expectRejected(await signTestToken(accessClaimsFor(session.user, { realm })));
    }
  });

  it("a real token of realm B is invalid_token on realm A, and A's on B", async () => {
    const realmB = await createRealm();
    const email = uniqueEmail();
    await signUp(email, {}, `/v1/realms/${realmB}`);
    const pairB = await login(email, { prefix: `/v1/realms/${realmB}` });
    expect(claimsOf(pairB.access_token).realm).toBe(realmB);
    // Works at home...
    expect((await api("GET", `/v1/realms/${realmB}/users/me`, { token: pairB.access_token })).status).toBe(200);
    // ...not elsewhere.
    await expectRejected(pairB.access_token);
    await expectRejected(pairB.access_token, "invalid_token", "/v1/realms/default/users/me");
    await expectRejected(realToken, "invalid_token", `/v1/realms/${realmB}/users/me`);
  });

  it("wrong type: a public token used as an access token", async () => {
    const pub = await api("POST", "/v1/tokens/public", { body: {} });
    expect(pub.status).toBe(201);
    expect(claimsOf(pub.body.token).type).toBe("public");
    await expectRejected(pub.body.token);
  });

  it("wrong type: forged authority and missing type, and missing sub/sid/did/jti", async () => {
    await expectRejected(
      await signTestToken(accessClaimsFor(session.user, { type: "authority", domain: "example.com" })),
    );
    await expectRejected(await signTestToken(accessClaimsFor(session.user, { type: undefined })));
    await expectRejected(await signTestToken(accessClaimsFor(session.user, { type: "refresh" })));
    for (const claim of ["sub", "sid", "did", "jti"]) {
      const claims = accessClaimsFor(session.user);
      delete claims[claim];
      await expectRejected(await signTestToken(claims));
    }
  });

  it("typ and aud (RFC 9068): the access claims under another typ, or another audience, are refused", async () => {
    const claims = accessClaimsFor(session.user);
    // Well signed, every claim right, but the header of another kind (or none, or the generic JWT).
    for (const typ of ["public+jwt", "authority+jwt", "JWT", "jwt", undefined]) {
      await expectRejected(await signTestToken(claims, { header: { typ } }));
    }
    // The audience of authority tokens, a stranger's, none at all, or a list without ours.
    for (const aud of [
      "https://user-registry.test/authority",
      "https://other.test",
      undefined,
      ["https://other.test"],
    ]) {
      await expectRejected(await signTestToken({ ...claims, aud }));
    }
    // A list that holds ours is fine (RFC 7519 §4.1.3); so is `typ` as its media type.
    expect((await api("GET", ME, { token: await signTestToken({ ...claims, aud: ["x", env.ISSUER] }) })).status).toBe(
      200,
    );
    expect(
      (await api("GET", ME, { token: await signTestToken(claims, { header: { typ: "application/at+jwt" } }) })).status,
    ).toBe(200);
    const noAuthTime = { ...claims };
    delete noAuthTime.auth_time;
    await expectRejected(await signTestToken(noAuthTime));
  });

  it("a public token under the access typ, or with an audience, is refused where a public token is taken", async () => {
    const pub = claimsOf((await api("POST", "/v1/tokens/public", { body: {} })).body.token);
    const login = (token: string) =>
      api("POST", "/v1/tokens", {
        headers: { Authorization: `Bearer ${token}` },
        body: { email: session.email, password: PASSWORD },
      });
    expect((await login(await signTestToken(pub))).status).toBe(200);
    for (const token of [
      await signTestToken(pub, { header: { typ: "at+jwt" } }),
      await signTestToken({ ...pub, aud: env.ISSUER }),
    ]) {
      expect((await login(token)).body.error?.code).toBe("invalid_token");
    }
  });

  it("tampered payload, signature kept", async () => {
    const claims = claimsOf(realToken);
    await expectRejected(withPayload(realToken, { ...claims, roles: ["user", "admin"] }));
    await expectRejected(withPayload(realToken, { ...claims, exp: claims.exp + 3600 }));
    await expectRejected(withPayload(realToken, { ...claims, sub: "someone-else" }));
    // Even an identical payload re-encoded differently (whitespace) breaks the signature.
    const [h, , s] = realToken.split(".");
    await expectRejected(`${h}.${b64u(JSON.stringify(claims, null, 1))}.${s}`);
  });

  it("tampered header, signature kept", async () => {
    const [, p, s] = realToken.split(".");
    const header = decodeProtectedHeader(realToken);
    await expectRejected(`${b64u(JSON.stringify({ ...header, typ: "JWT" }))}.${p}.${s}`);
  });

  it("truncated and bit-flipped signatures", async () => {
    const [h, p, s] = realToken.split(".") as [string, string, string];
    await expectRejected(`${h}.${p}.${s.slice(0, -1)}`);
    await expectRejected(`${h}.${p}.${s.slice(0, 40)}`);
    await expectRejected(`${h}.${p}.`);
    await expectRejected(`${h}.${p}`);
    await expectRejected(flipSignatureBit(realToken));
    // The token itself still works: the changes above are what got rejected.
    expect((await api("GET", ME, { token: realToken })).status).toBe(200);
  });

  it.each([
    "garbage",
    "a.b.c",
    "...",
    "e30.e30.e30",
    "eyJhbGciOiJFUzI1NiJ9.not-base64!.sig",
    "x".repeat(5000),
    `${"a".repeat(3000)}.${"b".repeat(3000)}.${"c".repeat(100)}`,
  ])("garbage %#", async (token) => {
    await expectRejected(token);
  });

  it("a real refresh token is not an access token", async () => {
    await expectRejected(session.pair.refresh_token);
  });
});

describe("the RPC verify (AuthService) applies the same checks", () => {
  const verify = async (token: string) => {
    const res = await env.CONSUMER.fetch("https://consumer/verify", {
      method: "POST",
      body: JSON.stringify({ token }),
    });
    return (await res.json()) as { ok: boolean; code?: string; claims?: Record<string, unknown> };
  };

  it("accepts the real token and refuses forged ones with the same codes", async () => {
    const good = await verify(realToken);
    expect(good.ok).toBe(true);
    expect(good.claims?.sub).toBe(session.user.id);

    const now = Math.floor(Date.now() / 1000);
    const claims = accessClaimsFor(session.user);
    const none = `${b64u(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64u(JSON.stringify(claims))}.`;
    const cases: [string, string][] = [
      [none, "invalid_token"],
      [await hs256(claims, JSON.stringify((await api("GET", "/.well-known/jwks.json")).body.keys[0])), "invalid_token"],
      [await signTestToken(claims, { jwk: otherKey(), kid: configuredKey().kid }), "invalid_token"],
      [await signTestToken(accessClaimsFor(session.user, { iat: now - 3600, exp: now - 60 })), "token_expired"],
      [(await api("POST", "/v1/tokens/public", { body: {} })).body.token, "invalid_token"],
      [flipSignatureBit(realToken), "invalid_token"],
      ["garbage", "invalid_token"],
    ];
    for (const [token, code] of cases) {
      expect(await verify(token)).toEqual({ ok: false, code, message: expect.any(String) });
    }
  });
});

describe("valid token, missing user", () => {
  it("a well-signed token for a user that does not exist is 403 user_not_found", async () => {
    const token = await signTestToken(
      accessClaimsFor({ ...session.user, id: "0000000000000000000000000000000000000000" }),
    );
    const res = await api("GET", ME, { token });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("user_not_found");
  });
});

describe("JWKS and the tokens login mints", () => {
  it("the JWKS has public fields only, with kid and alg ES256", async () => {
    const res = await api("GET", "/.well-known/jwks.json");
    expect(res.status).toBe(200);
    expect(res.headers.get("Cache-Control")).toMatch(/public/);
    const key = configuredKey();
    expect(res.body.keys).toEqual([
      { kty: "EC", crv: "P-256", x: key.x, y: key.y, kid: key.kid, alg: "ES256", use: "sig" },
    ]);
    expect(res.text).not.toContain('"d"');
    expect(res.text).not.toContain(key.d as string);
  });

  it("a standard JOSE verifier (issuer, audience, typ) accepts access tokens only (RFC 9068)", async () => {
    const jwks = createLocalJWKSet((await api("GET", "/.well-known/jwks.json")).body);
    const email = uniqueEmail();
    await signUp(email);
    const pair = await login(email);
    const refreshed = (await api("POST", "/v1/tokens/refresh", { body: { refresh_token: pair.refresh_token } })).body;
    const pub = (await api("POST", "/v1/tokens/public", { body: {} })).body;
    const standard = { issuer: "https://user-registry.test", audience: "https://user-registry.test", typ: "at+jwt" };
    for (const token of [pair.access_token, refreshed.access_token]) {
      const { payload, protectedHeader } = await jwtVerify(token, jwks, { ...standard, algorithms: ["ES256"] });
      expect(protectedHeader).toEqual({ alg: "ES256", kid: configuredKey().kid, typ: "at+jwt" });
      expect(payload).toEqual(claimsOf(token));
    }
    // The other kinds carry their own typ, and no access audience: refused on either check alone.
    expect(decodeProtectedHeader(pub.token).typ).toBe("public+jwt");
    await expect(jwtVerify(pub.token, jwks, standard)).rejects.toThrow();
    await expect(
      jwtVerify(pub.token, jwks, { issuer: standard.issuer, audience: standard.audience }),
    ).rejects.toThrow();
    // Signature and issuer alone still hold for every kind (what an audience-less check would see).
    expect((await jwtVerify(pub.token, jwks, { issuer: standard.issuer })).payload.aud).toBeUndefined();
  });

  it("the access token's header names the keyset's kid", async () => {
    const header = decodeProtectedHeader(realToken);
    expect(header).toEqual({ alg: "ES256", kid: configuredKey().kid, typ: "at+jwt" });
    expect(header.kid).toBe("test-1");
  });

  it("the access token carries the claims of api.md §2", async () => {
    const before = Math.floor(Date.now() / 1000);
    const email = uniqueEmail();
    const user = await signUp(email, { full_name: "Claims Person" });
    const pair = await login(email);
    const after = Math.floor(Date.now() / 1000);
    const c = claimsOf(pair.access_token);
    expect(c).toEqual({
      iss: "https://user-registry.test",
      aud: "https://user-registry.test",
      sub: user.id,
      realm: "default",
      type: "access",
      did: pair.device_id,
      sid: expect.any(String),
      jti: expect.any(String),
      iat: expect.any(Number),
      exp: expect.any(Number),
      fresh: true,
      roles: ["user"],
      email,
      // v1.1 (api.md §2, §11): whether that email was proven; a fresh sign-up's is not.
      email_verified: false,
      name: "Claims Person",
      // v1.1 (api.md §2, §12): how and when the credentials were checked.
      amr: ["pwd"],
      auth_time: c.iat,
    });
    expect(c.auth_time).toBe(c.iat);
    expect(c.iat).toBeGreaterThanOrEqual(before);
    expect(c.iat).toBeLessThanOrEqual(after);
    expect(c.exp - c.iat).toBe(900);
    expect(pair.expires_in).toBe(900);
    expect(pair.token_type).toBe("Bearer");
    expect(pair.device_id).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(c.jti.length).toBeGreaterThanOrEqual(16);
    expect(c.sid.length).toBeGreaterThanOrEqual(8);
    // A second login mints a different jti.
    const again = await login(email);
    expect(claimsOf(again.access_token).jti).not.toBe(c.jti);
  });

  it("auth_time is the login's and is kept across refreshes; fresh is not", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const pair = await login(email);
    const first = claimsOf(pair.access_token);
    await new Promise((r) => setTimeout(r, 1100));
    const refreshed = (await api("POST", "/v1/tokens/refresh", { body: { refresh_token: pair.refresh_token } })).body;
    const again = (await api("POST", "/v1/tokens/refresh", { body: { refresh_token: refreshed.refresh_token } })).body;
    for (const token of [refreshed.access_token, again.access_token]) {
      const c = claimsOf(token);
      expect(c.auth_time).toBe(first.auth_time);
      expect(c.iat).toBeGreaterThan(first.auth_time);
      expect(c.fresh).toBe(false);
      expect(c.aud).toBe("https://user-registry.test");
    }
    // A new login is a new credential check.
    const later = claimsOf((await login(email, { device_id: pair.device_id })).access_token);
    expect(later.auth_time).toBeGreaterThan(first.auth_time);
  });

  it("TOKEN_AUDIENCE: a comma-separated list becomes aud; a token for another audience is refused", async () => {
    const listed = { TOKEN_AUDIENCE: "https://api-a.test, https://api-b.test" } as Partial<Cloudflare.Env>;
    const email = uniqueEmail();
    await signUp(email);
    const pair = (await apiWithEnv(listed, "POST", "/v1/tokens", { body: { email, password: PASSWORD } })).body;
    expect(claimsOf(pair.access_token).aud).toEqual(["https://api-a.test", "https://api-b.test"]);
    expect((await apiWithEnv(listed, "GET", ME, { token: pair.access_token })).status).toBe(200);
    // The default audience (the issuer) is not one of those: a token minted for it is refused there, and back.
    expect((await apiWithEnv(listed, "GET", ME, { token: realToken })).body.error.code).toBe("invalid_token");
    expect((await api("GET", ME, { token: pair.access_token })).body.error.code).toBe("invalid_token");
    // The authority audience can never be an access audience.
    const bad = { TOKEN_AUDIENCE: "https://user-registry.test/authority" } as Partial<Cloudflare.Env>;
    expect((await apiWithEnv(bad, "GET", "/health")).status).toBe(503);
  });

  it("public and authority tokens carry their own typ and audience", async () => {
    const pub = (await api("POST", "/v1/tokens/public", { body: {} })).body.token;
    expect(decodeProtectedHeader(pub).typ).toBe("public+jwt");
    expect(claimsOf(pub).aud).toBeUndefined();
  });

  it("a public token carries did and no sub", async () => {
    const res = await api("POST", "/v1/tokens/public", { body: {} });
    const c = claimsOf(res.body.token);
    expect(c.type).toBe("public");
    expect(c.did).toBe(res.body.device_id);
    expect(c.sub).toBeUndefined();
    expect(c.iss).toBe("https://user-registry.test");
    expect(c.exp - c.iat).toBe(res.body.expires_in);
    expect(res.body.expires_in).toBe(30 * 24 * 3600);
    expect(decodeProtectedHeader(res.body.token).kid).toBe("test-1");
  });
});
