import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { makeDeps } from "../src/services/deps";
import { addressProven } from "../src/services/verification";
import { findUserById } from "../src/storage/users";
import {
  api,
  apiWithEnv,
  claimsOf,
  createRealm,
  frozenClock,
  loggedCode,
  loggedNotifications,
  login,
  PASSWORD,
  phoneCode,
  promote,
  signUp,
  signUpVerified,
  uniqueEmail,
  waitFor,
  withPrefix,
} from "./helpers";

// Proven identities (docs/api.md §4, §6, §11): every address the registry acts on is one a code proved.

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

let seq = 0;
const newPhone = () => `+1556${String((Math.floor(Math.random() * 1e7) + seq++) % 1e7).padStart(7, "0")}`;
const codeOf = (res: { body: any }): string | undefined => res.body?.error?.code;
const wrong = (code: string) => String((Number(code) + 1) % 1e8).padStart(8, "0");

async function freshRealm(settings: Parameters<typeof createRealm>[0] = {}) {
  const realm = await createRealm(settings);
  const prefix = `/v1/realms/${realm}`;
  return { realm, prefix, p: (path: string) => withPrefix(prefix, path) };
}

/** Signs up (through `fn`) and returns what it answered with the verification code mailed to `email`. */
async function withMailedCode<T>(email: string, fn: () => Promise<T>): Promise<{ result: T; code: string }> {
  const spy = vi.spyOn(console, "log");
  try {
    const result = await fn();
    return { result, code: await loggedCode(spy, "verify_email", email) };
  } finally {
    spy.mockRestore();
  }
}

const adminCount = async (realm: string) =>
  (
    await env.DB.prepare(
      `SELECT count(*) AS n FROM users WHERE realm = ? AND status = 'active' AND roles LIKE '%"admin"%'`,
    )
      .bind(realm)
      .first<{ n: number }>()
  )?.n;

describe("phone numbers are proven before they are attached (the pre-hijack)", () => {
  it("a sign-up with someone's number needs its code; with it, the owner's OTP login lands in that same account", async () => {
    const clock = frozenClock();
    const r = await freshRealm();
    const phone = newPhone();
    const body = (email: string, extra: Record<string, unknown> = {}) => ({
      email,
      password: PASSWORD,
      full_name: "Someone",
      phone_number: phone,
      ...extra,
    });

    // The stranger: no code, or a guessed one, attaches nothing.
    const squatter = uniqueEmail("squat.test");
    const bare = await api("POST", r.p("/v1/users"), { body: body(squatter) });
    expect(bare.status).toBe(400);
    expect(codeOf(bare)).toBe("validation_failed");
    expect(bare.body.error.fields).toHaveProperty("phone_otp");
    // The stranger can make a code go to the number, but does not receive it.
    const sent = await phoneCode(phone, r.prefix);
    const guessed = await api("POST", r.p("/v1/users"), {
      body: body(squatter, { phone_otp: String((Number(sent) + 1) % 1e6).padStart(6, "0") }),
    });
    expect(guessed.status).toBe(401);
    expect(codeOf(guessed)).toBe("invalid_otp");
    const held = await env.DB.prepare("SELECT count(*) AS n FROM users WHERE realm = ? AND phone_number = ?")
      .bind(r.realm, phone)
      .first<{ n: number }>();
    expect(held?.n).toBe(0);

    // The owner signs up with the code sent to their number.
    const owner = uniqueEmail("owner.test");
    const made = await api("POST", r.p("/v1/users"), { body: body(owner, { phone_otp: sent }) });
    expect(made.status).toBe(201);
    expect(made.body.phone_number).toBe(phone);
    // A code proves the number once.
    const again = await api("POST", r.p("/v1/users"), { body: body(uniqueEmail(), { phone_otp: sent }) });
    expect(again.status).toBe(401);

    // Later, the owner logs in by SMS: the same, proven account.
    clock.advance(61_000);
    const otp = await phoneCode(phone, r.prefix);
    const verified = await api("POST", r.p("/v1/otp/verify"), { body: { phone_number: phone, otp } });
    expect(verified.status).toBe(200);
    expect(verified.body.created).toBe(false);
    expect(verified.body.user).toMatchObject({ id: made.body.id, email: owner, phone_number: phone });
  });

  it("an admin creating a user needs the code too; an admin editing another user does not, and is audited", async () => {
    const r = await freshRealm();
    await signUpVerified("root@admin.test", {}, r.prefix);
    const admin = (await login("root@admin.test", { prefix: r.prefix })).access_token;
    const phone = newPhone();
    const create = await api("POST", r.p("/v1/users"), {
      token: admin,
      body: { email: uniqueEmail(), full_name: "Made", password: PASSWORD, phone_number: phone },
    });
    expect(create.status).toBe(400);
    expect(create.body.error.fields).toHaveProperty("phone_otp");

    const user = await signUp(uniqueEmail(), {}, r.prefix);
    const edited = await api("PATCH", r.p(`/v1/users/${user.id}`), { token: admin, body: { phone_number: phone } });
    expect(edited.status).toBe(200);
    const event = await waitFor(() =>
      env.DB.prepare("SELECT detail FROM audit_events WHERE realm = ? AND type = 'user_updated' AND user_id = ?")
        .bind(r.realm, user.id)
        .first<{ detail: string }>(),
    );
    const adminId = claimsOf(admin).sub;
    expect(JSON.parse(event.detail)).toMatchObject({ by: adminId });
  });

  it("PATCH checks the proof before who holds the number, so it tells nothing about registered numbers", async () => {
    const clock = frozenClock();
    const r = await freshRealm();
    const phone = newPhone();
    const holder = uniqueEmail();
    await signUp(holder, { phone_number: phone, phone_otp: await phoneCode(phone, r.prefix) }, r.prefix);
    const other = await signUp(uniqueEmail(), {}, r.prefix);
    const token = (await login(other.email, { prefix: r.prefix })).access_token;
    const free = newPhone();
    // Without a code: the same 400 for a held number and a free one.
    const heldAnswer = await api("PATCH", r.p("/v1/users/me"), { token, body: { phone_number: phone } });
    const freeAnswer = await api("PATCH", r.p("/v1/users/me"), { token, body: { phone_number: free } });
    expect([heldAnswer.status, codeOf(heldAnswer)]).toEqual([400, "validation_failed"]);
    expect([freeAnswer.status, freeAnswer.body]).toEqual([heldAnswer.status, heldAnswer.body]);
    // With a wrong code: the same 401 for both.
    clock.advance(61_000);
    await phoneCode(phone, r.prefix);
    await phoneCode(free, r.prefix);
    const heldWrong = await api("PATCH", r.p("/v1/users/me"), {
      token,
      body: { phone_number: phone, phone_otp: "000000" },
    });
    const freeWrong = await api("PATCH", r.p("/v1/users/me"), {
      token,
      body: { phone_number: free, phone_otp: "000000" },
    });
    expect(codeOf(heldWrong)).toBe(codeOf(freeWrong));
  });

  it("the migration detaches numbers nobody proved and keeps those of accounts made by a phone code", async () => {
    const migration = (env.TEST_MIGRATIONS as { name: string; queries: string[] }[]).find((m) =>
      m.name.startsWith("0004_"),
    );
    expect(migration).toBeDefined();
    const r = await freshRealm();
    const now = new Date().toISOString();
    const typed = newPhone();
    const proven = newPhone();
    const insert = (id: string, phone: string, source: string) =>
      env.DB.prepare(
        "INSERT INTO users (id, realm, email, phone_number, roles, status, source, profile, created_at, updated_at) VALUES (?, ?, NULL, ?, '[\"user\"]', 'active', ?, '{}', ?, ?)",
      ).bind(id, r.realm, phone, source, now, now);
    await env.DB.batch([insert(`m-typed-${r.realm}`, typed, "password"), insert(`m-otp-${r.realm}`, proven, "phone")]);
    // The data statements of the migration, run again over this realm's rows only (both end in a WHERE).
    for (const q of migration?.queries.filter((q) => /phone_number/.test(q)) ?? []) {
      await env.DB.prepare(`${q.trim().replace(/;$/, "")} AND realm = ?`)
        .bind(r.realm)
        .run();
    }
    const phoneOf = async (id: string) =>
      (await env.DB.prepare("SELECT phone_number AS p FROM users WHERE id = ?").bind(id).first<{ p: string }>())?.p;
    expect(await phoneOf(`m-typed-${r.realm}`)).toBeNull();
    expect(await phoneOf(`m-otp-${r.realm}`)).toBe(proven);
    const audited = await env.DB.prepare(
      "SELECT count(*) AS n FROM audit_events WHERE type = 'phone_detached' AND user_id = ?",
    )
      .bind(`m-typed-${r.realm}`)
      .first<{ n: number }>();
    expect(audited?.n).toBe(1);
    // The number is free for its owner now: an OTP login makes them an account of their own.
    const otp = await phoneCode(typed, r.prefix);
    const login = await api("POST", r.p("/v1/otp/verify"), { body: { phone_number: typed, otp } });
    expect(login.body.created).toBe(true);
    expect(login.body.user.id).not.toBe(`m-typed-${r.realm}`);
  });
});

describe("the bootstrap admin seat (docs/api.md §6)", () => {
  it("an unverified bootstrap address is an ordinary user, even in a closed realm with approval", async () => {
    const r = await freshRealm({ registration: "closed", approval_required: true });
    const { result: made, code } = await withMailedCode("root@admin.test", () =>
      api("POST", r.p("/v1/users"), { body: { email: " ROOT@ADMIN.TEST ", password: PASSWORD, full_name: "Root?" } }),
    );
    expect(made.status).toBe(201);
    expect(made.body).toMatchObject({
      email: "root@admin.test",
      roles: ["user"],
      status: "pending",
      email_verified: false,
    });
    const tried = await api("POST", r.p("/v1/tokens"), { body: { email: "root@admin.test", password: PASSWORD } });
    expect(codeOf(tried)).toBe("account_pending");
    expect(await adminCount(r.realm)).toBe(0);

    // The owner of the address proves it: the seat is theirs, active at once.
    const proved = await api("PUT", r.p("/v1/users/verification"), { body: { email: "root@admin.test", code } });
    expect(proved.status).toBe(204);
    const pair = await login("root@admin.test", { prefix: r.prefix });
    expect(pair.user).toMatchObject({ status: "active", email_verified: true });
    expect(pair.user.roles).toContain("admin");
    expect(claimsOf(pair.access_token)).toMatchObject({ email_verified: true });
    expect(claimsOf(pair.access_token).roles).toContain("admin");
    // Once the realm has an admin, the exemption is gone: a closed realm is closed to the other address.
    const late = await api("POST", r.p("/v1/users"), {
      body: { email: "second-root@admin.test", password: PASSWORD, full_name: "Late" },
    });
    expect(codeOf(late)).toBe("registration_closed");
  });

  it("two claimants verifying at once in a fresh realm: exactly one admin", async () => {
    const r = await freshRealm();
    const a = await withMailedCode("root@admin.test", () => signUp("root@admin.test", {}, r.prefix));
    const b = await withMailedCode("second-root@admin.test", () => signUp("second-root@admin.test", {}, r.prefix));
    expect(a.result.roles).toEqual(["user"]);
    expect(b.result.roles).toEqual(["user"]);
    const answers = await Promise.all([
      api("PUT", r.p("/v1/users/verification"), { body: { email: "root@admin.test", code: a.code } }),
      api("PUT", r.p("/v1/users/verification"), { body: { email: "second-root@admin.test", code: b.code } }),
    ]);
    expect(answers.map((x) => x.status)).toEqual([204, 204]);
    expect(await adminCount(r.realm)).toBe(1);
  });

  it("two claims issued together (each one step) cannot both win", async () => {
    const r = await freshRealm();
    const a = await signUp("root@admin.test", {}, r.prefix);
    const b = await signUp("second-root@admin.test", {}, r.prefix);
    const deps = await makeDeps(env, Date.now(), () => {});
    const [ua, ub] = await Promise.all([findUserById(deps.db, r.realm, a.id), findUserById(deps.db, r.realm, b.id)]);
    // Both read "no admin" before either writes: only the statement's own test can keep one out.
    const claims = await Promise.all([
      addressProven(deps, ua!, "root@admin.test"),
      addressProven(deps, ub!, "second-root@admin.test"),
    ]);
    expect(claims.filter((c) => c.admin)).toHaveLength(1);
    expect(await adminCount(r.realm)).toBe(1);
  });

  it("after the owner moves away from the address, a newcomer with it (even proven) gets no admin", async () => {
    const clock = frozenClock();
    const r = await freshRealm();
    await signUpVerified("root@admin.test", {}, r.prefix);
    const owner = await login("root@admin.test", { prefix: r.prefix });
    expect(owner.user.roles).toContain("admin");
    const moved = await api("PUT", r.p("/v1/users/me/email"), {
      token: owner.access_token,
      body: { email: uniqueEmail("elsewhere.test"), current_password: PASSWORD },
    });
    expect(moved.status).toBe(200);
    const newcomer = await signUp("root@admin.test", {}, r.prefix);
    expect(newcomer.roles).toEqual(["user"]);
    const proven = await signUpVerifiedExisting("root@admin.test", r.prefix, clock);
    expect(proven).toBe(204);
    const me = await login("root@admin.test", { prefix: r.prefix });
    expect(me.user.roles).toEqual(["user"]);
    expect(me.user.email_verified).toBe(true);
    expect(await adminCount(r.realm)).toBe(1);
  });
});

/** Asks for a new code for `email` and proves it (as the mailbox's holder). Returns the PUT's status. */
async function signUpVerifiedExisting(email: string, prefix: string, clock?: { advance(ms: number): number }) {
  clock?.advance(61_000);
  const spy = vi.spyOn(console, "log");
  try {
    await apiWithEnv({}, "POST", withPrefix(prefix, "/v1/users/verification"), { body: { email } });
    const code = await loggedCode(spy, "verify_email", email);
    return (await api("PUT", withPrefix(prefix, "/v1/users/verification"), { body: { email, code } })).status;
  } finally {
    spy.mockRestore();
  }
}

describe("verification codes (docs/api.md §11)", () => {
  it("sign-up mails an 8-digit code; a wrong one is refused, the right one proves the address once", async () => {
    const email = uniqueEmail();
    const { result: user, code } = await withMailedCode(email, () => signUp(email));
    expect(code).toMatch(/^\d{8}$/);
    expect(user).toMatchObject({ email_verified: false, emails: [{ email, current: true, verified: false }] });
    const before = await login(email);
    expect(claimsOf(before.access_token).email_verified).toBe(false);

    const bad = await api("PUT", "/v1/users/verification", { body: { email, code: wrong(code) } });
    expect([bad.status, codeOf(bad)]).toEqual([400, "invalid_code"]);
    const ok = await api("PUT", "/v1/users/verification", { body: { email, code } });
    expect(ok.status).toBe(204);
    const reused = await api("PUT", "/v1/users/verification", { body: { email, code } });
    expect([reused.status, codeOf(reused)]).toEqual([400, "invalid_code"]);

    const after = await login(email);
    expect(after.user).toMatchObject({ email_verified: true, emails: [{ email, verified: true }] });
    expect(claimsOf(after.access_token).email_verified).toBe(true);
    // A session begun before the proof learns of it at its next refresh.
    const refreshed = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: before.refresh_token } });
    expect(claimsOf(refreshed.body.access_token).email_verified).toBe(true);
  });

  it("a code expires after 30 minutes (injected clock)", async () => {
    const clock = frozenClock();
    const email = uniqueEmail();
    const { code } = await withMailedCode(email, () => signUp(email));
    clock.advance(30 * 60_000 + 1000);
    const late = await api("PUT", "/v1/users/verification", { body: { email, code } });
    expect([late.status, codeOf(late)]).toEqual([400, "invalid_code"]);
  });

  it("five wrong tries use a code up: the right one is refused after them", async () => {
    const email = uniqueEmail();
    const { code } = await withMailedCode(email, () => signUp(email));
    for (let i = 0; i < 5; i++) {
      const res = await api("PUT", "/v1/users/verification", { body: { email, code: wrong(code) } });
      expect(codeOf(res)).toBe("invalid_code");
    }
    const right = await api("PUT", "/v1/users/verification", { body: { email, code } });
    expect([right.status, codeOf(right)]).toEqual([400, "invalid_code"]);
  });

  it("resends at most once a minute and 10 times a UTC day per address, always answering 202 {}", async () => {
    const clock = frozenClock(Date.UTC(2031, 0, 5, 0, 5));
    const email = uniqueEmail();
    const spy = vi.spyOn(console, "log");
    const sent = () => loggedNotifications(spy).filter((m) => m.type === "verify_email" && m.to === email).length;
    const resend = async () => {
      const res = await apiWithEnv({}, "POST", "/v1/users/verification", { body: { email } });
      expect([res.status, res.body]).toEqual([202, {}]);
    };
    await signUp(email);
    await waitFor(() => sent() === 1);
    const first = loggedNotifications(spy).filter((m) => m.to === email)[0]?.code as string;
    await resend();
    expect(sent()).toBe(1);
    clock.advance(61_000);
    await resend();
    expect(sent()).toBe(2);
    // The new code replaced the old one.
    const stale = await api("PUT", "/v1/users/verification", { body: { email, code: first } });
    expect(codeOf(stale)).toBe("invalid_code");
    for (let i = 3; i <= 12; i++) {
      clock.advance(61_000);
      await resend();
    }
    expect(sent()).toBe(10);
    // A new UTC day, a new allowance.
    clock.set(Date.UTC(2031, 0, 6, 0, 1));
    await resend();
    expect(sent()).toBe(11);
  });

  it("an unknown or already verified address gets the same 202 {} and no webhook post", async () => {
    const HOOK = {
      NOTIFY_WEBHOOK_URL: "https://hooks.test/verification",
      NOTIFY_WEBHOOK_SECRET: "verification-test-secret",
    };
    const posted = async (to: string) =>
      (
        (await (await env.DOUBLE.fetch("http://double/__double/received")).json()) as { url: string; body: string }[]
      ).filter((r) => r.url === HOOK.NOTIFY_WEBHOOK_URL && r.body.includes(to));
    const clock = frozenClock();
    const unknown = uniqueEmail("nobody.test");
    const verified = (await signUpVerified()).email as string;
    const pendingEmail = uniqueEmail();
    await signUp(pendingEmail);
    clock.advance(61_000);
    const answers = [];
    for (const email of [unknown, verified, pendingEmail]) {
      answers.push(await apiWithEnv(HOOK, "POST", "/v1/users/verification", { body: { email } }));
    }
    for (const a of answers) expect([a.status, a.body]).toEqual([202, {}]);
    expect(await posted(unknown)).toHaveLength(0);
    expect(await posted(verified)).toHaveLength(0);
    // The control: the unverified address of an account does get a signed post.
    const [post] = await posted(pendingEmail);
    expect(JSON.parse(post?.body ?? "{}")).toMatchObject({ type: "verify_email", channel: "email", to: pendingEmail });
    // Unknown address with any code: the same 400 invalid_code.
    const guess = await api("PUT", "/v1/users/verification", { body: { email: unknown, code: "12345678" } });
    expect(codeOf(guess)).toBe("invalid_code");
  });

  it("resends and proofs are limited per client IP too (the reset limiter)", async () => {
    const ip = `203.0.113.${Math.floor(Math.random() * 250) + 1}`;
    const statuses: number[] = [];
    // Fixed 60 s windows of 10: the first 429 comes after at least 10 and at most 20 requests.
    for (let i = 0; i < 21 && !statuses.includes(429); i++) {
      const res = await api(i % 2 ? "PUT" : "POST", "/v1/users/verification", {
        body: { email: uniqueEmail(), code: "12345678" },
        headers: { "CF-Connecting-IP": ip },
      });
      statuses.push(res.status);
    }
    const first429 = statuses.indexOf(429);
    expect(first429).toBeGreaterThanOrEqual(10);
    expect(first429).toBeLessThanOrEqual(20);
  });

  it("a code mailed while one account held the address proves nothing for a later holder", async () => {
    const r = await freshRealm();
    const email = uniqueEmail();
    const first = await withMailedCode(email, () => signUp(email, {}, r.prefix));
    const pair = await login(email, { prefix: r.prefix });
    await api("PUT", r.p("/v1/users/me/email"), {
      token: pair.access_token,
      body: { email: uniqueEmail(), current_password: PASSWORD },
    });
    // Within the minute, the newcomer's sign-up sends no new code; the old one must not work for it.
    await signUp(email, {}, r.prefix);
    const res = await api("PUT", r.p("/v1/users/verification"), { body: { email, code: first.code } });
    expect(codeOf(res)).toBe("invalid_code");
  });
});

describe("realms that require verification", () => {
  it("refuses a correct password before the proof (403 email_unverified) and logs in after it", async () => {
    const r = await freshRealm({ email_verification: "required" });
    const email = uniqueEmail();
    const { code } = await withMailedCode(email, () => signUp(email, {}, r.prefix));
    const before = await api("POST", r.p("/v1/tokens"), { body: { email, password: PASSWORD } });
    expect([before.status, codeOf(before)]).toEqual([403, "email_unverified"]);
    // A wrong password still says only invalid_credentials.
    const wrongPw = await api("POST", r.p("/v1/tokens"), { body: { email, password: "not the password" } });
    expect(codeOf(wrongPw)).toBe("invalid_credentials");
    expect((await api("PUT", r.p("/v1/users/verification"), { body: { email, code } })).status).toBe(204);
    const after = await login(email, { prefix: r.prefix });
    expect(claimsOf(after.access_token).email_verified).toBe(true);
  });

  it("an email change waits for the code sent to the new address; the old one is told", async () => {
    const r = await freshRealm({ email_verification: "required" });
    const old = uniqueEmail();
    await signUpVerified(old, {}, r.prefix);
    const pair = await login(old, { prefix: r.prefix });
    const next = uniqueEmail("new.test");
    const spy = vi.spyOn(console, "log");
    const asked = await api("PUT", r.p("/v1/users/me/email"), {
      token: pair.access_token,
      body: { email: next, current_password: PASSWORD },
    });
    expect(asked.status).toBe(202);
    expect(asked.body).toEqual({ pending_email: next, expires_in: 1800 });
    const code = await loggedCode(spy, "verify_email", next);
    // Nothing changed yet.
    const me = await api("GET", r.p("/v1/users/me"), { token: pair.access_token });
    expect(me.body.email).toBe(old);
    expect(me.body.emails.map((e: { email: string }) => e.email)).toEqual([old]);

    const bad = await api("PUT", r.p("/v1/users/me/email/verify"), {
      token: pair.access_token,
      body: { code: wrong(code) },
    });
    expect([bad.status, codeOf(bad)]).toEqual([400, "invalid_code"]);
    const done = await api("PUT", r.p("/v1/users/me/email/verify"), { token: pair.access_token, body: { code } });
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ email: next, email_verified: true });
    expect(done.body.emails).toEqual([
      expect.objectContaining({ email: old, current: false, verified: true }),
      expect.objectContaining({ email: next, current: true, verified: true }),
    ]);
    const notice = await waitFor(() =>
      loggedNotifications(spy).find((m) => m.type === "email_changed" && m.to === old),
    );
    expect(notice).toMatchObject({ channel: "email", new_email: next });
    expect(notice.code).toBeUndefined();
    const again = await api("PUT", r.p("/v1/users/me/email/verify"), { token: pair.access_token, body: { code } });
    expect(codeOf(again)).toBe("invalid_code");
    // The new address logs in (verified), the old one no longer does.
    expect((await login(next, { prefix: r.prefix })).user.email).toBe(next);
  });

  it("an allowlist realm always requires it, and an email change cannot leave the allowed domains", async () => {
    const r = await freshRealm({ registration: "allowlist" });
    await env.DB.prepare(
      "INSERT INTO domain_rules (realm, domain, rule, created_at) VALUES (?, 'good.test', 'allow', ?)",
    )
      .bind(r.realm, new Date().toISOString())
      .run();
    const email = uniqueEmail("good.test");
    const { code } = await withMailedCode(email, () => signUp(email, {}, r.prefix));
    const before = await api("POST", r.p("/v1/tokens"), { body: { email, password: PASSWORD } });
    expect(codeOf(before)).toBe("email_unverified");
    await api("PUT", r.p("/v1/users/verification"), { body: { email, code } });
    const pair = await login(email, { prefix: r.prefix });
    const out = await api("PUT", r.p("/v1/users/me/email"), {
      token: pair.access_token,
      body: { email: uniqueEmail("evil.test"), current_password: PASSWORD },
    });
    expect([out.status, codeOf(out)]).toEqual([403, "domain_not_allowed"]);
    const inside = await api("PUT", r.p("/v1/users/me/email"), {
      token: pair.access_token,
      body: { email: uniqueEmail("good.test"), current_password: PASSWORD },
    });
    expect(inside.status).toBe(202);
  });

  it("in an optional realm an email change is immediate, the new address unverified and mailed a code", async () => {
    const email = uniqueEmail();
    await signUpVerified(email);
    const pair = await login(email);
    const next = uniqueEmail();
    const spy = vi.spyOn(console, "log");
    const res = await api("PUT", "/v1/users/me/email", {
      token: pair.access_token,
      body: { email: next, current_password: PASSWORD },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ email: next, email_verified: false });
    await loggedCode(spy, "verify_email", next);
    await waitFor(() => loggedNotifications(spy).find((m) => m.type === "email_changed" && m.to === email));
    // Back to the old address: current again, and still verified.
    const back = await api("PUT", "/v1/users/me/email", {
      token: pair.access_token,
      body: { email, current_password: PASSWORD },
    });
    expect(back.body).toMatchObject({ email, email_verified: true });
  });

  it("realm settings carry email_verification (default optional)", async () => {
    const admin = (await signUpVerified("second-root@admin.test")) && (await login("second-root@admin.test"));
    const id = `ev${Date.now().toString(36)}`;
    const made = await api("PUT", `/v1/realms/${id}`, {
      token: admin.access_token,
      body: { registration: "open", approval_required: false, captcha_required: false },
    });
    expect(made.body.email_verification).toBe("optional");
    const set = await api("PUT", `/v1/realms/${id}`, {
      token: admin.access_token,
      body: { registration: "open", approval_required: false, captcha_required: false, email_verification: "required" },
    });
    expect(set.body.email_verification).toBe("required");
    const kept = await api("PUT", `/v1/realms/${id}`, {
      token: admin.access_token,
      body: { registration: "open", approval_required: true, captcha_required: false },
    });
    expect(kept.body.email_verification).toBe("required");
  });
});

describe("authority tokens manage proven, non-admin users of their domain only", () => {
  it("cannot deactivate an admin or a user whose address in its domain is unverified", async () => {
    const r = await freshRealm();
    await signUpVerified("root@admin.test", {}, r.prefix);
    const admin = (await login("root@admin.test", { prefix: r.prefix })).access_token;
    const minted = await api("POST", r.p("/v1/domains/corp.test/authority-token"), { token: admin, body: {} });
    expect(minted.status).toBe(201);
    const authority = minted.body.token as string;

    const proven = await signUpVerified(uniqueEmail("corp.test"), {}, r.prefix);
    const unproven = await signUp(uniqueEmail("corp.test"), {}, r.prefix);
    const corpAdmin = await signUpVerified(uniqueEmail("corp.test"), {}, r.prefix);
    await promote(r.prefix, admin, corpAdmin.id);

    const deactivate = (id: string) => api("POST", r.p(`/v1/users/${id}/deactivate`), { token: authority });
    expect(codeOf(await deactivate(unproven.id))).toBe("forbidden");
    expect(codeOf(await deactivate(corpAdmin.id))).toBe("forbidden");
    expect((await deactivate(proven.id)).status).toBe(200);
    const listed = await api("GET", r.p("/v1/users?domain=corp.test"), { token: authority });
    expect(listed.status).toBe(200);
    expect(listed.body.users.map((u: { id: string }) => u.id)).toEqual([proven.id]);
    // The realm's admin still manages them all.
    expect((await api("POST", r.p(`/v1/users/${unproven.id}/deactivate`), { token: admin })).status).toBe(200);
  });
});
