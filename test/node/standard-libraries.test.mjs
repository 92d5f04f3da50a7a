// Resource servers built with libraries nobody here wrote, configured the standard way
// (issuer, audience, typ where the library checks it), accept access tokens and refuse public
// and authority tokens (docs/api.md §2, §14). Keys found from the issuer URL, as such libraries do.
import { createRemoteJWKSet, jwtVerify } from "jose";
import jwt from "jsonwebtoken";
import jwksRsa from "jwks-rsa";
import { beforeAll, describe, expect, it } from "vitest";
import { api, registry, tokensOfEachKind } from "./registry.mjs";

let tokens;
let metadata;

beforeAll(async () => {
  tokens = await tokensOfEachKind();
  metadata = (await api("GET", "/.well-known/openid-configuration")).body;
});

describe("discovery from the issuer URL", () => {
  it("both metadata documents name the issuer (= iss) and the JWKS", async () => {
    const { issuer } = registry();
    expect(metadata.issuer).toBe(issuer);
    expect(metadata.jwks_uri).toBe(`${issuer}/.well-known/jwks.json`);
    expect((await api("GET", "/.well-known/oauth-authorization-server")).body).toEqual(metadata);
    const jwks = await fetch(metadata.jwks_uri);
    expect(jwks.ok).toBe(true);
  });
});

describe("jsonwebtoken + jwks-rsa (issuer and audience, as a Node API configures them)", () => {
  const verify = (token) => {
    const client = jwksRsa({ jwksUri: metadata.jwks_uri, cache: true });
    const getKey = (header, callback) =>
      client.getSigningKey(header.kid, (err, key) => callback(err, key?.getPublicKey()));
    return new Promise((resolve, reject) =>
      jwt.verify(
        token,
        getKey,
        { issuer: metadata.issuer, audience: metadata.issuer, algorithms: ["ES256"] },
        (err, payload) => (err ? reject(err) : resolve(payload)),
      ),
    );
  };

  it("accepts an access token", async () => {
    const payload = await verify(tokens.access);
    expect(payload).toMatchObject({ type: "access", aud: registry().issuer, sub: tokens.pair.user.id });
  });

  it("accepts a refreshed access token", async () => {
    const refreshed = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: tokens.pair.refresh_token } });
    expect((await verify(refreshed.body.access_token)).fresh).toBe(false);
  });

  it("refuses a public token (no audience)", async () => {
    await expect(verify(tokens.public)).rejects.toThrow(/audience/);
  });

  it("refuses an authority token (the authority audience)", async () => {
    await expect(verify(tokens.authority)).rejects.toThrow(/audience/);
  });
});

describe("jose (issuer, audience and typ: at+jwt, RFC 9068)", () => {
  let JWKS;
  beforeAll(() => {
    JWKS = createRemoteJWKSet(new URL(metadata.jwks_uri));
  });
  const standard = () => ({ issuer: metadata.issuer, audience: metadata.issuer, typ: "at+jwt" });

  it("accepts an access token", async () => {
    const { payload, protectedHeader } = await jwtVerify(tokens.access, JWKS, standard());
    expect(protectedHeader.typ).toBe("at+jwt");
    expect(payload.auth_time).toBeLessThanOrEqual(payload.iat);
  });

  it("refuses public and authority tokens, on typ alone and on audience alone", async () => {
    for (const token of [tokens.public, tokens.authority]) {
      await expect(jwtVerify(token, JWKS, standard())).rejects.toThrow();
      await expect(jwtVerify(token, JWKS, { issuer: metadata.issuer, typ: "at+jwt" })).rejects.toThrow(/typ/);
      await expect(jwtVerify(token, JWKS, { issuer: metadata.issuer, audience: metadata.issuer })).rejects.toThrow(
        /aud/,
      );
    }
  });
});
