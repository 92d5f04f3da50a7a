import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ApiError } from "../src/errors";
import { setStatus } from "../src/services/admin";
import { makeDeps } from "../src/services/deps";
import {
  api,
  apiWithEnv,
  claimsOf,
  createRealm,
  login,
  PASSWORD,
  promote,
  signUp,
  signUpVerified,
  uniqueEmail,
  withPrefix,
} from "./helpers";

/** A realm of its own with a bootstrapped admin (root@admin.test is in BOOTSTRAP_ADMIN_EMAILS). */
async function realmWithAdmin(settings: Parameters<typeof createRealm>[0] = {}) {
  const realm = await createRealm({ ...settings, captcha_required: false });
  const prefix = `/v1/realms/${realm}`;
  const admin = await signUpVerified("root@admin.test", {}, prefix);
  const pair = await login("root@admin.test", { prefix });
  if (settings.captcha_required)
    await env.DB.prepare("UPDATE realms SET captcha_required = 1 WHERE id = ?").bind(realm).run();
  return { realm, prefix, admin, token: pair.access_token as string, p: (path: string) => withPrefix(prefix, path) };
}

describe("admins and roles", () => {
  it("bootstraps admins from BOOTSTRAP_ADMIN_EMAILS in any realm", async () => {
    const r = await realmWithAdmin();
    expect(r.admin.roles).toEqual(expect.arrayContaining(["user", "admin"]));
    const plain = await signUp(uniqueEmail(), {}, r.prefix);
    expect(plain.roles).toEqual(["user"]);
  });

  it("changes roles and refuses to remove the last admin", async () => {
    const r = await realmWithAdmin();
    const last = await api("PUT", r.p(`/v1/users/${r.admin.id}/roles`), { token: r.token, body: { roles: ["user"] } });
    expect(last.status).toBe(409);
    expect(last.body.error.code).toBe("last_admin");

    const other = await signUp(uniqueEmail(), {}, r.prefix);
    const promoted = await api("PUT", r.p(`/v1/users/${other.id}/roles`), {
      token: r.token,
      body: { roles: ["admin", "user"] },
    });
    expect(promoted.status).toBe(200);
    expect(promoted.body.roles).toEqual(["admin", "user"]);
    // Now the first admin may step down.
    const down = await api("PUT", r.p(`/v1/users/${r.admin.id}/roles`), { token: r.token, body: { roles: ["user"] } });
    expect(down.status).toBe(200);
    // ...and loses admin routes at once, although its token still says admin.
    const refused = await api("GET", r.p("/v1/users"), { token: r.token });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("forbidden");
  });

  it("a role change reaches the user's next refresh at once", async () => {
    const r = await realmWithAdmin();
    const email = uniqueEmail();
    const other = await signUp(email, {}, r.prefix);
    const pairs = [await login(email, { prefix: r.prefix }), await login(email, { prefix: r.prefix })];
    const refresh = (token: string) =>
      api("POST", r.p("/v1/tokens/refresh"), { body: { refresh_token: token } }).then((res) => res.body);
    // Each session has rotated once, so each holds its copy of the account.
    const rotated = await Promise.all(pairs.map((p) => refresh(p.refresh_token)));
    expect(rotated.map((b) => claimsOf(b.access_token).roles)).toEqual([["user"], ["user"]]);

    const promoted = await api("PUT", r.p(`/v1/users/${other.id}/roles`), {
      token: r.token,
      body: { roles: ["support", "user"] },
    });
    expect(promoted.status).toBe(200);
    const promotedPairs = [];
    for (const b of rotated) {
      const next = await refresh(b.refresh_token);
      expect(claimsOf(next.access_token).roles).toEqual(["support", "user"]);
      expect(next.user.roles).toEqual(["support", "user"]);
      promotedPairs.push(next);
    }

    // Taking a role away, and an admin's edit of the profile, reach the next refresh just as fast.
    const demoted = await api("PUT", r.p(`/v1/users/${other.id}/roles`), { token: r.token, body: { roles: ["user"] } });
    expect(demoted.status).toBe(200);
    const renamed = await api("PATCH", r.p(`/v1/users/${other.id}`), {
      token: r.token,
      body: { full_name: "By Admin" },
    });
    expect(renamed.status).toBe(200);
    for (const b of promotedPairs) {
      const next = await refresh(b.refresh_token);
      expect(claimsOf(next.access_token)).toMatchObject({ roles: ["user"], name: "By Admin" });
    }
  });

  it("two admins deactivating each other at once never leave the realm without one", async () => {
    const r = await realmWithAdmin();
    const second = await signUp(uniqueEmail(), {}, r.prefix);
    await promote(r.prefix, r.token, second.id);
    // Called as the route calls it, both at once: over HTTP the middleware's own reads space them out.
    const deps = await makeDeps(env, Date.now(), () => {});
    const as = (userId: string) => ({ kind: "admin" as const, userId });
    const outcomes = await Promise.allSettled([
      setStatus(deps, r.realm, second.id, "disabled", as(r.admin.id)),
      setStatus(deps, r.realm, r.admin.id, "disabled", as(second.id)),
    ]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(["fulfilled", "rejected"]);
    const refused = outcomes.find((o) => o.status === "rejected") as PromiseRejectedResult;
    expect(refused.reason).toBeInstanceOf(ApiError);
    expect(refused.reason.code).toBe("last_admin");
    const active = await env.DB.prepare(
      `SELECT count(*) AS n FROM users WHERE realm = ? AND status = 'active' AND roles LIKE '%"admin"%'`,
    )
      .bind(r.realm)
      .first<{ n: number }>();
    expect(active?.n).toBe(1);
  });

  it("two admins demoting each other at once never leave the realm without one", async () => {
    const r = await realmWithAdmin();
    const second = await signUp(uniqueEmail(), {}, r.prefix);
    await promote(r.prefix, r.token, second.id);
    const secondToken = (await login(second.email, { prefix: r.prefix })).access_token;
    const [a, b] = await Promise.all([
      api("PUT", r.p(`/v1/users/${second.id}/roles`), { token: r.token, body: { roles: ["user"] } }),
      api("PUT", r.p(`/v1/users/${r.admin.id}/roles`), { token: secondToken, body: { roles: ["user"] } }),
    ]);
    const statuses = [a.status, b.status].sort();
    expect(statuses).not.toEqual([200, 200]);
    const admins = await env.DB.prepare(`SELECT count(*) AS n FROM users WHERE realm = ? AND roles LIKE '%"admin"%'`)
      .bind(r.realm)
      .first<{ n: number }>();
    expect(admins?.n).toBeGreaterThanOrEqual(1);
  });

  it("non-admins get 403 forbidden on admin routes", async () => {
    const r = await realmWithAdmin();
    const email = uniqueEmail();
    const user = await signUp(email, {}, r.prefix);
    const token = (await login(email, { prefix: r.prefix })).access_token;
    for (const [method, path, body] of [
      ["GET", "/v1/users", undefined],
      ["POST", `/v1/users/${user.id}/deactivate`, undefined],
      ["PUT", `/v1/users/${user.id}/roles`, { roles: ["admin"] }],
      ["GET", "/v1/domains", undefined],
    ] as const) {
      const res = await api(method, r.p(path), { token, body });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.body.error.code).toBe("forbidden");
    }
  });
});

describe("listing users", () => {
  it("paginates with a cursor that stays correct while users are added and deleted", async () => {
    const r = await realmWithAdmin();
    // Seed 2,500 users directly (hashing that many passwords would only test PBKDF2).
    const base = Date.parse("2026-01-01T00:00:00.000Z");
    const stmts = [];
    for (let i = 0; i < 2500; i++) {
      const at = new Date(base + Math.floor(i / 3) * 1000).toISOString(); // ties on created_at
      stmts.push(
        env.DB.prepare(
          "INSERT INTO users (id, realm, email, full_name, roles, status, source, profile, created_at, updated_at) VALUES (?, ?, ?, ?, '[\"user\"]', ?, 'admin', '{}', ?, ?)",
        ).bind(
          `seed${String(i).padStart(6, "0")}`,
          r.realm,
          `p${i}@${i % 2 ? "odd.test" : "even.test"}`,
          `Person ${i}`,
          i % 10 === 0 ? "pending" : "active",
          at,
          at,
        ),
      );
    }
    for (let i = 0; i < stmts.length; i += 500) await env.DB.batch(stmts.slice(i, i + 500));

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `/v1/users?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      const page: Awaited<ReturnType<typeof api<any>>> = await api("GET", r.p(q), { token: r.token });
      expect(page.status).toBe(200);
      expect(page.body.users.length).toBeLessThanOrEqual(100);
      seen.push(...page.body.users.map((u: { id: string }) => u.id));
      cursor = page.body.next_cursor;
      pages++;
      if (pages === 5) {
        // Between pages: delete a user not yet seen, a user already seen, and add one.
        await env.DB.prepare("DELETE FROM users WHERE id IN ('seed002400', 'seed000010')").run();
        await signUp(uniqueEmail(), {}, r.prefix);
      }
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length); // no duplicates
    const expected = await env.DB.prepare("SELECT id FROM users WHERE realm = ? ORDER BY created_at, id")
      .bind(r.realm)
      .all<{ id: string }>();
    const expectedIds = expected.results.map((x) => x.id);
    // Every user that exists now was seen (no skips), except none; the deleted-after-seen one was seen before.
    for (const id of expectedIds) expect(seen).toContain(id);
    expect(seen).toContain("seed000010");
    expect(seen).not.toContain("seed002400");
  });

  it("filters by prefix, domain and status; limit above 100 is refused", async () => {
    const r = await realmWithAdmin();
    const a = await signUp(`alice.${Date.now()}@filters.test`, { full_name: "Zed Alpha" }, r.prefix);
    await signUp(`bob.${Date.now()}@elsewhere.test`, { full_name: "Bob" }, r.prefix);
    const byEmail = await api("GET", r.p("/v1/users?q=alice."), { token: r.token });
    expect(byEmail.body.users.map((u: { id: string }) => u.id)).toEqual([a.id]);
    const byName = await api("GET", r.p("/v1/users?q=zed"), { token: r.token });
    expect(byName.body.users.map((u: { id: string }) => u.id)).toEqual([a.id]);
    const byDomain = await api("GET", r.p("/v1/users?domain=filters.test"), { token: r.token });
    expect(byDomain.body.users.map((u: { id: string }) => u.id)).toEqual([a.id]);
    const wildcard = await api("GET", r.p("/v1/users?q=%25"), { token: r.token });
    expect(wildcard.body.users).toEqual([]); // LIKE wildcards in q are literal
    const pending = await api("GET", r.p("/v1/users?status=pending"), { token: r.token });
    expect(pending.body.users).toEqual([]);
    const tooMany = await api("GET", r.p("/v1/users?limit=101"), { token: r.token });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.code).toBe("validation_failed");
    expect(tooMany.body.error.fields.limit).toBeDefined();
    const badCursor = await api("GET", r.p("/v1/users?cursor=nonsense"), { token: r.token });
    expect(badCursor.status).toBe(400);
  });

  it("a search D1 cannot run is a 400, and a long domain still filters", async () => {
    const r = await realmWithAdmin();
    const longDomain = `${"sub.".repeat(12)}filters.test`; // 60 characters: longer than any LIKE pattern D1 runs
    const far = await signUp(`far.${Date.now()}@${longDomain}`, {}, r.prefix);
    await signUp(`near.${Date.now()}@filters.test`, {}, r.prefix);
    const byDomain = await api("GET", r.p(`/v1/users?domain=${longDomain.toUpperCase()}`), { token: r.token });
    expect(byDomain.status).toBe(200);
    expect(byDomain.body.users.map((u: { id: string }) => u.id)).toEqual([far.id]);
    // 49 bytes of prefix is the most: with the trailing % the pattern is D1's 50-byte limit.
    expect((await api("GET", r.p(`/v1/users?q=${"a".repeat(49)}`), { token: r.token })).status).toBe(200);
    for (const q of ["a".repeat(50), "%25".repeat(25), "%F4%8D%BE%BE".repeat(13)]) {
      const res = await api("GET", r.p(`/v1/users?q=${q}`), { token: r.token });
      expect({ status: res.status, code: res.body.error?.code }).toEqual({ status: 400, code: "validation_failed" });
      expect(res.body.error.fields.q).toContain("too long");
    }
  });

  it("the listing query uses the (realm, created_at, id) index", async () => {
    const { listWhere } = await import("../src/services/admin");
    const { getDb } = await import("../src/storage/db");
    const { users } = await import("../src/storage/schema");
    const { asc } = await import("drizzle-orm");
    const query = getDb(env.DB)
      .select({ id: users.id })
      .from(users)
      .where(
        listWhere(
          "default",
          { limit: 50, cursor: btoa(JSON.stringify(["2026-01-01T00:00:00.000Z", "x"])).replace(/=+$/, ""), q: "a" },
          { kind: "admin", userId: "x" },
        ),
      )
      .orderBy(asc(users.createdAt), asc(users.id))
      .limit(51)
      .toSQL();
    const plan = await env.DB.prepare(`EXPLAIN QUERY PLAN ${query.sql}`)
      .bind(...query.params)
      .all<{ detail: string }>();
    const details = plan.results.map((p) => p.detail).join("\n");
    expect(details).toMatch(/USING (COVERING )?INDEX users_realm_created/);
    expect(details).not.toMatch(/USE TEMP B-TREE FOR ORDER BY/);
  });
});

describe("approval", () => {
  it("pending users cannot log in until activated; deactivation ends every session", async () => {
    const r = await realmWithAdmin({ approval_required: true });
    const email = uniqueEmail();
    const user = await signUp(email, {}, r.prefix);
    expect(user.status).toBe("pending");
    const wrong = await api("POST", r.p("/v1/tokens"), { body: { email, password: "wrong password" } });
    expect(wrong.body.error.code).toBe("invalid_credentials"); // status only after a correct password
    const refused = await api("POST", r.p("/v1/tokens"), { body: { email, password: PASSWORD } });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe("account_pending");

    const activated = await api("POST", r.p(`/v1/users/${user.id}/activate`), { token: r.token });
    expect(activated.status).toBe(200);
    expect(activated.body.status).toBe("active");
    const pair = await login(email, { prefix: r.prefix });

    const off = await api("POST", r.p(`/v1/users/${user.id}/deactivate`), { token: r.token });
    expect(off.body.status).toBe("disabled");
    const refresh = await api("POST", r.p("/v1/tokens/refresh"), { body: { refresh_token: pair.refresh_token } });
    expect(refresh.status).toBe(401);
    const me = await api("GET", r.p("/v1/users/me"), { token: pair.access_token });
    expect(me.status).toBe(401); // blacklisted at once
    const again = await api("POST", r.p("/v1/tokens"), { body: { email, password: PASSWORD } });
    expect(again.body.error.code).toBe("account_disabled");
  });
});

describe("domain authority tokens", () => {
  it("acts only on its own domain, and stops at once when revoked", async () => {
    const r = await realmWithAdmin();
    // Proven addresses: an authority manages only those (identities.test.ts has the unproven case).
    const mine = await signUpVerified(uniqueEmail("acme.test"), {}, r.prefix);
    const sub = await signUpVerified(uniqueEmail("eu.acme.test"), {}, r.prefix);
    const theirs = await signUpVerified(uniqueEmail("other.test"), {}, r.prefix);

    const created = await api("POST", r.p("/v1/domains/acme.test/authority-token"), { token: r.token, body: {} });
    expect(created.status).toBe(201);
    expect(created.body.domain).toBe("acme.test");
    const authority = created.body.token as string;
    // Its own typ and audience (api.md §2): never an access token to a standard resource server.
    expect(JSON.parse(atob((authority.split(".")[0] as string).replace(/-/g, "+").replace(/_/g, "/"))).typ).toBe(
      "authority+jwt",
    );
    expect(JSON.parse(atob((authority.split(".")[1] as string).replace(/-/g, "+").replace(/_/g, "/"))).aud).toBe(
      `${env.ISSUER}/authority`,
    );
    // Used as an access token it is refused.
    expect((await api("GET", r.p("/v1/users/me"), { token: authority })).body.error?.code).toBe("invalid_token");
    const stored = await env.DB.prepare("SELECT token_hash FROM authority_tokens WHERE id = ?")
      .bind(created.body.id)
      .first<{ token_hash: string }>();
    expect(stored?.token_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(stored?.token_hash).not.toBe(authority);

    const list = await api("GET", r.p("/v1/users"), { token: authority });
    expect(list.status).toBe(200);
    expect(list.body.users.map((u: { id: string }) => u.id)).toEqual([mine.id]);
    expect((await api("GET", r.p("/v1/users?domain=other.test"), { token: authority })).status).toBe(403);
    expect((await api("POST", r.p(`/v1/users/${mine.id}/deactivate`), { token: authority })).body.status).toBe(
      "disabled",
    );
    expect((await api("POST", r.p(`/v1/users/${mine.id}/activate`), { token: authority })).body.status).toBe("active");
    for (const [method, path, body] of [
      ["POST", `/v1/users/${theirs.id}/deactivate`, undefined],
      ["POST", `/v1/users/${sub.id}/deactivate`, undefined],
      ["PUT", `/v1/users/${mine.id}/roles`, { roles: ["admin"] }],
      ["PUT", "/v1/domains/acme.test", { rule: "allow" }],
      ["GET", "/v1/domains", undefined],
      ["POST", "/v1/domains/acme.test/authority-token", {}],
    ] as const) {
      const res = await api(method, r.p(path), { token: authority, body });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.body.error.code).toBe("forbidden");
    }
    // Not an access token: routes of a signed-in user refuse it.
    expect((await api("GET", r.p("/v1/users/me"), { token: authority })).status).toBe(401);
    // Another realm never accepts it.
    const other = await realmWithAdmin();
    expect((await api("GET", other.p("/v1/users"), { token: authority })).body.error.code).toBe("invalid_token");

    const revoked = await api("DELETE", r.p(`/v1/domains/acme.test/authority-token/${created.body.id}`), {
      token: r.token,
    });
    expect(revoked.status).toBe(204);
    const after = await api("GET", r.p("/v1/users"), { token: authority });
    expect(after.status).toBe(401);
    expect(after.body.error.code).toBe("token_revoked");
  });

  it("needs an admin's fresh token to mint", async () => {
    const r = await realmWithAdmin();
    const pair = await login("root@admin.test", { prefix: r.prefix });
    const refreshed = await api("POST", r.p("/v1/tokens/refresh"), { body: { refresh_token: pair.refresh_token } });
    const stale = await api("POST", r.p("/v1/domains/acme.test/authority-token"), {
      token: refreshed.body.access_token,
      body: {},
    });
    expect(stale.status).toBe(401);
    expect(stale.body.error.code).toBe("fresh_token_required");
  });

  it("a tampered authority token is rejected", async () => {
    const r = await realmWithAdmin();
    const created = await api("POST", r.p("/v1/domains/acme.test/authority-token"), { token: r.token, body: {} });
    const [h, p, s] = (created.body.token as string).split(".");
    const payload = JSON.parse(atob((p as string).replace(/-/g, "+").replace(/_/g, "/")));
    payload.domain = "other.test";
    const forged = `${h}.${btoa(JSON.stringify(payload)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}.${s}`;
    const res = await api("GET", r.p("/v1/users"), { token: forged });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("invalid_token");
  });
});

describe("realms", () => {
  it("admins of realm default create realms; users, rules and tokens never leak across realms", async () => {
    const { token } = await (async () => {
      // The default realm's admin: second-root@admin.test is reserved for this file's default-realm use.
      const existing = await env.DB.prepare(
        "SELECT id FROM users WHERE realm = 'default' AND email = 'second-root@admin.test'",
      ).first();
      if (!existing) await signUpVerified("second-root@admin.test");
      return { token: (await login("second-root@admin.test")).access_token as string };
    })();
    const id = `t${Date.now().toString(36)}`;
    const made = await api("PUT", `/v1/realms/${id}`, {
      token,
      body: { registration: "open", approval_required: false, captcha_required: false },
    });
    expect(made.status).toBe(200);
    expect(made.body).toMatchObject({ id, registration: "open", approval_required: false });
    const listed = await api("GET", "/v1/realms", { token });
    expect(listed.body.realms.map((x: { id: string }) => x.id)).toEqual(expect.arrayContaining(["default", id]));

    // The same email in two realms is two users.
    const email = uniqueEmail();
    const a = await signUp(email);
    const b = await signUp(email, {}, `/v1/realms/${id}`);
    expect(a.id).not.toBe(b.id);
    expect(b.realm).toBe(id);
    // A token of realm default is invalid on the other realm.
    const pair = await login(email);
    const cross = await api("GET", `/v1/realms/${id}/users/me`, { token: pair.access_token });
    expect(cross.status).toBe(401);
    expect(cross.body.error.code).toBe("invalid_token");
    // An admin of another realm cannot manage realms.
    const r = await realmWithAdmin();
    const denied = await api("GET", r.p("/v1/realms"), { token: r.token });
    expect(denied.status).toBe(403);
    // Without a token the answer is about the token, in any realm (api.md §2).
    const anonymous = await api("GET", r.p("/v1/realms"));
    expect({ status: anonymous.status, code: anonymous.body.error.code }).toEqual({
      status: 401,
      code: "missing_token",
    });
    // Unknown realm.
    const unknown = await api("POST", "/v1/realms/nope-nope/users", {
      body: { email, password: PASSWORD, full_name: "x" },
    });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("realm_not_found");
    const badName = await api("PUT", "/v1/realms/Bad_Name", {
      token,
      body: { registration: "open", approval_required: false, captcha_required: false },
    });
    expect(badName.status).toBe(400);
  });
});

describe("admin-created users, approval notices and captcha", () => {
  const HOOK = { NOTIFY_WEBHOOK_URL: "https://hooks.test/notify", NOTIFY_WEBHOOK_SECRET: "webhook-secret-for-tests" };
  const received = async () =>
    (await (await env.DOUBLE.fetch("http://double/__double/received")).json()) as {
      url: string;
      headers: Record<string, string>;
      body: string;
    }[];
  const FAILING_HOOK = { ...HOOK, NOTIFY_WEBHOOK_URL: "https://fail.hooks.test/notify" };

  it("a logged-out admin's access token creates nobody: 401 token_revoked, no row", async () => {
    const r = await realmWithAdmin();
    expect((await api("POST", r.p("/v1/logout"), { token: r.token, body: {} })).status).toBe(204);
    const email = uniqueEmail();
    const res = await api("POST", r.p("/v1/users"), {
      token: r.token,
      body: { email, password: PASSWORD, full_name: "Not Made" },
    });
    expect({ status: res.status, code: res.body.error?.code }).toEqual({ status: 401, code: "token_revoked" });
    const row = await env.DB.prepare("SELECT count(*) AS n FROM users WHERE realm = ? AND email = ?")
      .bind(r.realm, email)
      .first<{ n: number }>();
    expect(row?.n).toBe(0);
  });

  it("an admin creates an active user; without a password a welcome code is sent, and an undelivered one leaves nothing", async () => {
    const r = await realmWithAdmin({ registration: "closed", approval_required: true });
    const withPassword = await api("POST", r.p("/v1/users"), {
      token: r.token,
      body: { email: uniqueEmail(), password: PASSWORD, full_name: "Made", roles: ["user", "support"] },
    });
    expect(withPassword.status).toBe(201);
    expect(withPassword.body).toMatchObject({ source: "admin", status: "active", roles: ["user", "support"] });

    const email = uniqueEmail();
    const welcomed = await apiWithEnv(HOOK, "POST", r.p("/v1/users"), {
      token: r.token,
      body: { email, full_name: "Welcome" },
    });
    expect(welcomed.status).toBe(201);
    const hook = (await received()).find((x) => x.url.startsWith("https://hooks.test/") && x.body.includes(email));
    const payload = JSON.parse(hook?.body ?? "{}");
    expect(payload).toMatchObject({ type: "welcome", channel: "email", to: email, realm: r.realm });
    expect(payload.code).toMatch(/^\d{8}$/);
    // The code sets the first password.
    const set = await api("PUT", r.p("/v1/users/reset"), {
      body: {
        email,
        code: payload.code,
        password: "a brand new password",
        password_confirmation: "a brand new password",
      },
    });
    expect(set.status).toBe(204);
    await login(email, { prefix: r.prefix, password: "a brand new password" });

    const lost = uniqueEmail();
    const failed = await apiWithEnv(FAILING_HOOK, "POST", r.p("/v1/users"), {
      token: r.token,
      body: { email: lost, full_name: "Lost" },
    });
    expect(failed.status).toBe(502);
    expect(failed.body.error.code).toBe("delivery_failed");
    const row = await env.DB.prepare("SELECT id FROM users WHERE realm = ? AND email = ?").bind(r.realm, lost).first();
    expect(row).toBeNull();
  });

  it("a sign-up awaiting approval notifies the realm's admins", async () => {
    const r = await realmWithAdmin({ approval_required: true });
    const email = uniqueEmail();
    const res = await apiWithEnv(HOOK, "POST", r.p("/v1/users"), {
      body: { email, password: PASSWORD, full_name: "Waiting" },
    });
    expect(res.status).toBe(201);
    expect(res.body.status).toBe("pending");
    const notices = (await received()).map((x) => JSON.parse(x.body)).filter((b) => b.type === "approval_needed");
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatchObject({ channel: "email", to: "root@admin.test", realm: r.realm, user_id: res.body.id });
  });

  it("captcha: required when TURNSTILE_SECRET is set; missing or rejected 400; siteverify down 503", async () => {
    const secret = { TURNSTILE_SECRET: "1x0000000000000000000000000000000AA" };
    const body = (extra: Record<string, unknown>) => ({
      email: uniqueEmail(),
      password: PASSWORD,
      full_name: "C",
      ...extra,
    });
    const missing = await apiWithEnv(secret, "POST", "/v1/users", { body: body({}) });
    expect(missing.status).toBe(400);
    expect(missing.body.error.code).toBe("captcha_failed");
    const rejected = await apiWithEnv(secret, "POST", "/v1/users", { body: body({ captcha_token: "bad-token" }) });
    expect(rejected.body.error.code).toBe("captcha_failed");
    const ok = await apiWithEnv(secret, "POST", "/v1/users", {
      body: body({ captcha_token: "good-token" }),
      headers: { "CF-Connecting-IP": "203.0.113.7" },
    });
    expect(ok.status).toBe(201);
    const call = (await received()).find((x) => x.url.includes("siteverify") && x.body.includes("good-token"));
    const form = new URLSearchParams(call?.body ?? "");
    expect(form.get("secret")).toBe(secret.TURNSTILE_SECRET);
    expect(form.get("remoteip")).toBe("203.0.113.7");
    const down = await apiWithEnv(secret, "POST", "/v1/users", { body: body({ captcha_token: "down-token" }) });
    expect(down.status).toBe(503);
    expect(down.body.error.code).toBe("captcha_unavailable");
  });

  it("a realm that requires captcha without a secret answers 503; with one it checks", async () => {
    const r = await realmWithAdmin({ captcha_required: true });
    const res = await api("POST", r.p("/v1/users"), {
      body: { email: uniqueEmail(), password: PASSWORD, full_name: "C" },
    });
    expect(res.status).toBe(503);
    expect(res.body.error.code).toBe("captcha_unavailable");
    const none = await apiWithEnv({ TURNSTILE_SECRET: "s" }, "POST", r.p("/v1/users"), {
      body: { email: uniqueEmail(), password: PASSWORD, full_name: "C" },
    });
    expect(none.body.error.code).toBe("captcha_failed");
  });
});
