import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { domainAndParents, effectiveRule, registrationDecision } from "../src/services/domains";
import {
  api,
  claimsOf,
  createRealm,
  login,
  newSession,
  PASSWORD,
  signTestToken,
  signUp,
  signUpVerified,
  uniqueEmail,
} from "./helpers";

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

/** A domain no other test uses. */
const uniqueDomain = (label = "d") =>
  `${label}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 7)}.test`;

const rules = (entries: [string, "allow" | "block"][]) => new Map(entries);

describe("domainAndParents", () => {
  it("lists the domain and each parent, most specific first", () => {
    expect(domainAndParents("a.mail.example.com")).toEqual([
      "a.mail.example.com",
      "mail.example.com",
      "example.com",
      "com",
    ]);
    expect(domainAndParents("example.com")).toEqual(["example.com", "com"]);
    expect(domainAndParents("localhost")).toEqual(["localhost"]);
  });
});

describe("effectiveRule", () => {
  it("no rule is null", () => {
    expect(effectiveRule("example.com", rules([]))).toBeNull();
    expect(effectiveRule("example.com", rules([["other.com", "block"]]))).toBeNull();
  });

  it("a rule on a parent covers subdomains", () => {
    const r = rules([["example.com", "block"]]);
    expect(effectiveRule("example.com", r)).toBe("block");
    expect(effectiveRule("mail.example.com", r)).toBe("block");
    expect(effectiveRule("a.b.c.example.com", r)).toBe("block");
  });

  it("matches whole labels only", () => {
    const r = rules([["example.com", "block"]]);
    expect(effectiveRule("badexample.com", r)).toBeNull();
    expect(effectiveRule("example.com.evil.test", r)).toBeNull();
  });

  it("the most specific rule wins, whatever the insertion order", () => {
    const a = rules([
      ["corp.test", "block"],
      ["good.corp.test", "allow"],
      ["bad.good.corp.test", "block"],
    ]);
    const b = rules([
      ["bad.good.corp.test", "block"],
      ["good.corp.test", "allow"],
      ["corp.test", "block"],
    ]);
    for (const r of [a, b]) {
      expect(effectiveRule("corp.test", r)).toBe("block");
      expect(effectiveRule("x.corp.test", r)).toBe("block");
      expect(effectiveRule("good.corp.test", r)).toBe("allow");
      expect(effectiveRule("mail.good.corp.test", r)).toBe("allow");
      expect(effectiveRule("bad.good.corp.test", r)).toBe("block");
      expect(effectiveRule("x.bad.good.corp.test", r)).toBe("block");
    }
  });

  it("a rule on a TLD covers everything under it", () => {
    expect(effectiveRule("anything.example", rules([["example", "block"]]))).toBe("block");
  });
});

describe("registrationDecision", () => {
  it.each([
    ["open", null, "ok"],
    ["open", "allow", "ok"],
    ["open", "block", "domain_not_allowed"],
    ["allowlist", null, "domain_not_allowed"],
    ["allowlist", "allow", "ok"],
    ["allowlist", "block", "domain_not_allowed"],
    ["closed", null, "registration_closed"],
    ["closed", "allow", "registration_closed"],
    ["closed", "block", "registration_closed"],
  ] as const)("%s realm, rule %s → %s", (mode, rule, expected) => {
    expect(registrationDecision(mode, rule)).toBe(expected);
  });

  it("an admin creating a user is not held back by the realm mode", () => {
    expect(registrationDecision("closed", null, { byAdmin: true })).toBe("ok");
    expect(registrationDecision("allowlist", null, { byAdmin: true })).toBe("ok");
  });
});

describe("domain routes", () => {
  let admin: string;
  let userToken: string;

  beforeAll(async () => {
    // The bootstrap admin of this file (storage is per test file).
    await signUpVerified("root@admin.test");
    admin = (await login("root@admin.test")).access_token;
    userToken = (await newSession()).pair.access_token;
  });

  it("PUT, GET, PUT again, DELETE", async () => {
    const domain = uniqueDomain("crud");
    const put = await api("PUT", `/v1/domains/${domain}`, { token: admin, body: { rule: "block" } });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ domain, rule: "block", created_at: expect.stringMatching(ISO) });

    const list = await api("GET", "/v1/domains", { token: admin });
    expect(list.status).toBe(200);
    expect(list.body.rules).toContainEqual(put.body);

    const again = await api("PUT", `/v1/domains/${domain}`, { token: admin, body: { rule: "allow" } });
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ domain, rule: "allow", created_at: put.body.created_at });
    const listed = (await api("GET", "/v1/domains", { token: admin })).body.rules.filter(
      (r: any) => r.domain === domain,
    );
    expect(listed).toEqual([again.body]);

    const del = await api("DELETE", `/v1/domains/${domain}`, { token: admin });
    expect(del.status).toBe(204);
    expect(del.text).toBe("");
    const gone = (await api("GET", "/v1/domains", { token: admin })).body.rules.filter((r: any) => r.domain === domain);
    expect(gone).toEqual([]);

    const delAgain = await api("DELETE", `/v1/domains/${domain}`, { token: admin });
    expect(delAgain.status).toBe(404);
    expect(delAgain.body.error.code).toBe("not_found");
  });

  it("domains are normalised to lower case", async () => {
    const domain = uniqueDomain("case");
    const put = await api("PUT", `/v1/domains/${domain.toUpperCase()}`, { token: admin, body: { rule: "block" } });
    expect(put.status).toBe(200);
    expect(put.body.domain).toBe(domain);
    const res = await api("POST", "/v1/users", { body: { email: `a@${domain}`, password: PASSWORD, full_name: "A" } });
    expect(res.status).toBe(403);
  });

  it("bad domains and rules are 400 validation_failed", async () => {
    for (const bad of ["not_a_domain", "nodot", "-lead.test", "a..b.test", `${"a".repeat(64)}.test`]) {
      const res = await api("PUT", `/v1/domains/${encodeURIComponent(bad)}`, { token: admin, body: { rule: "block" } });
      expect(res.status, bad).toBe(400);
      expect(res.body.error.code).toBe("validation_failed");
      expect(Object.keys(res.body.error.fields)).toEqual(["domain"]);
    }
    const res = await api("PUT", `/v1/domains/${uniqueDomain()}`, { token: admin, body: { rule: "maybe" } });
    expect(res.status).toBe(400);
    expect(Object.keys(res.body.error.fields)).toEqual(["rule"]);
  });

  it("non-admins get 403 forbidden, anonymous callers 401", async () => {
    const domain = uniqueDomain("forbid");
    for (const [method, path, body] of [
      ["GET", "/v1/domains", undefined],
      ["PUT", `/v1/domains/${domain}`, { rule: "allow" }],
      ["DELETE", `/v1/domains/${domain}`, undefined],
    ] as const) {
      const res = await api(method, path, { token: userToken, body });
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.body.error.code).toBe("forbidden");
      const anon = await api(method, path, { body });
      expect(anon.status).toBe(401);
      expect(anon.body.error.code).toBe("missing_token");
    }
    // Nothing was written.
    const row = await env.DB.prepare("SELECT * FROM domain_rules WHERE domain = ?").bind(domain).first();
    expect(row).toBeNull();
  });

  it("a token forged with admin roles does not make an admin (D1 decides)", async () => {
    const { pair, user } = await newSession();
    const c = claimsOf(pair.access_token);
    const forged = await signTestToken({ ...c, roles: ["user", "admin"] });
    expect(user.roles).toEqual(["user"]);
    const res = await api("GET", "/v1/domains", { token: forged });
    expect(res.status).toBe(403);
  });

  it("a blocked domain refuses sign-up with 403 domain_not_allowed", async () => {
    const domain = uniqueDomain("blocked");
    expect((await api("PUT", `/v1/domains/${domain}`, { token: admin, body: { rule: "block" } })).status).toBe(200);
    const res = await api("POST", "/v1/users", {
      body: { email: `Someone@${domain.toUpperCase()}`, password: PASSWORD, full_name: "B" },
    });
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ error: { code: "domain_not_allowed", message: "You are not allowed to register" } });
    const row = await env.DB.prepare("SELECT id FROM users WHERE email = ?").bind(`someone@${domain}`).first();
    expect(row).toBeNull();

    // Removing the rule lets them in.
    expect((await api("DELETE", `/v1/domains/${domain}`, { token: admin })).status).toBe(204);
    expect(
      (await api("POST", "/v1/users", { body: { email: `someone@${domain}`, password: PASSWORD, full_name: "B" } }))
        .status,
    ).toBe(201);
  });

  it("blocking a domain does not lock out users who already signed up", async () => {
    const domain = uniqueDomain("existing");
    const email = `early@${domain}`;
    await signUp(email);
    expect((await api("PUT", `/v1/domains/${domain}`, { token: admin, body: { rule: "block" } })).status).toBe(200);
    const pair = await login(email);
    expect(pair.user.email).toBe(email);
  });

  it("a rule on a parent covers subdomains, by whole labels", async () => {
    const domain = uniqueDomain("parent");
    expect((await api("PUT", `/v1/domains/${domain}`, { token: admin, body: { rule: "block" } })).status).toBe(200);
    for (const email of [`a@mail.${domain}`, `a@x.y.${domain}`]) {
      const res = await api("POST", "/v1/users", { body: { email, password: PASSWORD, full_name: "Sub" } });
      expect(res.status, email).toBe(403);
      expect(res.body.error.code).toBe("domain_not_allowed");
    }
    // Same suffix, different label: not covered.
    const res = await api("POST", "/v1/users", {
      body: { email: `a@x${domain}`, password: PASSWORD, full_name: "Other" },
    });
    expect(res.status).toBe(201);
  });

  it("the most specific rule wins: block corp, allow good.corp", async () => {
    const corp = uniqueDomain("corp");
    expect((await api("PUT", `/v1/domains/${corp}`, { token: admin, body: { rule: "block" } })).status).toBe(200);
    expect((await api("PUT", `/v1/domains/good.${corp}`, { token: admin, body: { rule: "allow" } })).status).toBe(200);
    const signUpAt = (domain: string) =>
      api("POST", "/v1/users", { body: { email: uniqueEmail(domain), password: PASSWORD, full_name: "Corp" } });
    expect((await signUpAt(`good.${corp}`)).status).toBe(201);
    expect((await signUpAt(`team.good.${corp}`)).status).toBe(201);
    expect((await signUpAt(corp)).status).toBe(403);
    expect((await signUpAt(`bad.${corp}`)).status).toBe(403);
  });

  it("an admin token of realm default does not manage another realm", async () => {
    const realm = await createRealm();
    const res = await api("GET", `/v1/realms/${realm}/domains`, { token: admin });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("invalid_token");
  });
});

describe("realm registration modes (separate realms)", () => {
  /** A realm with its own bootstrap admin, then switched to `mode`. */
  async function realmWithAdmin(mode: "open" | "allowlist" | "closed") {
    const realm = await createRealm();
    const prefix = `/v1/realms/${realm}`;
    await signUpVerified("root@admin.test", {}, prefix);
    const token = (await login("root@admin.test", { prefix })).access_token;
    await env.DB.prepare("UPDATE realms SET registration = ? WHERE id = ?").bind(mode, realm).run();
    const signUpAt = (email: string) =>
      api("POST", `${prefix}/users`, { body: { email, password: PASSWORD, full_name: "Mode" } });
    const rule = async (domain: string, r: "allow" | "block") => {
      const res = await api("PUT", `${prefix}/domains/${domain}`, { token, body: { rule: r } });
      expect(res.status).toBe(200);
    };
    return { realm, prefix, token, signUpAt, rule };
  }

  it("rules belong to their realm", async () => {
    const a = await realmWithAdmin("open");
    const domain = uniqueDomain("realmrule");
    await a.rule(domain, "block");
    expect((await a.signUpAt(`x@${domain}`)).status).toBe(403);
    // The default realm is unaffected.
    expect(
      (await api("POST", "/v1/users", { body: { email: `x@${domain}`, password: PASSWORD, full_name: "D" } })).status,
    ).toBe(201);
    const listed = await api("GET", `${a.prefix}/domains`, { token: a.token });
    expect(listed.body.rules).toEqual([{ domain, rule: "block", created_at: expect.stringMatching(ISO) }]);
  });

  it("allowlist: only allowed domains (and their subdomains) register", async () => {
    const r = await realmWithAdmin("allowlist");
    const allowed = uniqueDomain("allowed");
    await r.rule(allowed, "allow");
    await r.rule(`no.${allowed}`, "block");

    const outsider = await r.signUpAt(uniqueEmail("elsewhere.test"));
    expect(outsider.status).toBe(403);
    expect(outsider.body.error).toEqual({ code: "domain_not_allowed", message: "You are not allowed to register" });

    expect((await r.signUpAt(uniqueEmail(allowed))).status).toBe(201);
    expect((await r.signUpAt(uniqueEmail(`dept.${allowed}`))).status).toBe(201);
    const blocked = await r.signUpAt(uniqueEmail(`no.${allowed}`));
    expect(blocked.status).toBe(403);
    expect(blocked.body.error.code).toBe("domain_not_allowed");
  });

  it("closed: nobody registers (403 registration_closed), existing users still log in", async () => {
    const r = await realmWithAdmin("open");
    const allowed = uniqueDomain("closedallow");
    await r.rule(allowed, "allow");
    const earlyEmail = uniqueEmail(allowed);
    expect((await r.signUpAt(earlyEmail)).status).toBe(201);

    await env.DB.prepare("UPDATE realms SET registration = 'closed' WHERE id = ?").bind(r.realm).run();
    for (const email of [uniqueEmail("example.com"), uniqueEmail(allowed)]) {
      const res = await r.signUpAt(email);
      expect(res.status).toBe(403);
      expect(res.body.error).toEqual({ code: "registration_closed", message: "Registration is closed" });
    }
    const pair = await login(earlyEmail, { prefix: r.prefix });
    expect(pair.user.realm).toBe(r.realm);

    // An admin may still create users in a closed realm.
    const byAdmin = await api("POST", `${r.prefix}/users`, {
      token: r.token,
      body: { email: uniqueEmail(), password: PASSWORD, full_name: "Made By Admin" },
    });
    expect(byAdmin.status).toBe(201);
    expect(byAdmin.body.source).toBe("admin");
  });

  it("the default realm stays open throughout", async () => {
    const row = await env.DB.prepare("SELECT registration FROM realms WHERE id = 'default'").first<{
      registration: string;
    }>();
    expect(row?.registration).toBe("open");
  });
});
