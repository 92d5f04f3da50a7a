import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { ERRORS } from "../src/errors";
import worker, { app } from "../src/index";
import { api, configuredKey, otherKey, PASSWORD, signUp, uniqueEmail } from "./helpers";

/** Calls the worker's default export with a modified environment. */
async function withEnv(overrides: Record<string, unknown>, request: Request, drop: string[] = []) {
  const modified: Record<string, unknown> = { ...env, ...overrides };
  for (const key of drop) delete modified[key];
  const ctx = createExecutionContext();
  const res = await worker.fetch(request as Parameters<typeof worker.fetch>[0], modified as unknown as typeof env, ctx);
  await waitOnExecutionContext(ctx);
  const text = await res.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body, text };
}

const health = (overrides: Record<string, unknown>, drop: string[] = []) =>
  withEnv(overrides, new Request("https://registry.test/health"), drop);

/** Asserts a 503 config_invalid that names `setting` and leaks none of `secrets`. */
function expectMisconfigured(
  res: { status: number; body: any; text: string },
  setting: string,
  secrets: string[] = [],
) {
  expect(res.status).toBe(503);
  expect(res.body.error.code).toBe("config_invalid");
  expect(res.body.error.message).toContain(setting);
  for (const secret of secrets) expect(res.text).not.toContain(secret);
  expect(res.text).not.toMatch(/\bat \S+:\d+:\d+/); // no stack
}

describe("GET /health", () => {
  it("is 200 {status: ok} when configured", async () => {
    const res = await api("GET", "/health");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
  });

  it("JWT_PRIVATE_KEYS that is not JSON: 503 naming the setting, not its value", async () => {
    const value = "not json at all sekrit-value-123";
    const res = await health({ JWT_PRIVATE_KEYS: value });
    expectMisconfigured(res, "JWT_PRIVATE_KEYS", [value, "sekrit-value-123"]);
    expect(res.body.problems).toEqual([expect.stringMatching(/^JWT_PRIVATE_KEYS: /)]);
  });

  it("JWT_PRIVATE_KEYS unset", async () => {
    const res = await health({}, ["JWT_PRIVATE_KEYS"]);
    expectMisconfigured(res, "JWT_PRIVATE_KEYS");
  });

  it("ISSUER missing or not a URL", async () => {
    expectMisconfigured(await health({}, ["ISSUER"]), "ISSUER");
    const res = await health({ ISSUER: "not a url" });
    expectMisconfigured(res, "ISSUER");
  });

  it("a JWT_PRIVATE_KEYS of the wrong shape never appears in the body", async () => {
    const secretD = "PRIVATE-D-VALUE-that-must-not-leak";
    const value = JSON.stringify([{ kty: "RSA", kid: "k", n: "abc", e: "AQAB", d: secretD }]);
    const res = await health({ JWT_PRIVATE_KEYS: value });
    expectMisconfigured(res, "JWT_PRIVATE_KEYS", [value, secretD, "AQAB"]);
  });

  it("a JWT_PRIVATE_KEYS whose key cannot be imported never appears in the body", async () => {
    const secretD = "ZZZZsecretDZZZZ";
    const value = JSON.stringify([{ kty: "EC", crv: "P-256", kid: "bad", x: "AAAA", y: "BBBB", d: secretD }]);
    const res = await health({ JWT_PRIVATE_KEYS: value });
    expectMisconfigured(res, "JWT_PRIVATE_KEYS", [value, secretD, "AAAA", "BBBB"]);
  });

  it("two keys with the same kid", async () => {
    const key = configuredKey();
    const value = JSON.stringify([key, { ...otherKey(), kid: key.kid }]);
    const res = await health({ JWT_PRIVATE_KEYS: value });
    expectMisconfigured(res, "JWT_PRIVATE_KEYS", [key.d as string, otherKey().d as string]);
  });

  it("a real key set never leaks through a neighbouring problem", async () => {
    const pepper = "tooshort-pep";
    const res = await health({ PASSWORD_PEPPER: pepper });
    expectMisconfigured(res, "PASSWORD_PEPPER", [pepper, configuredKey().d as string]);
  });

  it("other settings are checked too", async () => {
    expectMisconfigured(await health({ ACCESS_TTL_SECONDS: "abc" }), "ACCESS_TTL_SECONDS");
    expectMisconfigured(await health({ ENVIRONMENT: "prod" }), "ENVIRONMENT");
    const secretUrl = "https://hooks.test/path-with-token-abc123";
    expectMisconfigured(await health({ NOTIFY_WEBHOOK_URL: secretUrl }), "NOTIFY_WEBHOOK_SECRET", [secretUrl]);
    // Receivers check the webhook's signature with this secret: a short one is refused, without echoing it.
    const short = "hook-secret-123";
    expectMisconfigured(
      await health({ NOTIFY_WEBHOOK_URL: "https://hooks.test/n", NOTIFY_WEBHOOK_SECRET: short }),
      "NOTIFY_WEBHOOK_SECRET",
      [short],
    );
  });

  it("the unchanged env through the same door is healthy (the harness is not what fails)", async () => {
    const res = await health({});
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
  });
});

describe("broken config refuses to mint tokens", () => {
  let email: string;
  beforeAll(async () => {
    email = uniqueEmail();
    await signUp(email);
  });

  const loginRequest = () =>
    new Request("https://registry.test/v1/tokens", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ email, password: PASSWORD }),
    });

  it.each([
    ["JWT_PRIVATE_KEYS not JSON", { JWT_PRIVATE_KEYS: "not json" }, [] as string[], "JWT_PRIVATE_KEYS"],
    [
      "JWT_PRIVATE_KEYS unimportable",
      { JWT_PRIVATE_KEYS: JSON.stringify([{ kty: "EC", crv: "P-256", kid: "x", x: "AA", y: "BB", d: "CCsecret" }]) },
      [],
      "JWT_PRIVATE_KEYS",
    ],
    ["ISSUER missing", {}, ["ISSUER"], "ISSUER"],
  ])("login with %s is 503 config_invalid", async (_label, overrides, drop, setting) => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const res = await withEnv(overrides, loginRequest(), drop);
    expectMisconfigured(res, setting, ["CCsecret", PASSWORD]);
    expect(Object.keys(res.body)).toEqual(["error"]);
    expect(res.text).not.toContain("access_token");
    expect(res.text).not.toContain("refresh_token");
    // Logged, naming the setting, never its value or the password.
    const lines = logged.mock.calls.map((c) => c.map(String).join(" "));
    logged.mockRestore();
    expect(lines.some((l) => l.includes(setting))).toBe(true);
    for (const l of lines) {
      expect(l).not.toContain("CCsecret");
      expect(l).not.toContain(PASSWORD);
    }
  });

  it("public tokens and JWKS are refused as well", async () => {
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const pub = await withEnv(
      { JWT_PRIVATE_KEYS: "[]" },
      new Request("https://registry.test/v1/tokens/public", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: "{}",
      }),
    );
    expectMisconfigured(pub, "JWT_PRIVATE_KEYS");
    const jwks = await withEnv({ JWT_PRIVATE_KEYS: "[]" }, new Request("https://registry.test/.well-known/jwks.json"));
    expectMisconfigured(jwks, "JWT_PRIVATE_KEYS");
    expect(logged).toHaveBeenCalled();
    logged.mockRestore();
  });

  it("with the real env the same login works", async () => {
    const res = await withEnv({}, loginRequest());
    expect(res.status).toBe(200);
    expect(typeof res.body.access_token).toBe("string");
  });
});

describe("unexpected failures", () => {
  // v1.1 (docs/api.md §1, docs/reliability.md): a D1 that fails is a store fault a retry may not
  // meet again, so 503 temporarily_unavailable with Retry-After; still no SQL, stack or message.
  it("a failing D1 is 503 temporarily_unavailable: no SQL, no stack, no message", async () => {
    const leak = "SELECT password_hash FROM users -- D1_ERROR: disk on fire";
    const brokenDb = {
      prepare() {
        throw new Error(leak);
      },
      batch() {
        throw new Error(leak);
      },
      exec() {
        throw new Error(leak);
      },
    };
    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    const res = await withEnv(
      { DB: brokenDb },
      new Request("https://registry.test/v1/users", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Request-Id": "trace-500" },
        body: JSON.stringify({ email: uniqueEmail(), password: PASSWORD, full_name: "Boom" }),
      }),
    );
    expect(res.status).toBe(503);
    expect(res.body).toEqual({
      error: {
        code: "temporarily_unavailable",
        message: "The service is temporarily unavailable. Please try again shortly",
      },
    });
    expect(res.headers.get("Retry-After")).toBe("1");
    expect(res.text).not.toContain("SELECT");
    expect(res.text).not.toContain("disk on fire");
    expect(res.headers.get("X-Request-Id")).toBe("trace-500");
    expect(res.headers.get("Cache-Control")).toBe("no-store");
    // The log, not the wire, gets the details, under the request id.
    expect(
      logged.mock.calls.map((c) => String(c[0])).some((l) => l.includes("trace-500") && l.includes("disk on fire")),
    ).toBe(true);
    logged.mockRestore();
  });
});

const EXPECTED_PATHS: Record<string, string[]> = {
  "/v1/users": ["post"],
  "/v1/users/me": ["get"],
  "/v1/users/{id}": ["get"],
  "/v1/tokens": ["post"],
  "/v1/tokens/public": ["post"],
  "/v1/tokens/refresh": ["post"],
  "/v1/logout": ["post"],
  "/v1/devices": ["get"],
  "/v1/devices/current": ["put"],
  "/v1/devices/{device_id}": ["delete"],
  "/v1/domains": ["get"],
  "/v1/domains/{domain}": ["put", "delete"],
  "/health": ["get"],
  "/.well-known/jwks.json": ["get"],
};

describe("GET /openapi.json", () => {
  let doc: any;
  beforeAll(async () => {
    const res = await api("GET", "/openapi.json");
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toMatch(/^application\/json/);
    doc = res.body;
  });

  it("is OpenAPI 3.1", () => {
    expect(doc.openapi).toMatch(/^3\.1\./);
    expect(doc.info).toMatchObject({ title: "user-registry", version: expect.any(String) });
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
  });

  it("lists the routes of docs/api.md with their methods", () => {
    for (const [path, methods] of Object.entries(EXPECTED_PATHS)) {
      expect(doc.paths, path).toHaveProperty([path]);
      for (const m of methods) expect(doc.paths[path], `${m} ${path}`).toHaveProperty([m]);
    }
  });

  it("lists every route the app actually serves", () => {
    const served = app.routes
      .filter((r) => r.method !== "ALL" && r.path !== "/openapi.json" && r.path !== "/docs")
      .map((r) => ({ method: r.method.toLowerCase(), path: r.path.replace(/:(\w+)/g, "{$1}") }));
    expect(served.length).toBeGreaterThanOrEqual(Object.values(EXPECTED_PATHS).flat().length);
    for (const { method, path } of served) {
      expect(doc.paths?.[path]?.[method], `${method.toUpperCase()} ${path} is not in /openapi.json`).toBeDefined();
    }
  });

  it("marks authenticated routes with bearer security and public ones without", () => {
    expect(doc.paths["/v1/users/me"].get.security).toEqual([{ bearer: [] }]);
    expect(doc.paths["/v1/domains/{domain}"].put.security).toEqual([{ bearer: [] }]);
    // An optional token (a public token, or an admin's): the optional-token form.
    expect(doc.paths["/v1/tokens"].post.security).toEqual([{}, { bearer: [] }]);
    expect(doc.paths["/v1/users"].post.security).toEqual([{}, { bearer: [] }]);
    expect(doc.paths["/health"].get.security).toEqual([]);
    expect(doc.paths["/v1/tokens/refresh"].post.security).toEqual([]);
  });

  it("every operation has a unique operationId, a summary, and its errors by status with their codes", () => {
    const ids = new Set<string>();
    for (const [path, ops] of Object.entries<any>(doc.paths)) {
      for (const [method, op] of Object.entries<any>(ops)) {
        const where = `${method} ${path}`;
        expect(op.operationId, where).toMatch(/^[a-zA-Z]+$/);
        expect(ids.has(op.operationId), `${where}: ${op.operationId} twice`).toBe(false);
        ids.add(op.operationId);
        expect(op.summary, where).toBeTruthy();
        expect(Array.isArray(op.security), `${where}: security`).toBe(true);
        const errors = Object.entries<any>(op.responses).filter(([status]) => Number(status) >= 400);
        expect(
          errors.map(([s]) => s),
          where,
        ).toContain("500");
        for (const [status, r] of errors) {
          const codes: string[] | undefined =
            r.content["application/json"].schema.properties?.error.properties.code.enum;
          // A route may describe one of its error statuses itself (GET /health's 503 names the problems).
          if (!codes && path.endsWith("/health")) continue;
          expect(codes?.length, `${where} ${status}`).toBeGreaterThan(0);
          // Each code is documented under the status it is answered with.
          for (const code of codes ?? [])
            expect(String(ERRORS[code as keyof typeof ERRORS][0]), `${where} ${code}`).toBe(status);
        }
        for (const [status, r] of Object.entries<any>(op.responses)) {
          expect(r.headers?.["X-Request-Id"], `${where} ${status}`).toBeDefined();
          if (status === "401") expect(r.headers["WWW-Authenticate"], where).toBeDefined();
          if (status === "429") expect(r.headers["Retry-After"], where).toBeDefined();
        }
        if (op.requestBody)
          expect(
            errors.map(([s]) => s),
            where,
          ).toEqual(expect.arrayContaining(["400", "413", "415"]));
        if (op.security.some((s: object) => "bearer" in s) && op.security.length === 1) {
          expect(op.responses["401"].content["application/json"].schema.properties.error.properties.code.enum).toEqual(
            expect.arrayContaining(["missing_token", "invalid_token", "token_expired", "token_revoked"]),
          );
        }
      }
    }
    expect(doc.paths["/v1/tokens"].post.responses["429"].headers["Retry-After"]).toEqual({
      $ref: "#/components/headers/Retry-After",
    });
    expect(Object.keys(doc.components.headers).sort()).toEqual([
      "Retry-After",
      "WWW-Authenticate",
      "X-D1-Bookmark",
      "X-Request-Id",
    ]);
  });

  it("every /v1 path also appears realm-prefixed, with the realm parameter and 404 realm_not_found", () => {
    for (const path of Object.keys(doc.paths).filter((p) => p.startsWith("/v1/") && !p.startsWith("/v1/realms"))) {
      const copy = doc.paths[`/v1/realms/{realm}${path.slice(3)}`];
      expect(copy, path).toBeDefined();
      for (const [method, op] of Object.entries<any>(copy)) {
        expect(op.operationId).toBe(`${doc.paths[path][method].operationId}InRealm`);
        expect(op.parameters[0]).toMatchObject({ name: "realm", in: "path", required: true });
        expect(op.responses["404"].content["application/json"].schema.properties.error.properties.code.enum).toContain(
          "realm_not_found",
        );
      }
    }
  });

  it("names its server, formats, optional bodies, and the notifier's webhook", () => {
    expect(doc.servers).toEqual([{ url: "https://user-registry.test", description: expect.any(String) }]);
    expect(doc.components.schemas.User.properties.created_at.format).toBe("date-time");
    expect(doc.components.schemas.User.properties.email.format).toBe("email");
    expect(doc.components.schemas.SignUp.properties.email.format).toBe("email");
    // An empty body reads as {}: bodies whose every field is optional are not required.
    expect(doc.paths["/v1/tokens/public"].post.requestBody.required).toBe(false);
    expect(doc.paths["/v1/tokens"].post.requestBody.required).toBe(true);
    expect(doc.components.schemas.SignUp.required).not.toContain("password");
    expect(doc.webhooks.notification.post.requestBody.content["application/json"]).toBeDefined();
  });

  it("known paths with a wrong method are 405 here too", async () => {
    for (const path of ["/openapi.json", "/docs"]) {
      const res = await api("POST", path, { body: {} });
      expect(res.status, path).toBe(405);
      expect(res.body.error.code).toBe("method_not_allowed");
      expect(res.headers.get("Allow")).toBe("GET");
    }
  });
});

describe("discovery metadata (docs/api.md §14)", () => {
  for (const path of ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]) {
    it(`${path}: issuer equal to iss, jwks_uri, only true fields, cacheable`, async () => {
      const res = await api("GET", path);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        issuer: "https://user-registry.test",
        jwks_uri: "https://user-registry.test/.well-known/jwks.json",
        service_documentation: "https://user-registry.test/docs",
      });
      expect(res.headers.get("Cache-Control")).toMatch(/^public, max-age=\d+$/);
      // The keys it names are the ones the tokens are signed with.
      const jwks = await api("GET", new URL(res.body.jwks_uri).pathname);
      expect(jwks.body.keys[0].kid).toBe(configuredKey().kid);
    });
  }

  it("a realm prefix does not apply to the metadata (one issuer for every realm)", async () => {
    expect((await api("GET", "/v1/realms/default/.well-known/openid-configuration")).status).toBe(404);
  });
});

describe("GET /docs", () => {
  it("is an HTML page naming every path", async () => {
    const res = await api("GET", "/docs");
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toMatch(/^text\/html/);
    expect(res.text).toMatch(/^<!doctype html>/i);
    for (const path of Object.keys(EXPECTED_PATHS)) expect(res.text, path).toContain(path);
    expect(res.text).toContain("/openapi.json");
    // No scripts, and the CSP says so.
    expect(res.text).not.toMatch(/<script/i);
    expect(res.headers.get("Content-Security-Policy")).toContain("default-src 'none'");
    // The page's own policy and caching replace the defaults every response starts with.
    expect(res.headers.get("Content-Security-Policy")).toContain("style-src 'unsafe-inline'");
    expect(res.headers.get("Cache-Control")).toBe("public, max-age=300");
  });
});
