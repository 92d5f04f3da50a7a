// user-registry/client (docs/api.md §14) against the running worker: typed calls, storage, and
// authFetch's single-flight refresh.

import { inspect } from "node:util";
import { describe, expect, it } from "vitest";
import { createClient, memoryStorage, RegistryError } from "../../lib/client.js";
import { api, claimsOf, PASSWORD, registry, resign, uniqueEmail } from "./registry.mjs";
import { totpNow, wrongTotpCode } from "./totp.mjs";

/** A client whose requests are recorded ("METHOD /path"). */
function recorded(storage = memoryStorage()) {
  const calls = [];
  const client = createClient({
    baseUrl: registry().url,
    storage,
    fetch: (url, init) => {
      calls.push(`${init?.method ?? "GET"} ${new URL(url).pathname}`);
      return fetch(url, init);
    },
  });
  return { client, calls, storage };
}

describe("createClient", () => {
  it("signs up, logs in, reads /me and lists devices; errors carry the code", async () => {
    const { client, storage } = recorded();
    const email = uniqueEmail();
    const user = await client.signUp({ email, password: PASSWORD, full_name: "Client Person" });
    expect(user.email).toBe(email);
    const pair = await client.login({ email, password: PASSWORD });
    expect(await storage.get("user-registry:refresh_token")).toBe(pair.refresh_token);
    expect((await client.me()).id).toBe(user.id);
    expect((await client.devices()).devices.map((d) => d.device_id)).toEqual([pair.device_id]);
    const err = await client.login({ email, password: "wrong password" }).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect({ status: err.status, code: err.code }).toEqual({ status: 401, code: "invalid_credentials" });
  });

  it("10 concurrent calls with an expired access token: exactly one refresh, and all succeed", async () => {
    const { client, calls, storage } = recorded();
    const email = uniqueEmail();
    await client.signUp({ email, password: PASSWORD, full_name: "Race" });
    const pair = await client.login({ email, password: PASSWORD });
    const past = Math.floor(Date.now() / 1000) - 60;
    const expired = await resign(pair.access_token, { iat: past - 900, exp: past });
    expect((await api("GET", "/v1/users/me", { token: expired })).body.error.code).toBe("token_expired");
    await storage.set("user-registry:access_token", expired);
    calls.length = 0;
    const results = await Promise.all(Array.from({ length: 10 }, () => client.me()));
    expect(results.every((u) => u.email === email)).toBe(true);
    expect(calls.filter((c) => c === "POST /v1/tokens/refresh")).toHaveLength(1);
    expect(await storage.get("user-registry:access_token")).not.toBe(expired);
    // The rotated refresh token is the one kept: another refresh works.
    expect((await client.refresh()).access_token).toBeTruthy();
  });

  it("a session that ended: the refresh fails with its code, the tokens are forgotten", async () => {
    const { client, storage } = recorded();
    const email = uniqueEmail();
    await client.signUp({ email, password: PASSWORD, full_name: "Gone" });
    const pair = await client.login({ email, password: PASSWORD });
    const past = Math.floor(Date.now() / 1000) - 60;
    await api("POST", "/v1/logout", { token: pair.access_token, body: {} });
    await storage.set("user-registry:access_token", await resign(pair.access_token, { iat: past - 900, exp: past }));
    const err = await client.me().catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.status).toBe(401);
    expect(await storage.get("user-registry:refresh_token")).toBeNull();
  });
});

describe("createClient: second factors and identity providers (docs/api.md §12, §13)", () => {
  it("enrols an authenticator app; a login then needs the second step, by app code or recovery code", async () => {
    const { client } = recorded();
    const email = uniqueEmail();
    await client.signUp({ email, password: PASSWORD, full_name: "Two Factors" });
    await client.login({ email, password: PASSWORD });
    const enrolment = await client.enrolTotp();
    expect(enrolment.otpauth_uri).toMatch(/^otpauth:\/\/totp\//);
    // A wrong first code leaves the app off.
    const wrong = await client.confirmTotp(wrongTotpCode(enrolment.secret, 40)).catch((e) => e);
    expect({ status: wrong.status, code: wrong.code }).toEqual({ status: 400, code: "invalid_code" });
    const enrolled = await totpNow(enrolment.secret);
    const { recovery_codes } = await client.confirmTotp(enrolled.code);
    expect(recovery_codes).toHaveLength(10);

    const other = recorded().client;
    const first = await other.login({ email, password: PASSWORD }).catch((e) => e);
    expect(first).toBeInstanceOf(RegistryError);
    expect({ status: first.status, code: first.code, methods: first.mfaMethods }).toEqual({
      status: 401,
      code: "mfa_required",
      methods: ["totp", "recovery_code"],
    });
    expect(await other.accessToken()).toBeNull();
    const bad = await other
      .mfaLogin({ mfa_token: first.mfaToken, code: wrongTotpCode(enrolment.secret, 40) })
      .catch((e) => e);
    expect(bad.code).toBe("invalid_otp");
    // A later step's code than the enrolment's: each code works once.
    const { code } = await totpNow(enrolment.secret, { after: enrolled.step });
    const pair = await other.mfaLogin({ mfa_token: first.mfaToken, code });
    expect(await other.accessToken()).toBe(pair.access_token);
    expect(claimsOf(pair.access_token).amr).toEqual(["pwd", "otp", "mfa"]);

    // A recovery code stands in for the app; regenerating replaces the set.
    const again = await recorded()
      .client.login({ email, password: PASSWORD })
      .catch((e) => e);
    const viaCode = await recorded().client.mfaLogin({ mfa_token: again.mfaToken, recovery_code: recovery_codes[0] });
    expect(claimsOf(viaCode.access_token).amr).toEqual(["pwd", "kba", "mfa"]);
    const fresh = await other.regenerateRecoveryCodes();
    expect(fresh.recovery_codes).toHaveLength(10);
    // The old set stopped working: its unused second code is refused now.
    const afterNew = await recorded()
      .client.login({ email, password: PASSWORD })
      .catch((e) => e);
    const old = await recorded()
      .client.mfaLogin({ mfa_token: afterNew.mfaToken, recovery_code: recovery_codes[1] })
      .catch((e) => e);
    expect({ status: old.status, code: old.code }).toEqual({ status: 401, code: "invalid_otp" });

    await other.removeTotp();
    expect((await recorded().client.login({ email, password: PASSWORD })).user.email).toBe(email);
  });

  it("passkeys and identities: listing, options for a discoverable login, and the registry's codes", async () => {
    const { client, calls } = recorded();
    const email = uniqueEmail();
    await client.signUp({ email, password: PASSWORD, full_name: "Keys" });
    await client.login({ email, password: PASSWORD });
    expect(await client.passkeys()).toEqual({ passkeys: [] });
    const creation = await client.passkeyRegistrationOptions();
    expect(creation.rp).toEqual({ id: "localhost", name: "localhost" });
    expect(creation.authenticatorSelection).toMatchObject({ residentKey: "required" });
    const request = await client.passkeyLoginOptions();
    expect(typeof request.challenge).toBe("string");
    expect(request.allowCredentials ?? []).toEqual([]);
    // A response to a challenge the registry never issued.
    const forged = {
      id: "AAAA",
      rawId: "AAAA",
      type: "public-key",
      response: { clientDataJSON: "e30", authenticatorData: "AAAA", signature: "AAAA" },
      clientExtensionResults: {},
    };
    const refused = await client.passkeyLogin({ response: forged }).catch((e) => e);
    expect({ status: refused.status, code: refused.code }).toEqual({ status: 401, code: "invalid_credentials" });
    const gone = await client.deletePasskey("no-such-passkey").catch((e) => e);
    expect(gone.status).toBe(404);

    expect(await client.identities()).toEqual({ identities: [] });
    const unknown = await client.oidcLogin({ provider: "nowhere", id_token: "x.y.z" }).catch((e) => e);
    expect({ status: unknown.status, code: unknown.code }).toEqual({ status: 400, code: "validation_failed" });
    const badCode = await client.oauthLogin({ code: "not-a-code" }).catch((e) => e);
    expect({ status: badCode.status, code: badCode.code }).toEqual({ status: 400, code: "invalid_code" });
    expect(client.oauthAuthorizeUrl("google", "https://app.test/oauth", "s1")).toEqual({
      url: `${registry().url}/v1/oauth/google/authorize?redirect_uri=https%3A%2F%2Fapp.test%2Foauth&state=s1`,
      state: "s1",
    });
    // Without a state one is made: random, and the one in the URL.
    const made = client.oauthAuthorizeUrl("google", "https://app.test/oauth");
    expect(made.state).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(new URL(made.url).searchParams.get("state")).toBe(made.state);
    expect(client.oauthAuthorizeUrl("google", "https://app.test/oauth").state).not.toBe(made.state);
    expect(calls).toContain("POST /v1/tokens/passkey/options");
  });
});

describe("createClient: failures that must not stick", () => {
  it("a storage whose get throws at once: the refresh fails, and the next one is tried afresh", async () => {
    let broken = true;
    const inner = memoryStorage();
    const storage = {
      get: (k) => {
        if (broken) throw new Error("storage unavailable");
        return inner.get(k);
      },
      set: (k, v) => inner.set(k, v),
      delete: (k) => inner.delete(k),
    };
    const client = createClient({ baseUrl: registry().url, storage });
    await expect(client.refresh()).rejects.toThrow("storage unavailable");
    broken = false;
    // Not the first refresh's rejection again: this one asks the storage, finds no token.
    const err = await client.refresh().catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.code).toBe("missing_token");
  });

  it("an mfa_required error keeps its mfa_token out of logs and JSON, and still gives it", () => {
    const e = new RegistryError(401, "mfa_required", "Second factor needed", undefined, {
      mfa_token: "mfa-secret-token",
      mfa_methods: ["totp"],
    });
    expect(e.mfaToken).toBe("mfa-secret-token");
    expect(Object.keys(e)).not.toContain("mfaToken");
    expect(JSON.stringify(e)).not.toContain("mfa-secret-token");
    expect(JSON.stringify({ ...e })).not.toContain("mfa-secret-token");
    expect(inspect(e)).not.toContain("mfa-secret-token");
    expect(e.mfaMethods).toEqual(["totp"]);
  });
});
