import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { api, apiWithEnv, claimsOf, deviceId, frozenClock, login, newSession, waitFor } from "./helpers";
import { enableTotp } from "./mfa-helpers";
import { SoftPasskey } from "./webauthn-authenticator";

afterEach(() => {
  vi.useRealTimers();
});

/** A signed-in user with a passkey registered through the API. */
async function withPasskey(authenticator?: SoftPasskey) {
  const s = await newSession();
  const key = authenticator ?? (await SoftPasskey.create());
  const options = await api("POST", "/v1/users/me/passkeys/options", { token: s.pair.access_token });
  expect(options.status, options.text).toBe(200);
  const added = await api("POST", "/v1/users/me/passkeys", {
    token: s.pair.access_token,
    body: { response: await key.register(options.body), name: "Test key" },
  });
  expect(added.status, added.text).toBe(201);
  return { ...s, key, passkey: added.body };
}

const loginOptions = async () => {
  const res = await api("POST", "/v1/tokens/passkey/options", { body: {} });
  expect(res.status).toBe(200);
  return res.body as { challenge: string };
};
const passkeyLogin = async (response: unknown, extra: Record<string, unknown> = {}) =>
  api("POST", "/v1/tokens/passkey", { body: { response, ...extra } });

/** The reasons of a user's failed passkey logins, as the audit trail has them (written after each response). */
const failureReasons = (userId: string, n: number) =>
  waitFor(async () => {
    const rows = await env.DB.prepare(
      "SELECT detail FROM audit_events WHERE user_id = ? AND type IN ('login_failed', 'passkey_counter_regression') ORDER BY id",
    )
      .bind(userId)
      .all<{ detail: string }>();
    return rows.results.length >= n ? rows.results.map((r) => JSON.parse(r.detail).reason as string) : null;
  });

const refused = (res: { status: number; body: any }) => {
  expect(res.status).toBe(401);
  expect(res.body.error.code).toBe("invalid_credentials");
};

describe("registering a passkey", () => {
  it("creation options ask for a resident key, prefer user verification, and name the RP", async () => {
    const { pair, user } = await newSession();
    const res = await api("POST", "/v1/users/me/passkeys/options", { token: pair.access_token });
    expect(res.body).toMatchObject({
      rp: { id: "registry.test", name: "Registry Test" },
      authenticatorSelection: { residentKey: "required", userVerification: "preferred" },
      attestation: "none",
    });
    expect(atob(res.body.user.id.replace(/-/g, "+").replace(/_/g, "/"))).toBe(user.id);
    const refreshed = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: pair.refresh_token } });
    const stale = await api("POST", "/v1/users/me/passkeys/options", { token: refreshed.body.access_token });
    expect(stale.body.error.code).toBe("fresh_token_required");
  });

  it("adds, lists and deletes; a deleted passkey signs nobody in", async () => {
    const { pair, key, passkey } = await withPasskey();
    expect(passkey).toMatchObject({ id: key.id, name: "Test key", last_used_at: null, transports: ["internal"] });
    const list = await api("GET", "/v1/users/me/passkeys", { token: pair.access_token });
    expect(list.body.passkeys).toEqual([passkey]);
    const other = await newSession();
    const foreign = await api("DELETE", `/v1/users/me/passkeys/${key.id}`, { token: other.pair.access_token });
    expect(foreign.status).toBe(404);
    expect((await api("DELETE", `/v1/users/me/passkeys/${key.id}`, { token: pair.access_token })).status).toBe(204);
    refused(await passkeyLogin(await key.assert(await loginOptions())));
  });

  it("refuses a wrong origin, a wrong RP ID, a spent challenge, and another user's challenge", async () => {
    const { pair } = await newSession();
    const options = async () => (await api("POST", "/v1/users/me/passkeys/options", { token: pair.access_token })).body;
    const add = async (response: unknown, token = pair.access_token) =>
      api("POST", "/v1/users/me/passkeys", { token, body: { response } });
    const key = await SoftPasskey.create();
    for (const o of [{ origin: "https://evil.test" }, { rpId: "evil.test" }, { type: "webauthn.get" }]) {
      const res = await add(await key.register(await options(), o));
      expect(res.status, JSON.stringify(o)).toBe(400);
      expect(res.body.error.code).toBe("invalid_passkey");
    }
    const opts = await options();
    expect((await add(await key.register(opts))).status).toBe(201);
    const again = await add(await (await SoftPasskey.create()).register(opts));
    expect(again.body.error.code).toBe("invalid_passkey");
    const mallory = await newSession();
    const stolen = await add(await (await SoftPasskey.create()).register(await options()), mallory.pair.access_token);
    expect(stolen.body.error.code).toBe("invalid_passkey");
  });
});

describe("signing in with a passkey", () => {
  it("starts a session with amr hwk+mfa (user verified) or hwk alone; the passkey's last use is recorded", async () => {
    const { key, user, pair } = await withPasskey();
    const device = deviceId("pk");
    const res = await passkeyLogin(await key.assert(await loginOptions()), { device_id: device, description: "Phone" });
    expect(res.status, res.text).toBe(200);
    expect(res.body.user.id).toBe(user.id);
    expect(res.body.device_id).toBe(device);
    const claims = claimsOf(res.body.access_token);
    expect(claims.amr).toEqual(["hwk", "mfa"]);
    expect(claims.fresh).toBe(true);
    const refreshed = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: res.body.refresh_token } });
    expect(claimsOf(refreshed.body.access_token).amr).toEqual(["hwk", "mfa"]);

    const plain = await passkeyLogin(await key.assert(await loginOptions(), { userVerified: false }));
    expect(plain.status).toBe(200);
    expect(claimsOf(plain.body.access_token).amr).toEqual(["hwk"]);
    const list = await api("GET", "/v1/users/me/passkeys", { token: pair.access_token });
    expect(list.body.passkeys[0].last_used_at).toEqual(expect.any(String));
  });

  it("refuses a wrong origin, a wrong RP ID and a signature by another key", async () => {
    const { key, user } = await withPasskey();
    refused(await passkeyLogin(await key.assert(await loginOptions(), { origin: "https://evil.test" })));
    refused(await passkeyLogin(await key.assert(await loginOptions(), { rpId: "evil.test" })));
    refused(await passkeyLogin(await key.assert(await loginOptions(), { signWith: await SoftPasskey.otherKey() })));
    refused(await passkeyLogin(await key.assert({ challenge: "bm90LWlzc3VlZC1ieS11cw" })));
    expect(await failureReasons(user.id, 4)).toEqual(Array(4).fill("verification_failed"));
    // The genuine authenticator still works.
    expect((await passkeyLogin(await key.assert(await loginOptions()))).status).toBe(200);
  });

  it("a challenge works once and for 5 minutes", async () => {
    const clock = frozenClock();
    const { key } = await withPasskey();
    const options = await loginOptions();
    expect((await passkeyLogin(await key.assert(options))).status).toBe(200);
    refused(await passkeyLogin(await key.assert(options)));
    const late = await loginOptions();
    clock.advance(5 * 60_000 + 1);
    refused(await passkeyLogin(await key.assert(late)));
  });

  it("a counter that goes backwards is refused and audited as a possible clone", async () => {
    const { key, user } = await withPasskey();
    expect((await passkeyLogin(await key.assert(await loginOptions(), { counter: 7 }))).status).toBe(200);
    refused(await passkeyLogin(await key.assert(await loginOptions(), { counter: 7 })));
    refused(await passkeyLogin(await key.assert(await loginOptions(), { counter: 3 })));
    const events = await waitFor(async () => {
      const rows = await env.DB.prepare(
        "SELECT detail FROM audit_events WHERE user_id = ? AND type = 'passkey_counter_regression'",
      )
        .bind(user.id)
        .all<{ detail: string }>();
      return rows.results.length >= 2 ? rows.results : null;
    });
    expect(JSON.parse(events[0]?.detail as string)).toMatchObject({ method: "passkey", passkey_id: key.id });
    expect((await passkeyLogin(await key.assert(await loginOptions(), { counter: 8 }))).status).toBe(200);
  });

  it("a credential presented as another user's is refused", async () => {
    const a = await withPasskey();
    const b = await withPasskey();
    refused(await passkeyLogin(await a.key.assert(await loginOptions(), { userHandle: b.key.userHandle })));
    expect(await failureReasons(a.user.id, 1)).toEqual(["other_user"]);
    expect((await passkeyLogin(await a.key.assert(await loginOptions()))).body.user.id).toBe(a.user.id);
  });

  it("with TOTP on, user verification is required; a verified passkey needs no code", async () => {
    const s = await withPasskey();
    await enableTotp(s.pair.access_token);
    refused(await passkeyLogin(await s.key.assert(await loginOptions(), { userVerified: false })));
    expect(await failureReasons(s.user.id, 1)).toEqual(["user_verification_missing"]);
    const ok = await passkeyLogin(await s.key.assert(await loginOptions()));
    expect(ok.status, ok.text).toBe(200);
    expect(claimsOf(ok.body.access_token).amr).toEqual(["hwk", "mfa"]);
    // The password still stops at the second step.
    await expect(login(s.email)).rejects.toThrow(/mfa_required/);
  });

  it("malformed responses are 400 or 401, never 5xx", async () => {
    const bad = [
      {},
      { id: "x", rawId: "x", type: "public-key", response: { clientDataJSON: "!!" } },
      {
        id: "x",
        rawId: "x",
        type: "public-key",
        response: { clientDataJSON: "e30", authenticatorData: "AA", signature: "AA" },
      },
    ];
    for (const response of bad) {
      const res = await passkeyLogin(response);
      expect([400, 401], JSON.stringify(response)).toContain(res.status);
    }
  });
});

describe("passkey settings", () => {
  it("an origin off the RP ID, or origins without an RP ID, make /health 503 naming the setting", async () => {
    const off = await apiWithEnv({ WEBAUTHN_ORIGINS: "https://registry.test.evil.example" }, "GET", "/health");
    expect(off.status).toBe(503);
    expect(off.body.problems).toEqual([expect.stringMatching(/^WEBAUTHN_ORIGINS: /)]);
    const noRp = await apiWithEnv({ WEBAUTHN_RP_ID: "" }, "GET", "/health");
    expect(noRp.body.problems).toEqual(["WEBAUTHN_RP_ID: is required when WEBAUTHN_ORIGINS is set"]);
    const scheme = await apiWithEnv({ WEBAUTHN_RP_ID: "https://registry.test" }, "GET", "/health");
    expect(scheme.body.problems[0]).toMatch(/^WEBAUTHN_RP_ID: /);
    const android = await apiWithEnv(
      { WEBAUTHN_ORIGINS: `https://registry.test,android:apk-key-hash:${"A".repeat(43)}` },
      "GET",
      "/health",
    );
    expect(android.status).toBe(200);
  });

  it("without WEBAUTHN_RP_ID passkeys answer 503 passkeys_unavailable", async () => {
    const res = await apiWithEnv({ WEBAUTHN_RP_ID: "", WEBAUTHN_ORIGINS: "" }, "POST", "/v1/tokens/passkey/options", {
      body: {},
    });
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe("passkeys_unavailable");
  });
});
