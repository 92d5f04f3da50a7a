import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { api, createRealm, login, signUp, signUpVerified, uniqueEmail, withPrefix } from "./helpers";
import { codeAt, enableTotp, firstStep } from "./mfa-helpers";
import { verifyRpc } from "./session-helpers";

afterEach(() => {
  vi.useRealTimers();
});

/** A realm with an admin (root@admin.test bootstraps) signed in with a password only. */
async function realmWithAdmin() {
  const realm = await createRealm();
  const prefix = `/v1/realms/${realm}`;
  await signUpVerified("root@admin.test", {}, prefix);
  const pair = await login("root@admin.test", { prefix });
  return { realm, prefix, pair, p: (path: string) => withPrefix(prefix, path) };
}

describe("realm setting admin_mfa_required", () => {
  it("admin routes answer 403 mfa_required to a one-factor token, and work after the second step", async () => {
    const r = await realmWithAdmin();
    const member = await signUp(uniqueEmail(), {}, r.prefix);
    // Before the setting: a password is enough.
    expect((await api("GET", r.p("/v1/users"), { token: r.pair.access_token })).status).toBe(200);
    await env.DB.prepare("UPDATE realms SET admin_mfa_required = 1 WHERE id = ?").bind(r.realm).run();

    for (const [method, path, body] of [
      ["GET", "/v1/users", undefined],
      ["GET", "/v1/domains", undefined],
      ["POST", `/v1/users/${member.id}/deactivate`, undefined],
      ["PATCH", `/v1/users/${member.id}`, { full_name: "Renamed" }],
      ["POST", "/v1/users", { email: uniqueEmail(), full_name: "By admin", password: "long enough pass" }],
    ] as const) {
      const res = await api(method, r.p(path), { token: r.pair.access_token, body });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.body.error.code).toBe("mfa_required");
    }
    // The admin's own account is not an admin route.
    expect((await api("GET", r.p("/v1/users/me"), { token: r.pair.access_token })).status).toBe(200);

    const { secret } = await enableTotp(r.pair.access_token, r.prefix);
    const token = await firstStep("root@admin.test", { prefix: r.prefix });
    const done = await api("POST", r.p("/v1/tokens/mfa"), {
      body: { mfa_token: token, code: codeAt(secret, Date.now()) },
    });
    expect(done.status).toBe(200);
    expect((await api("GET", r.p("/v1/users"), { token: done.body.access_token })).status).toBe(200);
  });

  it("is a realm setting admins of realm default change", async () => {
    await signUpVerified("second-root@admin.test");
    const admin = await login("second-root@admin.test");
    const realm = `r${Date.now().toString(36)}`;
    const put = await api("PUT", `/v1/realms/${realm}`, {
      token: admin.access_token,
      body: { registration: "open", approval_required: false, captcha_required: false, admin_mfa_required: true },
    });
    expect(put.status).toBe(200);
    expect(put.body.admin_mfa_required).toBe(true);
    // Left out: unchanged.
    const again = await api("PUT", `/v1/realms/${realm}`, {
      token: admin.access_token,
      body: { registration: "closed", approval_required: false, captcha_required: false },
    });
    expect(again.body).toMatchObject({ registration: "closed", admin_mfa_required: true });
  });
});

describe("verify(token, {mfa: true}) over RPC", () => {
  it("refuses a one-factor token with mfa_required and accepts one with mfa in amr", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const pair = await login(email);
    expect(await verifyRpc(pair.access_token, { mfa: true })).toMatchObject({ ok: false, code: "mfa_required" });
    expect(await verifyRpc(pair.access_token)).toMatchObject({ ok: true });
    const { secret } = await enableTotp(pair.access_token);
    const done = await api("POST", "/v1/tokens/mfa", {
      body: { mfa_token: await firstStep(email), code: codeAt(secret, Date.now()) },
    });
    const res = await verifyRpc(done.body.access_token, { mfa: true });
    expect(res).toMatchObject({ ok: true, claims: { amr: ["pwd", "otp", "mfa"] } });
  });
});
