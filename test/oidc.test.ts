import { env, exports } from "cloudflare:workers";
import { generateKeyPair, SignJWT } from "jose";
import { afterEach, describe, expect, it, vi } from "vitest";
import { forgetProviderCaches, verifyIdToken } from "../src/auth-methods/oidc";
import { makeDeps } from "../src/services/deps";
import {
  api,
  apiWithEnv,
  b64u,
  claimsOf,
  createRealm,
  hs256,
  login,
  signUp,
  signUpVerified,
  uniqueEmail,
  withPrefix,
} from "./helpers";
import { codeAt, enableTotp } from "./mfa-helpers";

// Identity providers (docs/api.md §13) against the fake OpenID provider of the test double
// (https://idp.test: its own RSA key, discovery, JWKS, authorization and token endpoints).

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

const IDP = "https://idp.test";
const codeOf = (res: { body: any }): string | undefined => res.body?.error?.code;
const sub = () => `sub-${crypto.randomUUID()}`;

async function double(path: string, init?: RequestInit): Promise<Response> {
  return (env as unknown as { DOUBLE: Fetcher }).DOUBLE.fetch(`${IDP}${path}`, init);
}

/** An ID token signed by the fake provider's own key; `header` may change alg/kid/typ. */
async function idToken(claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const res = await double("/__idp/sign", {
    method: "POST",
    body: JSON.stringify({
      claims: { iss: IDP, aud: "ios-client", sub: sub(), iat: now, exp: now + 300, ...claims },
      header,
    }),
  });
  return ((await res.json()) as { token: string }).token;
}

const signIn = (body: Record<string, unknown>, prefix = "") =>
  api("POST", withPrefix(prefix, "/v1/tokens/oidc"), { body: { provider: "fake", ...body } });

/** A GET as a browser sends it, without following the redirect (api() follows). */
async function visit(path: string): Promise<{ status: number; location: string | null; text: string; body: any }> {
  const res = await (exports as unknown as { default: Fetcher }).default.fetch(
    new Request(`https://registry.test${path}`, { redirect: "manual" }),
  );
  const text = await res.text();
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // a redirect has no body
  }
  return { status: res.status, location: res.headers.get("Location"), text, body };
}

async function sha256Hex(s: string) {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
  return [...d].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const identityCount = async (subject: string) =>
  (await env.DB.prepare("SELECT COUNT(*) AS n FROM identities WHERE subject = ?").bind(subject).first<{ n: number }>())
    ?.n;

describe("configuration (docs/api.md §13)", () => {
  it("accepts google and apple presets with only {id, client_ids}", async () => {
    const res = await apiWithEnv(
      {
        OIDC_PROVIDERS: JSON.stringify([
          { id: "google", client_ids: ["123.apps.googleusercontent.com"] },
          { id: "apple", client_ids: ["com.example.app", "com.example.web"] },
        ]),
        OIDC_CLIENT_SECRETS: JSON.stringify({ google: "s1", apple: "s2" }),
      },
      "GET",
      "/health",
    );
    expect(res.status).toBe(200);
  });

  it("/health names what is wrong, never a secret", async () => {
    const res = await apiWithEnv(
      {
        OIDC_PROVIDERS: JSON.stringify([
          { id: "corp", client_ids: ["a"] },
          { id: "Bad Id", client_ids: [] },
        ]),
        OIDC_CLIENT_SECRETS: JSON.stringify({ nobody: "super-secret-value" }),
        OAUTH_REDIRECT_URIS: "https://app.example/cb#frag",
      },
      "GET",
      "/health",
    );
    expect(res.status).toBe(503);
    const problems = (res.body.problems as string[]).join("\n");
    expect(problems).toMatch(/OIDC_PROVIDERS: provider "corp": issuer is required/);
    expect(problems).toMatch(/OIDC_PROVIDERS: provider "Bad Id": id must match/);
    expect(problems).toMatch(/client_ids must list at least one client id/);
    expect(problems).toMatch(/OAUTH_REDIRECT_URIS/);
    const bad = await apiWithEnv({ OIDC_CLIENT_SECRETS: "{nope" }, "GET", "/health");
    expect(bad.body.problems).toContain("OIDC_CLIENT_SECRETS: is not valid JSON");
    const unknown = await apiWithEnv(
      { OIDC_CLIENT_SECRETS: JSON.stringify({ nobody: "super-secret-value" }) },
      "GET",
      "/health",
    );
    expect(unknown.body.problems.join("\n")).toMatch(/OIDC_CLIENT_SECRETS: "nobody" is not a provider/);
    expect(res.text + bad.text + unknown.text).not.toContain("super-secret-value");
  });
});

describe("POST /v1/tokens/oidc: sign-in and sign-up", () => {
  it("creates an account (source oidc, email verified as the provider says), then signs in to it", async () => {
    const s = sub();
    const email = uniqueEmail("idp-users.test");
    const first = await signIn({ id_token: await idToken({ sub: s, email, email_verified: true, name: "Ada" }) });
    expect(first.status).toBe(200);
    expect(first.body.created).toBe(true);
    expect(first.body.user).toMatchObject({ email, email_verified: true, source: "oidc", full_name: "Ada" });
    const again = await signIn({ id_token: await idToken({ sub: s, email, email_verified: true }) });
    expect(again.status).toBe(200);
    expect(again.body.created).toBe(false);
    expect(again.body.user.id).toBe(first.body.user.id);
    const me = await api("GET", "/v1/users/me/identities", { token: again.body.access_token });
    expect(me.body.identities).toEqual([expect.objectContaining({ provider: "fake", subject: s, email })]);
  });

  it("keeps an unverified provider address unverified on the new account", async () => {
    const res = await signIn({
      id_token: await idToken({ email: uniqueEmail("idp-users.test"), email_verified: false }),
    });
    expect(res.status).toBe(200);
    expect(res.body.user.email_verified).toBe(false);
  });

  it("accepts any of the client ids, and a provider with configured endpoints (no discovery)", async () => {
    expect((await signIn({ id_token: await idToken({ aud: "web-client" }) })).status).toBe(200);
    const direct = await signIn({
      provider: "fake-direct",
      id_token: await idToken({ iss: `${IDP}/direct`, aud: "direct-client" }),
    });
    expect(direct.status).toBe(200);
  });

  it("accepts a nonce equal to the one sent, or its SHA-256 hex digest (Apple)", async () => {
    const n1 = crypto.randomUUID();
    expect((await signIn({ nonce: n1, id_token: await idToken({ nonce: n1 }) })).status).toBe(200);
    const n2 = crypto.randomUUID();
    expect((await signIn({ nonce: n2, id_token: await idToken({ nonce: await sha256Hex(n2) }) })).status).toBe(200);
  });

  it("answers 400 validation_failed for an unknown provider", async () => {
    const res = await signIn({ provider: "nope", id_token: await idToken() });
    expect(res.status).toBe(400);
    expect(codeOf(res)).toBe("validation_failed");
    expect(res.body.error.fields.provider).toBeDefined();
  });

  it("follows the realm's registration mode and domain rules for new accounts", async () => {
    const closed = await createRealm({ registration: "closed" });
    const res = await signIn(
      { id_token: await idToken({ email: uniqueEmail(), email_verified: true }) },
      `/v1/realms/${closed}`,
    );
    expect(res.status).toBe(403);
    expect(codeOf(res)).toBe("registration_closed");
    const allow = await createRealm({ registration: "allowlist" });
    const denied = await signIn(
      { id_token: await idToken({ email: uniqueEmail(), email_verified: true }) },
      `/v1/realms/${allow}`,
    );
    expect(codeOf(denied)).toBe("domain_not_allowed");
  });

  it("gives the bootstrap seat to a provider-verified listed address, not to an unverified one", async () => {
    const realm = await createRealm({ registration: "closed" });
    const prefix = `/v1/realms/${realm}`;
    const unverified = await signIn(
      { id_token: await idToken({ email: "root@admin.test", email_verified: false }) },
      prefix,
    );
    expect(unverified.status).toBe(403);
    const res = await signIn({ id_token: await idToken({ email: "root@admin.test", email_verified: true }) }, prefix);
    expect(res.status).toBe(200);
    expect(res.body.user).toMatchObject({ roles: ["user", "admin"], status: "active", email_verified: true });
  });
});

describe("POST /v1/tokens/oidc: forged and misused ID tokens answer 401 invalid_token", () => {
  const expectRejected = async (token: string, extra: Record<string, unknown> = {}) => {
    const res = await signIn({ id_token: token, ...extra });
    expect(res.status, res.text).toBe(401);
    expect(codeOf(res)).toBe("invalid_token");
  };

  it("a token signed by a key that is not in the provider's JWKS (same kid, and another kid)", async () => {
    const { privateKey } = await generateKeyPair("RS256");
    const now = Math.floor(Date.now() / 1000);
    for (const kid of ["idp-1", "attacker-1"]) {
      const forged = await new SignJWT({ email: uniqueEmail(), email_verified: true })
        .setProtectedHeader({ alg: "RS256", kid })
        .setIssuer(IDP)
        .setAudience("ios-client")
        .setSubject(sub())
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(privateKey);
      await expectRejected(forged);
    }
  });

  it("alg none", async () => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: IDP, aud: "ios-client", sub: sub(), iat: now, exp: now + 300 };
    await expectRejected(`${b64u(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64u(JSON.stringify(claims))}.`);
  });

  it("HS256 keyed with the provider's public key", async () => {
    const jwks = (await (await double("/jwks")).json()) as { keys: Record<string, string>[] };
    const pub = jwks.keys[0] as Record<string, string>;
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: IDP, aud: "ios-client", sub: sub(), iat: now, exp: now + 300 };
    for (const secret of [pub.n as string, JSON.stringify(pub), JSON.stringify(jwks)]) {
      await expectRejected(await hs256(claims, secret, "idp-1"));
    }
  });

  it("a wrong iss, an aud of another client, an expired token, an azp of another client", async () => {
    await expectRejected(await idToken({ iss: "https://evil.test" }));
    await expectRejected(await idToken({ iss: `${IDP}/direct` }));
    await expectRejected(await idToken({ aud: "someone-elses-client" }));
    const now = Math.floor(Date.now() / 1000);
    await expectRejected(await idToken({ iat: now - 3600, exp: now - 120 }));
    await expectRejected(await idToken({ aud: ["ios-client", "other"], azp: "other" }));
  });

  it("a nonce missing or different when one was sent, and a replayed nonce", async () => {
    const n = crypto.randomUUID();
    await expectRejected(await idToken(), { nonce: n });
    await expectRejected(await idToken({ nonce: "something-else" }), { nonce: n });
    const token = await idToken({ nonce: n });
    expect((await signIn({ id_token: token, nonce: n })).status).toBe(200);
    await expectRejected(token, { nonce: n });
  });

  it("garbage", async () => {
    await expectRejected("not.a.jwt");
    await expectRejected("x");
  });
});

describe("amr and second factors (docs/api.md §12)", () => {
  it("tokens carry amr fed; an account with TOTP on still needs its second factor", async () => {
    const plain = await signIn({ id_token: await idToken() });
    expect(claimsOf(plain.body.access_token).amr).toEqual(["fed"]);

    const s = sub();
    const first = await signIn({ id_token: await idToken({ sub: s, email: uniqueEmail(), email_verified: true }) });
    const { secret } = await enableTotp(first.body.access_token);
    const res = await signIn({ id_token: await idToken({ sub: s }) });
    expect(res.status).toBe(401);
    expect(codeOf(res)).toBe("mfa_required");
    expect(res.body.access_token).toBeUndefined();
    const done = await api("POST", "/v1/tokens/mfa", {
      body: { mfa_token: res.body.mfa_token, code: codeAt(secret, Date.now()) },
    });
    expect(done.status, done.text).toBe(200);
    expect(claimsOf(done.body.access_token).amr).toEqual(expect.arrayContaining(["fed", "otp", "mfa"]));
  });
});

describe("linking (docs/api.md §13)", () => {
  it("links a provider-verified email to the verified account that holds it", async () => {
    const user = await signUpVerified();
    const s = sub();
    const res = await signIn({ id_token: await idToken({ sub: s, email: user.email, email_verified: true }) });
    expect(res.status).toBe(200);
    expect(res.body.created).toBe(false);
    expect(res.body.user.id).toBe(user.id);
    expect(await identityCount(s)).toBe(1);
  });

  it("email_verified false matching an existing account: 409 account_exists, nothing linked", async () => {
    const user = await signUpVerified();
    const s = sub();
    const res = await signIn({ id_token: await idToken({ sub: s, email: user.email, email_verified: false }) });
    expect(res.status).toBe(409);
    expect(codeOf(res)).toBe("account_exists");
    const missing = await signIn({ id_token: await idToken({ sub: s, email: user.email }) });
    expect(codeOf(missing)).toBe("account_exists");
    expect(await identityCount(s)).toBe(0);
  });

  it("a provider email matching an unverified account: 409 account_exists, nothing linked (no pre-registration hijack)", async () => {
    const squatter = await signUp(uniqueEmail());
    const s = sub();
    const res = await signIn({ id_token: await idToken({ sub: s, email: squatter.email, email_verified: true }) });
    expect(res.status).toBe(409);
    expect(codeOf(res)).toBe("account_exists");
    expect(await identityCount(s)).toBe(0);
  });

  it("a second user cannot link an identity already linked to another account", async () => {
    const s = sub();
    const owner = await signIn({ id_token: await idToken({ sub: s, email: uniqueEmail(), email_verified: true }) });
    expect(owner.status).toBe(200);
    const other = await signUp();
    const pair = await login(other.email);
    const res = await api("POST", "/v1/users/me/identities", {
      token: pair.access_token,
      body: { provider: "fake", id_token: await idToken({ sub: s }) },
    });
    expect(res.status).toBe(409);
    expect(codeOf(res)).toBe("identity_in_use");
    const rows = await env.DB.prepare("SELECT user_id FROM identities WHERE subject = ?")
      .bind(s)
      .all<{ user_id: string }>();
    expect(rows.results.map((r) => r.user_id)).toEqual([owner.body.user.id]);
  });

  it("links with a fresh token, lists it, unlinks it; the only way in is 409 last_credential", async () => {
    const user = await signUp();
    const pair = await login(user.email);
    const s = sub();
    const linked = await api("POST", "/v1/users/me/identities", {
      token: pair.access_token,
      body: { provider: "fake", id_token: await idToken({ sub: s }) },
    });
    expect(linked.status).toBe(201);
    expect(linked.body).toMatchObject({ provider: "fake", subject: s });
    const via = await signIn({ id_token: await idToken({ sub: s }) });
    expect(via.body.user.id).toBe(user.id);
    const list = await api("GET", "/v1/users/me/identities", { token: pair.access_token });
    expect(list.body.identities).toHaveLength(1);
    expect((await api("DELETE", "/v1/users/me/identities/fake", { token: pair.access_token })).status).toBe(204);
    expect((await api("DELETE", "/v1/users/me/identities/fake", { token: pair.access_token })).status).toBe(404);

    const only = await signIn({ id_token: await idToken({ email: uniqueEmail(), email_verified: true }) });
    const res = await api("DELETE", "/v1/users/me/identities/fake", { token: only.body.access_token });
    expect(res.status).toBe(409);
    expect(codeOf(res)).toBe("last_credential");
  });

  it("linking needs a fresh token", async () => {
    const user = await signUp();
    const pair = await login(user.email);
    const refreshed = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: pair.refresh_token } });
    const res = await api("POST", "/v1/users/me/identities", {
      token: refreshed.body.access_token,
      body: { provider: "fake", id_token: await idToken() },
    });
    expect(codeOf(res)).toBe("fresh_token_required");
  });
});

describe("web flow: GET /v1/oauth/{provider}/authorize, /callback, POST /v1/tokens/oauth", () => {
  const REDIRECT = "https://app.test/signed-in";

  /** Runs the browser's part: our authorize, the provider's consent (as `account`), our callback. */
  async function browse(account: Record<string, string>, appState = "app-state-1") {
    const start = await visit(
      `/v1/oauth/fake/authorize?redirect_uri=${encodeURIComponent(REDIRECT)}&state=${appState}`,
    );
    expect(start.status, start.text).toBe(302);
    const to = new URL(start.location as string);
    expect(to.origin + to.pathname).toBe(`${IDP}/authorize`);
    expect(to.searchParams.get("code_challenge_method")).toBe("S256");
    for (const [k, v] of Object.entries(account)) to.searchParams.set(k, v);
    const consent = await double(to.pathname + to.search, { redirect: "manual" });
    const callback = new URL(consent.headers.get("Location") as string);
    expect(callback.pathname).toBe("/v1/oauth/fake/callback");
    return { to, callback };
  }

  async function toApp(callback: URL) {
    const res = await visit(callback.pathname + callback.search);
    expect(res.status, res.text).toBe(302);
    return new URL(res.location as string);
  }

  it("signs in: provider consent, our one-time code to the redirect_uri, swapped once for tokens", async () => {
    const email = uniqueEmail("idp-users.test");
    const { callback } = await browse({ sub: sub(), email });
    const back = await toApp(callback);
    expect(back.origin + back.pathname).toBe(REDIRECT);
    expect(back.searchParams.get("state")).toBe("app-state-1");
    const code = back.searchParams.get("code") as string;
    const res = await api("POST", "/v1/tokens/oauth", { body: { code } });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ created: true, user: { email, email_verified: true, source: "oidc" } });
    const spent = await api("POST", "/v1/tokens/oauth", { body: { code } });
    expect(spent.status).toBe(400);
    expect(codeOf(spent)).toBe("invalid_code");
  });

  it("a state that does not match, or one already spent: 400 invalid_state", async () => {
    const { callback } = await browse({ sub: sub() });
    const forged = new URL(callback);
    forged.searchParams.set("state", "not-ours");
    const res = await visit(forged.pathname + forged.search);
    expect(res.status).toBe(400);
    expect(codeOf(res)).toBe("invalid_state");
    await toApp(callback);
    const replay = await visit(callback.pathname + callback.search);
    expect(codeOf(replay)).toBe("invalid_state");
    const none = await visit("/v1/oauth/fake/callback?code=x");
    expect(codeOf(none)).toBe("invalid_state");
  });

  it("an expired one-time code: 400 invalid_code", async () => {
    const { callback } = await browse({ sub: sub() });
    const code = (await toApp(callback)).searchParams.get("code") as string;
    const key = await sha256Hex(`code\n${code}`);
    await env.DB.prepare("UPDATE oauth_records SET expires_at = ? WHERE key = ?")
      .bind(new Date(Date.now() - 1000).toISOString(), key)
      .run();
    const res = await api("POST", "/v1/tokens/oauth", { body: { code } });
    expect(codeOf(res)).toBe("invalid_code");
  });

  it("a redirect_uri not on the list: 400 validation_failed, no redirect", async () => {
    for (const uri of ["https://evil.test/steal", "https://app.test/signed-in/../x", `${REDIRECT}?x=1`]) {
      const res = await visit(`/v1/oauth/fake/authorize?redirect_uri=${encodeURIComponent(uri)}`);
      expect(res.status).toBe(400);
      expect(res.body.error.fields.redirect_uri).toBeDefined();
      expect(res.location).toBeNull();
    }
  });

  it("a provider that refuses the code exchange sends the app ?error=provider_error", async () => {
    const { callback } = await browse({ sub: sub() });
    const tampered = new URL(callback);
    tampered.searchParams.set("code", "not-a-code-the-provider-issued");
    const back = await toApp(tampered);
    expect(back.searchParams.get("error")).toBe("provider_error");
    expect(back.searchParams.get("code")).toBeNull();
  });
});

describe("JWKS cache (measured)", () => {
  it("native-flow login with a warm and a cold JWKS cache (p50)", async () => {
    const time = async (cold: boolean) => {
      const token = await idToken();
      if (cold) forgetProviderCaches();
      const t0 = performance.now();
      const res = await signIn({ id_token: token });
      const ms = performance.now() - t0;
      expect(res.status).toBe(200);
      return ms;
    };
    const p50 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    const warm: number[] = [];
    const cold: number[] = [];
    await time(false);
    for (let i = 0; i < 25; i++) {
      warm.push(await time(false));
      cold.push(await time(true));
    }
    // The ID token check alone (discovery + JWKS fetch when cold), without D1 and the session start.
    const deps = await makeDeps(env as never, Date.now(), () => {});
    const provider = deps.config.OIDC_PROVIDERS.find((p) => p.id === "fake");
    if (!provider) throw new Error("no provider");
    const check = async (isCold: boolean) => {
      const token = await idToken();
      if (isCold) forgetProviderCaches();
      const t0 = performance.now();
      await verifyIdToken({ ...deps, now: Date.now() }, "default", provider, token);
      return performance.now() - t0;
    };
    const warmCheck: number[] = [];
    const coldCheck: number[] = [];
    for (let i = 0; i < 15; i++) {
      warmCheck.push(await check(false));
      coldCheck.push(await check(true));
    }
    console.info(
      JSON.stringify({
        bench: "oidc-login",
        login_warm_p50_ms: p50(warm),
        login_cold_p50_ms: p50(cold),
        verify_warm_p50_ms: p50(warmCheck),
        verify_cold_p50_ms: p50(coldCheck),
      }),
    );
  });
});
