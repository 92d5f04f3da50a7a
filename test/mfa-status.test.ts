// GET /v1/users/me/mfa: which second factors an account has (docs/api.md §12, our extension).
import { describe, expect, it } from "vitest";
import { api, newSession } from "./helpers";
import { codeAt, firstStep } from "./mfa-helpers";
import { SoftPasskey } from "./webauthn-authenticator";

const status = async (token: string) => {
  const res = await api("GET", "/v1/users/me/mfa", { token });
  expect(res.status, res.text).toBe(200);
  return res.body;
};

describe("GET /v1/users/me/mfa", () => {
  it("follows enrolment, confirmation, a spent recovery code and removal", async () => {
    const { email, pair } = await newSession();
    const token = pair.access_token;
    expect(await status(token)).toEqual({ totp: false, recovery_codes_left: 0, passkeys: 0 });

    const started = await api("POST", "/v1/users/me/mfa/totp", { token });
    expect(started.status).toBe(201);
    // Enrolled but not confirmed: the app is not on.
    expect(await status(token)).toEqual({ totp: false, recovery_codes_left: 0, passkeys: 0 });

    const confirmed = await api("PUT", "/v1/users/me/mfa/totp", {
      token,
      body: { code: codeAt(started.body.secret, Date.now()) },
    });
    expect(confirmed.status, confirmed.text).toBe(200);
    expect(await status(token)).toEqual({ totp: true, recovery_codes_left: 10, passkeys: 0 });

    const used = await api("POST", "/v1/tokens/mfa", {
      body: { mfa_token: await firstStep(email), recovery_code: confirmed.body.recovery_codes[0] },
    });
    expect(used.status, used.text).toBe(200);
    expect(await status(token)).toEqual({ totp: true, recovery_codes_left: 9, passkeys: 0 });

    expect((await api("DELETE", "/v1/users/me/mfa/totp", { token })).status).toBe(204);
    expect(await status(token)).toEqual({ totp: false, recovery_codes_left: 0, passkeys: 0 });
  });

  it("needs an access token, and reads only the caller's own account", async () => {
    const anonymous = await api("GET", "/v1/users/me/mfa");
    expect(anonymous.status).toBe(401);
    const a = await newSession();
    const started = await api("POST", "/v1/users/me/mfa/totp", { token: a.pair.access_token });
    await api("PUT", "/v1/users/me/mfa/totp", {
      token: a.pair.access_token,
      body: { code: codeAt(started.body.secret, Date.now()) },
    });
    const b = await newSession();
    expect(await status(b.pair.access_token)).toEqual({ totp: false, recovery_codes_left: 0, passkeys: 0 });
  });

  it("counts the passkeys, and stops counting a removed one", async () => {
    const { pair } = await newSession();
    const token = pair.access_token;
    const key = await SoftPasskey.create();
    const options = await api("POST", "/v1/users/me/passkeys/options", { token });
    const added = await api("POST", "/v1/users/me/passkeys", {
      token,
      body: { response: await key.register(options.body) },
    });
    expect(added.status, added.text).toBe(201);
    expect(await status(token)).toEqual({ totp: false, recovery_codes_left: 0, passkeys: 1 });
    expect((await api("DELETE", `/v1/users/me/passkeys/${added.body.id}`, { token })).status).toBe(204);
    expect((await status(token)).passkeys).toBe(0);
  });
});
