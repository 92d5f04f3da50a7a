import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import {
  accessClaimsFor,
  api,
  claimsOf,
  createRealm,
  deviceId,
  login,
  PASSWORD,
  phoneCode,
  promote,
  signTestToken,
  signUp,
  signUpVerified,
  uniqueEmail,
  waitFor,
  withPrefix,
} from "./helpers";

// Every test runs in this file's own realm, whose first admin is the bootstrap email root@admin.test.
let realm: string;
let prefix: string;
let admin: { id: string; token: string };
const p = (path: string) => withPrefix(prefix, path);

async function session(email = uniqueEmail(), extra: Record<string, unknown> = {}, verified = false) {
  const user = verified ? await signUpVerified(email, extra, prefix) : await signUp(email, extra, prefix);
  const pair = await login(email, { prefix, device_id: deviceId() });
  return { email, user, pair, token: pair.access_token as string };
}

const count = async (sql: string, ...args: unknown[]) =>
  ((
    await env.DB.prepare(sql)
      .bind(...args)
      .first<{ n: number }>()
  )?.n ?? -1) as number;

beforeAll(async () => {
  realm = await createRealm();
  prefix = `/v1/realms/${realm}`;
  const root = await session("root@admin.test", {}, true);
  expect(root.user.roles).toContain("admin");
  admin = { id: root.user.id, token: root.token };
});

describe("GET /v1/users/{id|me}", () => {
  it("gives the full user to oneself and admins, id/name/image to anyone else, 404 for unknown ids", async () => {
    const a = await session();
    const b = await session();

    const me = await api("GET", p("/v1/users/me"), { token: a.token });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({
      id: a.user.id,
      realm,
      email: a.email,
      roles: ["user"],
      status: "active",
      source: "password",
    });
    expect(me.body.emails).toEqual([{ email: a.email, current: true, verified: false, added_at: expect.any(String) }]);
    expect(me.body.email_verified).toBe(false);
    expect(me.text).not.toContain("password_hash");
    expect(me.text).not.toContain("pbkdf2");

    const self = await api("GET", p(`/v1/users/${a.user.id}`), { token: a.token });
    expect(self.status).toBe(200);
    expect(self.body).toEqual(me.body);

    const other = await api("GET", p(`/v1/users/${b.user.id}`), { token: a.token });
    expect(other.status).toBe(200);
    expect(other.body).toEqual({ id: b.user.id, full_name: "Test User", image_url: null });

    const byAdmin = await api("GET", p(`/v1/users/${b.user.id}`), { token: admin.token });
    expect(byAdmin.status).toBe(200);
    expect(byAdmin.body).toMatchObject({ id: b.user.id, email: b.email, roles: ["user"] });

    const unknown = await api("GET", p("/v1/users/0000000000000000000000000000000000"), { token: a.token });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("not_found");

    const anon = await api("GET", p("/v1/users/me"));
    expect(anon.status).toBe(401);
    expect(anon.body.error.code).toBe("missing_token");
  });
});

describe("PATCH /v1/users/{id|me}", () => {
  it("updates one's own name, phone, image and profile", async () => {
    const a = await session();
    const phone = `+1415${Math.floor(1e6 + Math.random() * 8e6)}`;
    const res = await api("PATCH", p("/v1/users/me"), {
      token: a.token,
      body: {
        full_name: "  Ada Lovelace ",
        phone_number: phone,
        phone_otp: await phoneCode(phone, prefix),
        image_url: "https://img.example.com/ada.png",
        profile: { locale: "en", n: 1 },
      },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      id: a.user.id,
      full_name: "Ada Lovelace",
      phone_number: phone,
      image_url: "https://img.example.com/ada.png",
      profile: { locale: "en", n: 1 },
      email: a.email,
    });
    expect(res.body.updated_at >= a.user.updated_at).toBe(true);
    const again = await api("GET", p(`/v1/users/${a.user.id}`), { token: a.token });
    expect(again.body).toEqual(res.body);

    // Fields not sent stay; null removes phone and image; the profile is replaced whole.
    const partial = await api("PATCH", p(`/v1/users/${a.user.id}`), {
      token: a.token,
      body: { phone_number: null, image_url: null, profile: { theme: "dark" } },
    });
    expect(partial.status).toBe(200);
    expect(partial.body).toMatchObject({
      full_name: "Ada Lovelace",
      phone_number: null,
      image_url: null,
      profile: { theme: "dark" },
    });
  });

  it("refuses other users to non-admins (403 even for unknown ids), lets admins edit anyone", async () => {
    const a = await session();
    const b = await session();
    const denied = await api("PATCH", p(`/v1/users/${b.user.id}`), { token: a.token, body: { full_name: "Mallory" } });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe("forbidden");
    const deniedUnknown = await api("PATCH", p("/v1/users/nobody"), { token: a.token, body: { full_name: "x" } });
    expect(deniedUnknown.status).toBe(403);
    expect((await api("GET", p("/v1/users/me"), { token: b.token })).body.full_name).toBe("Test User");

    const byAdmin = await api("PATCH", p(`/v1/users/${b.user.id}`), {
      token: admin.token,
      body: { full_name: "Renamed" },
    });
    expect(byAdmin.status).toBe(200);
    expect(byAdmin.body).toMatchObject({ id: b.user.id, full_name: "Renamed", email: b.email });
    const unknown = await api("PATCH", p("/v1/users/nobody"), { token: admin.token, body: { full_name: "x" } });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("not_found");

    const anon = await api("PATCH", p("/v1/users/me"), { body: { full_name: "x" } });
    expect(anon.status).toBe(401);
  });

  it("keeps phone numbers unique in the realm (409 phone_in_use), and a removed number is free again", async () => {
    const a = await session();
    const b = await session();
    const phone = `+4930${Math.floor(1e7 + Math.random() * 8e7)}`;
    const first = await api("PATCH", p("/v1/users/me"), {
      token: a.token,
      body: { phone_number: phone, phone_otp: await phoneCode(phone, prefix) },
    });
    expect(first.status).toBe(200);
    // v1.1: the proof comes first (a wrong code is 401 whoever holds the number); only someone who
    // holds the number learns that another account has it.
    const guessed = await api("PATCH", p("/v1/users/me"), {
      token: b.token,
      body: { phone_number: phone, phone_otp: "123456" },
    });
    expect(guessed.status).toBe(401);
    // One code per number per minute: step past the resend throttle for b's proofs.
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 61_000);
    const taken = await api("PATCH", p("/v1/users/me"), {
      token: b.token,
      body: { phone_number: phone, phone_otp: await phoneCode(phone, prefix) },
    });
    expect(taken.status).toBe(409);
    expect(taken.body.error.code).toBe("phone_in_use");
    // The same number again on its own holder is no conflict (and needs no new proof).
    expect((await api("PATCH", p("/v1/users/me"), { token: a.token, body: { phone_number: phone } })).status).toBe(200);
    expect((await api("PATCH", p("/v1/users/me"), { token: a.token, body: { phone_number: null } })).status).toBe(200);
    vi.setSystemTime(Date.now() + 61_000);
    const proof = await phoneCode(phone, prefix);
    vi.useRealTimers();
    const now = await api("PATCH", p("/v1/users/me"), {
      token: b.token,
      body: { phone_number: phone, phone_otp: proof },
    });
    expect(now.status).toBe(200);
    expect(now.body.phone_number).toBe(phone);
    const bad = await api("PATCH", p("/v1/users/me"), { token: b.token, body: { phone_number: "0301234567" } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.fields.phone_number).toBeDefined();
  });

  it("adding one's own number needs the OTP sent to it; admins may set others' numbers", async () => {
    const a = await session();
    const phone = `+4420${Math.floor(1e7 + Math.random() * 8e7)}`;
    const bare = await api("PATCH", p("/v1/users/me"), { token: a.token, body: { phone_number: phone } });
    expect(bare.status).toBe(400);
    expect(bare.body.error.fields.phone_otp).toBeDefined();
    const code = await phoneCode(phone, prefix);
    const wrongCode = code === "000000" ? "111111" : "000000";
    const wrong = await api("PATCH", p("/v1/users/me"), {
      token: a.token,
      body: { phone_number: phone, phone_otp: wrongCode },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe("invalid_otp");
    const ok = await api("PATCH", p("/v1/users/me"), {
      token: a.token,
      body: { phone_number: phone, phone_otp: code },
    });
    expect(ok.status).toBe(200);
    expect(ok.body.phone_number).toBe(phone);
    // The code is used up: it cannot prove the number again.
    const b = await session();
    const reuse = await api("PATCH", p("/v1/users/me"), {
      token: b.token,
      body: { phone_number: `${phone.slice(0, -1)}${(Number(phone.slice(-1)) + 1) % 10}`, phone_otp: code },
    });
    expect(reuse.status).toBe(401);

    const c = await session();
    const other = `+4420${Math.floor(1e7 + Math.random() * 8e7)}`;
    const byAdmin = await api("PATCH", p(`/v1/users/${c.user.id}`), {
      token: admin.token,
      body: { phone_number: other },
    });
    expect(byAdmin.status).toBe(200);
    expect(byAdmin.body.phone_number).toBe(other);
  });

  it("accepts only https image URLs", async () => {
    const a = await session();
    for (const image_url of [
      "http://img.example.com/a.png",
      "javascript:alert(1)",
      "data:image/png;base64,AAAA",
      "ftp://x.org/a",
      "not a url",
      "",
    ]) {
      const res = await api("PATCH", p("/v1/users/me"), { token: a.token, body: { image_url } });
      expect(res.status, image_url).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
      expect(res.body.error.fields.image_url).toBeDefined();
    }
    expect((await api("GET", p("/v1/users/me"), { token: a.token })).body.image_url).toBeNull();
  });

  it("limits the profile to a JSON object of at most 4 KiB", async () => {
    const a = await session();
    const big = { blob: "x".repeat(4096) };
    const tooBig = await api("PATCH", p("/v1/users/me"), { token: a.token, body: { profile: big } });
    expect(tooBig.status).toBe(400);
    expect(tooBig.body.error.fields.profile).toMatch(/4 KiB/);
    // Exactly 4096 bytes of JSON is allowed: {"blob":"…"} is 11 bytes of framing.
    const atLimit = { blob: "y".repeat(4096 - 11) };
    expect(new TextEncoder().encode(JSON.stringify(atLimit)).byteLength).toBe(4096);
    expect((await api("PATCH", p("/v1/users/me"), { token: a.token, body: { profile: atLimit } })).status).toBe(200);
    // Multi-byte characters count as bytes, not characters.
    const wide = await api("PATCH", p("/v1/users/me"), { token: a.token, body: { profile: { s: "é".repeat(2100) } } });
    expect(wide.status).toBe(400);
    for (const profile of [[1, 2], "text", 5, null]) {
      const res = await api("PATCH", p("/v1/users/me"), { token: a.token, body: { profile } });
      expect(res.status, JSON.stringify(profile)).toBe(400);
    }
    expect((await api("GET", p("/v1/users/me"), { token: a.token })).body.profile).toEqual(atLimit);
  });

  it("refuses email and password with 400 naming the route that changes them, and unknown fields", async () => {
    const a = await session();
    const email = await api("PATCH", p("/v1/users/me"), {
      token: a.token,
      body: { email: uniqueEmail(), full_name: "x" },
    });
    expect(email.status).toBe(400);
    expect(email.body.error.code).toBe("validation_failed");
    expect(email.body.error.message).toContain("PUT /v1/users/me/email");
    expect(email.body.error.fields.email).toContain("PUT /v1/users/me/email");

    const password = await api("PATCH", p("/v1/users/me"), { token: a.token, body: { password: "new password 123" } });
    expect(password.status).toBe(400);
    expect(password.body.error.message).toContain("PUT /v1/users/me/password");
    expect(password.body.error.fields.password).toContain("PUT /v1/users/me/password");

    // No privilege escalation through extra fields.
    const roles = await api("PATCH", p("/v1/users/me"), {
      token: a.token,
      body: { roles: ["admin"], status: "active" },
    });
    expect(roles.status).toBe(400);
    const me = await api("GET", p("/v1/users/me"), { token: a.token });
    expect(me.body.roles).toEqual(["user"]);
    expect(me.body.full_name).toBe("Test User");
    expect(me.body.email).toBe(a.email);
  });
});

describe("PUT /v1/users/me/email", () => {
  it("appends the new email, makes it current, and an old one becomes current again without a duplicate", async () => {
    const a = await session();
    const next = uniqueEmail("example.org");
    const res = await api("PUT", p("/v1/users/me/email"), {
      token: a.token,
      body: { email: ` ${next.toUpperCase()} `, current_password: PASSWORD },
    });
    expect(res.status).toBe(200);
    expect(res.body.email).toBe(next);
    expect(res.body.emails).toEqual([
      { email: a.email, current: false, verified: false, added_at: expect.any(String) },
      { email: next, current: true, verified: false, added_at: expect.any(String) },
    ]);
    // Login follows the current email only.
    await expect(login(a.email, { prefix })).rejects.toThrow(/401/);
    await login(next, { prefix });

    const back = await api("PUT", p("/v1/users/me/email"), {
      token: a.token,
      body: { email: a.email, current_password: PASSWORD },
    });
    expect(back.status).toBe(200);
    expect(back.body.email).toBe(a.email);
    expect(back.body.emails).toHaveLength(2);
    expect(back.body.emails.filter((e: { current: boolean }) => e.current)).toEqual([
      { email: a.email, current: true, verified: false, added_at: res.body.emails[0].added_at },
    ]);
    expect(await count("SELECT count(*) AS n FROM user_emails WHERE user_id = ?", a.user.id)).toBe(2);

    // The same email again changes nothing.
    const same = await api("PUT", p("/v1/users/me/email"), {
      token: a.token,
      body: { email: a.email, current_password: PASSWORD },
    });
    expect(same.status).toBe(200);
    expect(same.body.emails).toHaveLength(2);
  });

  it("refuses another user's current email (409), but a released old email may be taken", async () => {
    const a = await session();
    const b = await session();
    const taken = await api("PUT", p("/v1/users/me/email"), {
      token: a.token,
      body: { email: b.email, current_password: PASSWORD },
    });
    expect(taken.status).toBe(409);
    expect(taken.body.error.code).toBe("email_in_use");
    expect((await api("GET", p("/v1/users/me"), { token: a.token })).body.email).toBe(a.email);

    // b moves on; b's old address is nobody's current email any more.
    expect(
      (
        await api("PUT", p("/v1/users/me/email"), {
          token: b.token,
          body: { email: uniqueEmail(), current_password: PASSWORD },
        })
      ).status,
    ).toBe(200);
    const free = await api("PUT", p("/v1/users/me/email"), {
      token: a.token,
      body: { email: b.email, current_password: PASSWORD },
    });
    expect(free.status).toBe(200);
    // ...and now b cannot take it back.
    const back = await api("PUT", p("/v1/users/me/email"), {
      token: b.token,
      body: { email: b.email, current_password: PASSWORD },
    });
    expect(back.status).toBe(409);
    expect(back.body.error.code).toBe("email_in_use");
  });

  it("lets exactly one of two concurrent claims of the same email win", async () => {
    const a = await session();
    const b = await session();
    const target = uniqueEmail();
    const results = await Promise.all(
      [a, b].map((s) =>
        api("PUT", p("/v1/users/me/email"), { token: s.token, body: { email: target, current_password: PASSWORD } }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 409]);
    expect(results.find((r) => r.status === 409)?.body.error.code).toBe("email_in_use");
    expect(await count("SELECT count(*) AS n FROM users WHERE realm = ? AND email = ?", realm, target)).toBe(1);
  });

  it("needs the current password: wrong is 401 invalid_credentials, missing is 400", async () => {
    const a = await session();
    const next = uniqueEmail();
    const wrong = await api("PUT", p("/v1/users/me/email"), {
      token: a.token,
      body: { email: next, current_password: "not the password" },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe("invalid_credentials");
    const missing = await api("PUT", p("/v1/users/me/email"), { token: a.token, body: { email: next } });
    expect(missing.status).toBe(400);
    expect(missing.body.error.fields.current_password).toBeDefined();
    const bad = await api("PUT", p("/v1/users/me/email"), {
      token: a.token,
      body: { email: "not-an-email", current_password: PASSWORD },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.fields.email).toBeDefined();
    expect((await api("GET", p("/v1/users/me"), { token: a.token })).body.email).toBe(a.email);
  });

  it("applies block rules (403 domain_not_allowed) but not the closed registration mode", async () => {
    // v1.1: an allowlist realm keeps its members inside the allowed domains (tested in
    // identities.test.ts); a closed realm's mode is about sign-up only.
    const strict = await createRealm();
    const sp = `/v1/realms/${strict}`;
    const now = new Date().toISOString();
    await env.DB.prepare(
      "INSERT INTO domain_rules (realm, domain, rule, created_at) VALUES (?, 'evil.test', 'block', ?)",
    )
      .bind(strict, now)
      .run();
    const email = uniqueEmail("example.com");
    await signUp(email, {}, sp);
    await env.DB.prepare("UPDATE realms SET registration = 'closed' WHERE id = ?").bind(strict).run();
    const { access_token: token } = await login(email, { prefix: sp });

    const blocked = await api("PUT", `${sp}/users/me/email`, {
      token,
      body: { email: uniqueEmail("mail.evil.test"), current_password: PASSWORD },
    });
    expect(blocked.status).toBe(403);
    expect(blocked.body.error.code).toBe("domain_not_allowed");
    // Sign-up is closed, an email change is not.
    const elsewhere = await api("PUT", `${sp}/users/me/email`, {
      token,
      body: { email: uniqueEmail("other.org"), current_password: PASSWORD },
    });
    expect(elsewhere.status).toBe(200);
  });

  it("puts the new email in the access token on the next refresh", async () => {
    const a = await session();
    const next = uniqueEmail();
    expect(claimsOf(a.token).email).toBe(a.email);
    expect(
      (await api("PUT", p("/v1/users/me/email"), { token: a.token, body: { email: next, current_password: PASSWORD } }))
        .status,
    ).toBe(200);
    const refreshed = await api("POST", p("/v1/tokens/refresh"), { body: { refresh_token: a.pair.refresh_token } });
    expect(refreshed.status).toBe(200);
    expect(claimsOf(refreshed.body.access_token).email).toBe(next);
    expect(refreshed.body.user.email).toBe(next);
  });
});

describe("PUT /v1/users/me/password", () => {
  it("changes the password and logs out every other device, not this one", async () => {
    const a = await session();
    const other = await login(a.email, { prefix, device_id: deviceId("other") });
    const res = await api("PUT", p("/v1/users/me/password"), {
      token: a.token,
      body: {
        password: "a brand new password",
        password_confirmation: "a brand new password",
        current_password: PASSWORD,
      },
    });
    expect(res.status).toBe(204);

    // This device goes on: its access token and its refresh token still work.
    expect((await api("GET", p("/v1/users/me"), { token: a.token })).status).toBe(200);
    expect((await api("POST", p("/v1/tokens/refresh"), { body: { refresh_token: a.pair.refresh_token } })).status).toBe(
      200,
    );
    // The other device is logged out at once.
    const otherAccess = await api("GET", p("/v1/users/me"), { token: other.access_token });
    expect(otherAccess.status).toBe(401);
    expect(otherAccess.body.error.code).toBe("token_revoked");
    const otherRefresh = await api("POST", p("/v1/tokens/refresh"), { body: { refresh_token: other.refresh_token } });
    expect(otherRefresh.status).toBe(401);
    expect(otherRefresh.body.error.code).toBe("session_revoked");

    await expect(login(a.email, { prefix })).rejects.toThrow(/401/);
    await login(a.email, { prefix, password: "a brand new password" });
  });

  it("refuses a wrong or missing current password and a mismatched or short new one", async () => {
    const a = await session();
    const body = { password: "another password", password_confirmation: "another password" };
    const wrong = await api("PUT", p("/v1/users/me/password"), {
      token: a.token,
      body: { ...body, current_password: "wrong password" },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe("invalid_credentials");
    const missing = await api("PUT", p("/v1/users/me/password"), { token: a.token, body });
    expect(missing.status).toBe(400);
    const mismatch = await api("PUT", p("/v1/users/me/password"), {
      token: a.token,
      body: { password: "another password", password_confirmation: "another passwort", current_password: PASSWORD },
    });
    expect(mismatch.status).toBe(400);
    expect(mismatch.body.error.fields.password_confirmation).toBeDefined();
    const short = await api("PUT", p("/v1/users/me/password"), {
      token: a.token,
      body: { password: "short", password_confirmation: "short", current_password: PASSWORD },
    });
    expect(short.status).toBe(400);
    expect(short.body.error.fields.password).toBeDefined();
    await login(a.email, { prefix });
  });
});

describe("accounts without a password (phone users)", () => {
  async function phoneUser() {
    const id = `0000${crypto.randomUUID().replace(/-/g, "")}`;
    const now = new Date().toISOString();
    const phone = `+4915${Math.floor(1e8 + Math.random() * 8e8)}`;
    await env.DB.prepare(
      "INSERT INTO users (id, realm, email, phone_number, password_hash, full_name, roles, status, source, profile, created_at, updated_at) VALUES (?, ?, NULL, ?, NULL, 'Phone User', '[\"user\"]', 'active', 'phone', '{}', ?, ?)",
    )
      .bind(id, realm, phone, now, now)
      .run();
    const user = { id, realm, email: null, roles: ["user"], full_name: "Phone User" };
    return {
      id,
      fresh: await signTestToken(accessClaimsFor(user, { fresh: true })),
      stale: await signTestToken(accessClaimsFor(user, { fresh: false })),
    };
  }

  it("sets a first email and password without current_password, but only with a fresh token", async () => {
    const u = await phoneUser();
    const email = uniqueEmail();
    const staleEmail = await api("PUT", p("/v1/users/me/email"), { token: u.stale, body: { email } });
    expect(staleEmail.status).toBe(401);
    expect(staleEmail.body.error.code).toBe("fresh_token_required");
    const setEmail = await api("PUT", p("/v1/users/me/email"), { token: u.fresh, body: { email } });
    expect(setEmail.status).toBe(200);
    expect(setEmail.body).toMatchObject({ id: u.id, email, source: "phone" });
    expect(setEmail.body.emails).toEqual([{ email, current: true, verified: false, added_at: expect.any(String) }]);

    const body = { password: "my first password", password_confirmation: "my first password" };
    const stalePw = await api("PUT", p("/v1/users/me/password"), { token: u.stale, body });
    expect(stalePw.status).toBe(401);
    expect(stalePw.body.error.code).toBe("fresh_token_required");
    expect((await api("PUT", p("/v1/users/me/password"), { token: u.fresh, body })).status).toBe(204);
    await login(email, { prefix, password: "my first password" });

    // From now on the password is needed.
    const again = await api("PUT", p("/v1/users/me/password"), { token: u.fresh, body });
    expect(again.status).toBe(400);
    expect(again.body.error.fields.current_password).toBeDefined();
  });
});

describe("DELETE /v1/users/{id|me}", () => {
  it("deletes oneself with a fresh token; the email may register again; old tokens stop working", async () => {
    const a = await session();
    const second = await login(a.email, { prefix, device_id: deviceId("second") });
    const refreshed = await api("POST", p("/v1/tokens/refresh"), { body: { refresh_token: second.refresh_token } });
    expect(refreshed.status).toBe(200);
    expect(claimsOf(refreshed.body.access_token).fresh).toBe(false);

    const notFresh = await api("DELETE", p("/v1/users/me"), { token: refreshed.body.access_token });
    expect(notFresh.status).toBe(401);
    expect(notFresh.body.error.code).toBe("fresh_token_required");

    await env.DB.prepare(
      "INSERT INTO verification_codes (realm, purpose, subject, code_hash, attempts, expires_at, sent_at, day) VALUES (?, 'reset', ?, 'x', 0, '2999-01-01T00:00:00.000Z', ?, '2000-01-01')",
    )
      .bind(realm, a.user.id, new Date().toISOString())
      .run();

    const del = await api("DELETE", p("/v1/users/me"), { token: a.token });
    expect(del.status).toBe(204);

    expect(await count("SELECT count(*) AS n FROM users WHERE id = ?", a.user.id)).toBe(0);
    expect(await count("SELECT count(*) AS n FROM user_emails WHERE user_id = ?", a.user.id)).toBe(0);
    expect(await count("SELECT count(*) AS n FROM devices WHERE user_id = ?", a.user.id)).toBe(0);
    expect(await count("SELECT count(*) AS n FROM verification_codes WHERE subject = ?", a.user.id)).toBe(0);

    // Refresh tokens of every device: session_revoked.
    for (const rt of [a.pair.refresh_token, refreshed.body.refresh_token]) {
      const r = await api("POST", p("/v1/tokens/refresh"), { body: { refresh_token: rt } });
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe("session_revoked");
    }
    // Access tokens: the ending sessions blacklist them (401 token_revoked)...
    const old = await api("GET", p("/v1/users/me"), { token: a.token });
    expect([401, 403]).toContain(old.status);
    expect(["token_revoked", "user_not_found"]).toContain(old.body.error.code);
    // ...and where the blacklist has not arrived yet (KV is eventually consistent), the missing user answers 403.
    await env.TOKENS.delete(`bl:${claimsOf(a.token).jti}`);
    const unlisted = await api("GET", p("/v1/users/me"), { token: a.token });
    expect(unlisted.status).toBe(403);
    expect(unlisted.body.error.code).toBe("user_not_found");

    const again = await signUp(a.email, {}, prefix);
    expect(again.id).not.toBe(a.user.id);
    expect(again.emails).toHaveLength(1);
  });

  it("lets admins delete anyone in their realm, nobody else delete others", async () => {
    const a = await session();
    const b = await session();
    const denied = await api("DELETE", p(`/v1/users/${b.user.id}`), { token: a.token });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe("forbidden");

    // An admin of another realm cannot reach this realm's users (its token is for its realm).
    const foreign = await api("DELETE", `/v1/users/${b.user.id}`, { token: admin.token });
    expect(foreign.status).toBe(401);

    const del = await api("DELETE", p(`/v1/users/${b.user.id}`), { token: admin.token });
    expect(del.status).toBe(204);
    expect(
      (await api("POST", p("/v1/tokens/refresh"), { body: { refresh_token: b.pair.refresh_token } })).body.error.code,
    ).toBe("session_revoked");
    const gone = await api("DELETE", p(`/v1/users/${b.user.id}`), { token: admin.token });
    expect(gone.status).toBe(404);
    expect((await api("GET", p(`/v1/users/${b.user.id}`), { token: admin.token })).status).toBe(404);
  });

  it("keeps the realm's last admin (409 last_admin)", async () => {
    const own = await createRealm();
    const op = `/v1/realms/${own}`;
    await signUpVerified("root@admin.test", {}, op);
    const root = await login("root@admin.test", { prefix: op });
    const last = await api("DELETE", `${op}/users/me`, { token: root.access_token });
    expect(last.status).toBe(409);
    expect(last.body.error.code).toBe("last_admin");
    expect((await api("GET", `${op}/users/me`, { token: root.access_token })).status).toBe(200);

    const other = await signUp(uniqueEmail(), {}, op);
    await promote(op, root.access_token, other.id);
    const second = await login(other.email, { prefix: op });
    expect((await api("DELETE", `${op}/users/me`, { token: root.access_token })).status).toBe(204);
    const alone = await api("DELETE", `${op}/users/me`, { token: second.access_token });
    expect(alone.status).toBe(409);
  });
});

describe("routing and documentation", () => {
  it("documents the account routes in /openapi.json and answers 405 for other methods", async () => {
    const doc = await api("GET", "/openapi.json");
    expect(doc.status).toBe(200);
    const paths = doc.body.paths;
    expect(Object.keys(paths["/v1/users/{id}"])).toEqual(expect.arrayContaining(["get", "patch", "delete"]));
    expect(Object.keys(paths["/v1/users/me/email"])).toEqual(["put"]);
    expect(Object.keys(paths["/v1/users/me/password"])).toEqual(["put"]);
    expect(Object.keys(paths["/v1/users/reset"]).sort()).toEqual(["post", "put"]);
    expect(Object.keys(paths["/v1/users/verification"]).sort()).toEqual(["post", "put"]);
    expect(Object.keys(paths["/v1/users/me/email/verify"])).toEqual(["put"]);
    expect(Object.keys(paths["/v1/users/me/email"].put.responses)).toEqual(expect.arrayContaining(["200", "202"]));
    expect(doc.body.components.schemas.User.required).toEqual(expect.arrayContaining(["email_verified"]));
    expect(paths["/v1/users/{id}"].patch.security).toEqual([{ bearer: [] }]);

    const wrong = await api("GET", p("/v1/users/me/email"), { token: admin.token });
    expect(wrong.status).toBe(405);
    expect(wrong.body.error.code).toBe("method_not_allowed");
    expect(wrong.headers.get("Allow")).toBe("PUT");
  });
});

describe("audit trail", () => {
  it("records email and password changes, updates and deletion with realm, user, device and IP, and no secret", async () => {
    const a = await session();
    const ip = "203.0.113.177";
    const headers = { "CF-Connecting-IP": ip };
    const newPassword = "audit trail password";
    await api("PATCH", p("/v1/users/me"), { token: a.token, headers, body: { full_name: "Audited" } });
    await api("PUT", p("/v1/users/me/email"), {
      token: a.token,
      headers,
      body: { email: uniqueEmail(), current_password: PASSWORD },
    });
    await api("PUT", p("/v1/users/me/password"), {
      token: a.token,
      headers,
      body: { password: newPassword, password_confirmation: newPassword, current_password: PASSWORD },
    });
    expect((await api("DELETE", p("/v1/users/me"), { token: a.token, headers })).status).toBe(204);

    const want = ["user_updated", "email_changed", "password_changed", "user_deleted"];
    const rows = await waitFor(async () => {
      const { results } = await env.DB.prepare("SELECT * FROM audit_events WHERE user_id = ? ORDER BY id")
        .bind(a.user.id)
        .all();
      return want.every((t) => results.some((r) => r.type === t)) && results;
    });
    const did = claimsOf(a.token).did;
    for (const type of want) {
      const row = rows.find((r) => r.type === type) as Record<string, unknown>;
      expect(row).toMatchObject({ realm, user_id: a.user.id, device_id: did, ip });
      expect(Number.isNaN(Date.parse(row.at as string))).toBe(false);
    }
    const all = JSON.stringify(rows);
    for (const secret of [PASSWORD, newPassword, a.token, a.pair.refresh_token, "pbkdf2"])
      expect(all).not.toContain(secret);
  });
});
