import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { hashPassword, PBKDF2_ITERATIONS, verifyPassword } from "../src/crypto/passwords";
import {
  api,
  b64u,
  claimsOf,
  createRealm,
  deviceId,
  frozenClock,
  login,
  PASSWORD,
  phoneCode,
  signUp,
  signUpVerified,
  uniqueEmail,
} from "./helpers";

afterEach(() => {
  vi.useRealTimers();
});

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

async function storedHash(userId: string): Promise<string> {
  const row = await env.DB.prepare("SELECT password_hash FROM users WHERE id = ?")
    .bind(userId)
    .first<{ password_hash: string }>();
  if (!row) throw new Error("no such user row");
  return row.password_hash;
}

/** A hash in the stored format with chosen parameters, made the way the worker makes its own. */
async function legacyHash(password: string, iterations: number): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations }, key, 256);
  return ["pbkdf2-sha256", iterations, b64u(salt), b64u(new Uint8Array(bits)), "p0"].join("$");
}

describe("sign-up", () => {
  it("returns 201 and the User of docs/api.md §4", async () => {
    const email = uniqueEmail();
    const res = await api("POST", "/v1/users", {
      body: {
        email,
        password: PASSWORD,
        password_confirmation: PASSWORD,
        full_name: "  Ada Lovelace  ",
        profile: { locale: "en" },
      },
    });
    expect(res.status).toBe(201);
    const u = res.body;
    expect(Object.keys(u).sort()).toEqual(
      [
        "created_at",
        "email",
        "email_verified",
        "emails",
        "full_name",
        "id",
        "image_url",
        "phone_number",
        "profile",
        "realm",
        "roles",
        "source",
        "status",
        "updated_at",
      ].sort(),
    );
    expect(u).toMatchObject({
      realm: "default",
      email,
      phone_number: null,
      full_name: "Ada Lovelace",
      image_url: null,
      roles: ["user"],
      status: "active",
      source: "password",
      profile: { locale: "en" },
    });
    expect(typeof u.id).toBe("string");
    expect(u.id.length).toBeGreaterThanOrEqual(16);
    expect(u.created_at).toMatch(ISO);
    expect(u.updated_at).toBe(u.created_at);
    expect(u.emails).toEqual([{ email, current: true, verified: false, added_at: u.created_at }]);
    expect(u.email_verified).toBe(false);
  });

  it("stores the phone number in E.164", async () => {
    const phone = `+1415${String(Math.floor(Math.random() * 1e7)).padStart(7, "0")}`;
    const user = await signUp(uniqueEmail(), { phone_number: ` ${phone} `, phone_otp: await phoneCode(phone) });
    expect(user.phone_number).toBe(phone);
  });

  it("normalises emails: trimmed and lower-cased, and login with any case finds the user", async () => {
    const email = uniqueEmail();
    const messy = `  ${email.toUpperCase()}  `;
    const user = await signUp(messy);
    expect(user.email).toBe(email);
    expect(user.emails[0].email).toBe(email);
    const row = await env.DB.prepare("SELECT email FROM users WHERE id = ?").bind(user.id).first<{ email: string }>();
    expect(row?.email).toBe(email);

    const pair = await login(` ${email.replace(/^u/, "U")}`);
    expect(pair.user.id).toBe(user.id);

    const dup = await api("POST", "/v1/users", {
      body: { email: email.toUpperCase(), password: PASSWORD, full_name: "X" },
    });
    expect(dup.status).toBe(409);
    expect(dup.body.error.code).toBe("user_exists");
  });

  it("never lets the password hash out: sign-up, login, /me", async () => {
    const email = uniqueEmail();
    const signup = await api("POST", "/v1/users", { body: { email, password: PASSWORD, full_name: "Hash Hidden" } });
    expect(signup.status).toBe(201);
    const hash = await storedHash(signup.body.id);
    expect(hash).toMatch(/^pbkdf2-sha256\$/);
    const [, , salt, digest] = hash.split("$") as string[];

    const loginRes = await api("POST", "/v1/tokens", { body: { email, password: PASSWORD } });
    expect(loginRes.status).toBe(200);
    const me = await api("GET", "/v1/users/me", { token: loginRes.body.access_token });
    expect(me.status).toBe(200);
    const byId = await api("GET", `/v1/users/${signup.body.id}`, { token: loginRes.body.access_token });
    expect(byId.status).toBe(200);

    for (const res of [signup, loginRes, me, byId]) {
      expect(res.text).not.toContain("pbkdf2");
      expect(res.text).not.toContain(hash);
      expect(res.text).not.toContain(salt);
      expect(res.text).not.toContain(digest);
      expect(res.text).not.toMatch(/password_?hash/i);
      expect(res.text).not.toContain(PASSWORD);
    }
    // Nor in the token.
    expect(JSON.stringify(claimsOf(loginRes.body.access_token))).not.toContain("pbkdf2");
  });

  it("a second sign-up with the same email is 409 user_exists", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const res = await api("POST", "/v1/users", { body: { email, password: "another password", full_name: "Twin" } });
    expect(res.status).toBe(409);
    expect(res.body).toEqual({ error: { code: "user_exists", message: "User already exists. Please log in" } });
  });

  it("ten concurrent sign-ups with one email make exactly one user", async () => {
    const email = uniqueEmail();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        api("POST", "/v1/users", { body: { email, password: PASSWORD, full_name: `Racer ${i}` } }),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    for (const r of results.filter((r) => r.status === 409)) expect(r.body.error.code).toBe("user_exists");

    const users = await env.DB.prepare("SELECT id FROM users WHERE realm = 'default' AND email = ?").bind(email).all();
    expect(users.results).toHaveLength(1);
    const created = results.find((r) => r.status === 201)!.body;
    expect(users.results[0]).toEqual({ id: created.id });
    const emails = await env.DB.prepare("SELECT user_id FROM user_emails WHERE email = ?").bind(email).all();
    expect(emails.results).toEqual([{ user_id: created.id }]);
  });

  it("a phone number already in use is 409 phone_in_use, and no user is made", async () => {
    const phone = `+1415${String(Math.floor(Math.random() * 1e7)).padStart(7, "0")}`;
    const clock = frozenClock();
    await signUp(uniqueEmail(), { phone_number: phone, phone_otp: await phoneCode(phone) });
    const email = uniqueEmail();
    // v1.1: only someone holding the number (a valid code) learns that it is taken.
    clock.advance(61_000);
    const res = await api("POST", "/v1/users", {
      body: { email, password: PASSWORD, full_name: "P", phone_number: phone, phone_otp: await phoneCode(phone) },
    });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("phone_in_use");
    const row = await env.DB.prepare("SELECT id FROM users WHERE email = ?").bind(email).first();
    expect(row).toBeNull();
  });

  it("BOOTSTRAP_ADMIN_EMAILS become admins (in any realm) once verified, while the realm has none; others do not", async () => {
    // v1.1: signing up as a listed address grants nothing until the address is proven
    // (identities.test.ts has the attacks on the seat).
    const realm = await createRealm();
    const prefix = `/v1/realms/${realm}`;
    const admin = await signUpVerified("  Root@Admin.test ", {}, prefix);
    expect(admin.email).toBe("root@admin.test");
    expect(admin.realm).toBe(realm);
    expect([...admin.roles].sort()).toEqual(["admin", "user"]);
    const pair = await login("root@admin.test", { prefix });
    expect([...claimsOf(pair.access_token).roles].sort()).toEqual(["admin", "user"]);

    // The seat is taken: the second listed address is an ordinary user, proven or not.
    const second = await signUpVerified("second-root@admin.test", {}, prefix);
    expect(second.roles).toEqual(["user"]);

    const plain = await signUpVerified(`someone-${Date.now()}@admin.test`, {}, prefix);
    expect(plain.roles).toEqual(["user"]);
    // A sign-up cannot ask for roles.
    const sneaky = await signUp(uniqueEmail(), { roles: ["admin"] }, prefix);
    expect(sneaky.roles).toEqual(["user"]);
  });

  it("sign-up with a public token is still a plain sign-up", async () => {
    const pub = await api("POST", "/v1/tokens/public", { body: {} });
    const res = await api("POST", "/v1/users", {
      token: pub.body.token,
      body: { email: uniqueEmail(), password: PASSWORD, full_name: "With Device" },
    });
    expect(res.status).toBe(201);
    expect(res.body.source).toBe("password");
  });
});

describe("login", () => {
  it("returns a TokenPair", async () => {
    const email = uniqueEmail();
    const user = await signUp(email);
    const res = await api("POST", "/v1/tokens", { body: { email, password: PASSWORD, description: "Pixel 9" } });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(
      ["access_token", "device_id", "expires_in", "refresh_expires_in", "refresh_token", "token_type", "user"].sort(),
    );
    expect(res.body.user).toEqual(user);
    expect(res.body.refresh_expires_in).toBe(30 * 24 * 3600);
    expect(res.body.refresh_token).not.toContain(".ey"); // opaque, not a JWT
  });

  it("wrong password and unknown email are the same 401 invalid_credentials", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const wrong = await api("POST", "/v1/tokens", { body: { email, password: "not the password" } });
    const unknown = await api("POST", "/v1/tokens", { body: { email: uniqueEmail(), password: PASSWORD } });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.body).toEqual({ error: { code: "invalid_credentials", message: expect.any(String) } });
    expect(unknown.body).toEqual(wrong.body);
    // No token was presented, so no token error; and the headers tell the two cases apart no more than the body.
    expect(wrong.headers.get("WWW-Authenticate") ?? "").not.toContain("invalid_token");
    expect(unknown.headers.get("WWW-Authenticate")).toBe(wrong.headers.get("WWW-Authenticate"));
  });

  it("an unknown email costs about the time of a wrong password (a dummy hash)", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const timed = async (body: Record<string, unknown>) => {
      const t = performance.now();
      const res = await api("POST", "/v1/tokens", { body });
      expect(res.status).toBe(401);
      return performance.now() - t;
    };
    const wrong: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 5; i++) {
      wrong.push(await timed({ email, password: "not the password" }));
      unknown.push(await timed({ email: uniqueEmail(), password: "not the password" }));
    }
    // The fastest of each is the least disturbed by load; without a dummy hash the unknown one is ~4x faster.
    expect(Math.min(...unknown)).toBeGreaterThan(Math.min(...wrong) * 0.5);
  });

  it("a public token's device id is used", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const publicDevice = deviceId("pub");
    const pub = await api("POST", "/v1/tokens/public", { body: { device_id: publicDevice } });
    expect(pub.status).toBe(201);
    expect(pub.body.device_id).toBe(publicDevice);

    const res = await api("POST", "/v1/tokens", {
      token: pub.body.token,
      body: { email, password: PASSWORD, device_id: deviceId("body") },
    });
    expect(res.status).toBe(200);
    expect(res.body.device_id).toBe(publicDevice);
    expect(claimsOf(res.body.access_token).did).toBe(publicDevice);
  });

  it("a bad token in Authorization on login is refused, not ignored", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const res = await api("POST", "/v1/tokens", { token: "garbage.token.here", body: { email, password: PASSWORD } });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("invalid_token");
  });

  it("a well-formed device_id is kept", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const id = deviceId("keep");
    const pair = await login(email, { device_id: id });
    expect(pair.device_id).toBe(id);
    expect(claimsOf(pair.access_token).did).toBe(id);
  });

  it.each(["short", "x".repeat(33), `${"a".repeat(31)}!`, `${"a".repeat(31)}é`, "", " ".repeat(32)])(
    "a malformed device_id (%j) is replaced by a generated one",
    async (bad) => {
      const email = uniqueEmail();
      await signUp(email);
      const pair = await login(email, { device_id: bad });
      expect(pair.device_id).toMatch(/^[A-Za-z0-9]{32}$/);
      expect(pair.device_id).not.toBe(bad);
      expect(claimsOf(pair.access_token).did).toBe(pair.device_id);
    },
  );

  it("no device_id gets a generated one, different per login", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const a = await login(email);
    const b = await login(email);
    expect(a.device_id).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(b.device_id).toMatch(/^[A-Za-z0-9]{32}$/);
    expect(a.device_id).not.toBe(b.device_id);
  });

  it("a malformed device_id for a public token is replaced as well", async () => {
    const res = await api("POST", "/v1/tokens/public", { body: { device_id: "../../etc" } });
    expect(res.status).toBe(201);
    expect(res.body.device_id).toMatch(/^[A-Za-z0-9]{32}$/);
  });
});

describe("password hashing", () => {
  it("pins PBKDF2 at 100,000 iterations (production refuses more)", async () => {
    expect(PBKDF2_ITERATIONS).toBe(100_000);
    const hash = await hashPassword("pinned password");
    expect(hash.split("$")).toEqual(["pbkdf2-sha256", "100000", expect.any(String), expect.any(String), "p0"]);

    const user = await signUp(uniqueEmail());
    expect((await storedHash(user.id)).split("$")[1]).toBe("100000");
  });

  it("hashes are salted and verify only the right password", async () => {
    const a = await hashPassword("same password");
    const b = await hashPassword("same password");
    expect(a).not.toBe(b);
    expect(await verifyPassword("same password", a)).toEqual({ ok: true, needsRehash: false });
    expect(await verifyPassword("same passworD", a)).toEqual({ ok: false, needsRehash: false });
    expect(await verifyPassword("", a)).toEqual({ ok: false, needsRehash: false });
  });

  it("a hash with fewer iterations verifies and asks for a rehash", async () => {
    const old = await legacyHash("old password", 1000);
    expect(await verifyPassword("old password", old)).toEqual({ ok: true, needsRehash: true });
    expect(await verifyPassword("wrong password", old)).toEqual({ ok: false, needsRehash: false });
  });

  it("a hash claiming more than the ceiling, or malformed, never matches", async () => {
    const good = await hashPassword("some password");
    const [, , salt, digest, pep] = good.split("$");
    expect(await verifyPassword("some password", ["pbkdf2-sha256", "200000", salt, digest, pep].join("$"))).toEqual({
      ok: false,
      needsRehash: false,
    });
    for (const bad of ["", "plain", good.replace("pbkdf2-sha256", "pbkdf2-sha1"), good.slice(0, -3), `${good}$x`]) {
      expect((await verifyPassword("some password", bad)).ok).toBe(false);
    }
  });

  it("pepper: on, off, wrong, and migration to a pepper", async () => {
    const pepper = "a-pepper-of-at-least-16-chars";
    const peppered = await hashPassword("pepper pass", pepper);
    expect(peppered.endsWith("$p1")).toBe(true);
    expect(await verifyPassword("pepper pass", peppered, pepper)).toEqual({ ok: true, needsRehash: false });
    // Without the pepper, or with another, the hash is useless.
    expect(await verifyPassword("pepper pass", peppered)).toEqual({ ok: false, needsRehash: false });
    expect(await verifyPassword("pepper pass", peppered, `${pepper}x`)).toEqual({ ok: false, needsRehash: false });

    // A hash made before a pepper was configured still verifies, and asks to be re-made with it.
    const plain = await hashPassword("pepper pass");
    expect(plain.endsWith("$p0")).toBe(true);
    expect(await verifyPassword("pepper pass", plain, pepper)).toEqual({ ok: true, needsRehash: true });
    // The pepper changes the digest, not just the marker.
    expect(peppered.split("$")[3]).not.toBe(plain.split("$")[3]);
  });

  it("login with an old-parameter hash succeeds and the row is rehashed", async () => {
    const email = uniqueEmail();
    const id = `legacy${crypto.randomUUID().replace(/-/g, "")}`;
    const now = new Date().toISOString();
    const old = await legacyHash("legacy password", 1000);
    await env.DB.batch([
      env.DB.prepare(
        "INSERT INTO users (id, realm, email, password_hash, full_name, source, created_at, updated_at) VALUES (?, 'default', ?, ?, 'Legacy', 'password', ?, ?)",
      ).bind(id, email, old, now, now),
      env.DB.prepare("INSERT INTO user_emails (user_id, email, added_at) VALUES (?, ?, ?)").bind(id, email, now),
    ]);

    const pair = await login(email, { password: "legacy password" });
    expect(pair.user.id).toBe(id);

    // The rehash may finish just after the response (waitUntil).
    let stored = old;
    for (let i = 0; i < 50 && stored === old; i++) {
      await new Promise((r) => setTimeout(r, 20));
      stored = await storedHash(id);
    }
    expect(stored).not.toBe(old);
    expect(stored.split("$").slice(0, 2)).toEqual(["pbkdf2-sha256", "100000"]);
    expect(await verifyPassword("legacy password", stored)).toEqual({ ok: true, needsRehash: false });
    // And the new hash logs in.
    expect((await login(email, { password: "legacy password" })).user.id).toBe(id);
  });

  it("a wrong password on an old hash is not rehashed", async () => {
    const email = uniqueEmail();
    const id = `legacy${crypto.randomUUID().replace(/-/g, "")}`;
    const now = new Date().toISOString();
    const old = await legacyHash("legacy password", 1000);
    await env.DB.prepare(
      "INSERT INTO users (id, realm, email, password_hash, full_name, source, created_at, updated_at) VALUES (?, 'default', ?, ?, 'Legacy', 'password', ?, ?)",
    )
      .bind(id, email, old, now, now)
      .run();
    const res = await api("POST", "/v1/tokens", { body: { email, password: "not it at all" } });
    expect(res.status).toBe(401);
    await new Promise((r) => setTimeout(r, 100));
    expect(await storedHash(id)).toBe(old);
  });
});
