// user-registry/verify (docs/api.md §14) in Node, against the running worker's JWKS; and inside
// a consumer Worker (bench/workers/verifier.js) with the revocation check over the binding.
import { beforeAll, describe, expect, it } from "vitest";
import { createVerifier } from "../../lib/verify.js";
import { api, claimsOf, newSession, registry, resign, tokensOfEachKind } from "./registry.mjs";

let tokens;
beforeAll(async () => {
  tokens = await tokensOfEachKind();
});

/** A verifier whose JWKS requests are counted. */
function counted(extra = {}) {
  const { issuer } = registry();
  const jwks = {
    calls: 0,
    fetch(url) {
      this.calls++;
      return fetch(`${issuer}${new URL(url).pathname}`);
    },
  };
  return { jwks, verifier: createVerifier({ issuer, audience: issuer, jwks, ...extra }) };
}

describe("createVerifier: local checks", () => {
  it("accepts an access token, with its claims; the JWKS is fetched once for many tokens", async () => {
    const { jwks, verifier } = counted();
    for (let i = 0; i < 20; i++) {
      const r = await verifier.verify(tokens.access);
      expect(r.ok).toBe(true);
      expect(r.claims.sub).toBe(tokens.pair.user.id);
    }
    const other = await newSession();
    expect((await verifier.verify(other.pair.access_token)).ok).toBe(true);
    expect(jwks.calls).toBe(1);
  });

  it("takes the JWKS URL as well", async () => {
    const { issuer } = registry();
    const verifier = createVerifier({
      issuer,
      audience: [issuer, "other"],
      jwks: new URL(`${issuer}/.well-known/jwks.json`),
    });
    expect((await verifier.verify(tokens.access)).ok).toBe(true);
  });

  it("refuses public and authority tokens, forgeries, and other issuers, audiences and realms", async () => {
    const { verifier } = counted();
    const code = async (t) => (await verifier.verify(t)).code;
    expect(await code(tokens.public)).toBe("invalid_token");
    expect(await code(tokens.authority)).toBe("invalid_token");
    expect(await code(null)).toBe("missing_token");
    expect(await code("not.a.jwt")).toBe("invalid_token");
    const [h, p, s] = tokens.access.split(".");
    expect(await code(`${h}.${p}.${s.slice(0, -2)}AA`)).toBe("invalid_token");
    // Well signed with the registry's own key, one claim or header wrong each time.
    expect(await code(await resign(tokens.access, { aud: "https://someone-else.test" }))).toBe("invalid_token");
    expect(await code(await resign(tokens.access, { iss: "https://evil.test" }))).toBe("invalid_token");
    expect(await code(await resign(tokens.access, { realm: "other" }))).toBe("invalid_token");
    expect(await code(await resign(tokens.public, { aud: registry().issuer }))).toBe("invalid_token");
    const past = Math.floor(Date.now() / 1000) - 60;
    expect(await code(await resign(tokens.access, { iat: past - 900, exp: past }))).toBe("token_expired");
    // The control: the same re-signing with nothing changed passes.
    expect((await verifier.verify(await resign(tokens.access))).ok).toBe(true);
  });

  it("an expired token is refused even after it verified once (expiry is checked every time)", async () => {
    let now = Date.now();
    const { verifier } = counted({ now: () => now });
    expect((await verifier.verify(tokens.access)).ok).toBe(true);
    now = (claimsOf(tokens.access).exp + 1) * 1000;
    expect((await verifier.verify(tokens.access)).code).toBe("token_expired");
  });

  it("fresh, roles and mfa", async () => {
    const { verifier } = counted();
    expect((await verifier.verify(tokens.access, { fresh: true })).ok).toBe(true);
    const refreshed = await api("POST", "/v1/tokens/refresh", {
      body: { refresh_token: (await newSession()).pair.refresh_token },
    });
    expect((await verifier.verify(refreshed.body.access_token, { fresh: true })).code).toBe("fresh_token_required");
    expect((await verifier.verify(tokens.access, { roles: ["user"] })).ok).toBe(true);
    expect((await verifier.verify(tokens.access, { roles: ["admin"] })).code).toBe("forbidden");
    expect((await verifier.verify(tokens.access, { mfa: true })).code).toBe("mfa_required");
  });
});

describe("inside a Worker, with the revocation check over the AuthService binding", () => {
  const through = async (path, token) => {
    const res = await fetch(new URL(path, registry().verifierUrl), { headers: { authorization: `Bearer ${token}` } });
    return res.json();
  };

  it("a logged-out token is refused within 5 s by the checked verifier; the local one cannot know", async () => {
    const { pair } = await newSession();
    expect((await through("/", pair.access_token)).ok).toBe(true);
    expect((await through("/revocation", pair.access_token)).ok).toBe(true);
    expect((await through("/revocation", tokens.public)).code).toBe("invalid_token");
    expect((await api("POST", "/v1/logout", { token: pair.access_token, body: {} })).status).toBe(204);
    await new Promise((r) => setTimeout(r, 5_100));
    expect((await through("/revocation", pair.access_token)).code).toBe("token_revoked");
    expect((await through("/", pair.access_token)).ok).toBe(true);
  });
});
