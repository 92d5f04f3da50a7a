import { describe, expect, it } from "vitest";
import { api, createRealm, login, PASSWORD, signUp, uniqueEmail } from "./helpers";

/** Asserts the one error shape of docs/api.md §1 and returns the error. */
function expectError(res: { status: number; body: any; headers: Headers }, status: number, code: string) {
  expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
  expect(Object.keys(res.body)).toEqual(["error"]);
  const keys = Object.keys(res.body.error).sort();
  expect(keys).toEqual(code === "validation_failed" ? ["code", "fields", "message"] : ["code", "message"]);
  expect(typeof res.body.error.message).toBe("string");
  expect(res.body.error.message.length).toBeGreaterThan(0);
  expect(res.headers.get("Content-Type")).toMatch(/^application\/json/);
  return res.body.error as { code: string; message: string; fields?: Record<string, string> };
}

/** A stream of `total` bytes in chunks, so the request carries no Content-Length. */
function streamOf(total: number, chunk = 4096, fill = " ") {
  const bytes = new TextEncoder().encode(fill.repeat(chunk));
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent >= total) return controller.close();
      const n = Math.min(chunk, total - sent);
      controller.enqueue(bytes.slice(0, n));
      sent += n;
    },
  });
}

/** A JSON object body of exactly `size` bytes. */
function jsonOfSize(size: number): string {
  const base = JSON.stringify({ pad: "" });
  return JSON.stringify({ pad: "x".repeat(size - base.length) });
}

const signUpBody = (over: Record<string, unknown> = {}) => ({
  email: uniqueEmail(),
  password: PASSWORD,
  full_name: "Err Test",
  ...over,
});

describe("415 unsupported_media_type", () => {
  it("refuses a body sent as text/plain", async () => {
    const res = await api("POST", "/v1/users", {
      raw: JSON.stringify(signUpBody()),
      headers: { "Content-Type": "text/plain" },
    });
    expectError(res, 415, "unsupported_media_type");
  });

  it("refuses a body with no content type at all", async () => {
    const res = await api("POST", "/v1/tokens/public", { raw: new TextEncoder().encode("{}") });
    expectError(res, 415, "unsupported_media_type");
  });

  it("refuses form-encoded bodies on login", async () => {
    const res = await api("POST", "/v1/tokens", {
      raw: "email=a%40b.test&password=12345678",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    });
    expectError(res, 415, "unsupported_media_type");
  });

  it("accepts application/json with a charset parameter", async () => {
    const res = await api("POST", "/v1/tokens/public", {
      raw: "{}",
      headers: { "Content-Type": "application/json; charset=utf-8" },
    });
    expect(res.status).toBe(201);
  });
});

describe("413 payload_too_large", () => {
  it("accepts exactly 16 KiB and refuses one byte more (with Content-Length)", async () => {
    const ok = await api("POST", "/v1/tokens/public", {
      raw: jsonOfSize(16 * 1024),
      headers: { "Content-Type": "application/json" },
    });
    expect(ok.status).toBe(201);

    const big = await api("POST", "/v1/tokens/public", {
      raw: jsonOfSize(16 * 1024 + 1),
      headers: { "Content-Type": "application/json" },
    });
    expectError(big, 413, "payload_too_large");
  });

  it("refuses a declared Content-Length over 16 KiB before reading", async () => {
    const res = await api("POST", "/v1/users", {
      headers: { "Content-Type": "application/json", "Content-Length": String(100 * 1024) },
      raw: jsonOfSize(100 * 1024),
    });
    expectError(res, 413, "payload_too_large");
  });

  it("refuses a streamed body over 16 KiB without Content-Length", async () => {
    const res = await api("POST", "/v1/tokens", {
      headers: { "Content-Type": "application/json" },
      raw: streamOf(64 * 1024),
    });
    expectError(res, 413, "payload_too_large");
  });

  it("accepts a small streamed body without Content-Length", async () => {
    const text = JSON.stringify({ device_id: "a".repeat(32) });
    const res = await api("POST", "/v1/tokens/public", {
      headers: { "Content-Type": "application/json" },
      raw: new ReadableStream<Uint8Array>({
        start(controller) {
          const bytes = new TextEncoder().encode(text);
          controller.enqueue(bytes.slice(0, 5));
          controller.enqueue(bytes.slice(5));
          controller.close();
        },
      }),
    });
    expect(res.status).toBe(201);
    expect(res.body.device_id).toBe("a".repeat(32));
  });

  it("checks the size before the media type", async () => {
    const res = await api("POST", "/v1/users", { raw: "x".repeat(20_000), headers: { "Content-Type": "text/plain" } });
    expectError(res, 413, "payload_too_large");
  });
});

describe("400 invalid_json and validation_failed", () => {
  it.each([
    ['{"email":', "truncated"],
    ["{email: 'a'}", "JS, not JSON"],
    ["[", "open bracket"],
    ['{"a":1}x', "trailing garbage"],
  ])("invalid_json for %s (%s)", async (raw) => {
    const res = await api("POST", "/v1/users", { raw, headers: { "Content-Type": "application/json" } });
    expectError(res, 400, "invalid_json");
  });

  it("names a short password", async () => {
    const res = await api("POST", "/v1/users", { body: signUpBody({ password: "short" }) });
    const err = expectError(res, 400, "validation_failed");
    expect(Object.keys(err.fields!)).toEqual(["password"]);
    expect(err.fields!.password).toMatch(/8/);
  });

  it("names a too-long password (over 128)", async () => {
    const res = await api("POST", "/v1/users", { body: signUpBody({ password: "p".repeat(129) }) });
    const err = expectError(res, 400, "validation_failed");
    expect(Object.keys(err.fields!)).toEqual(["password"]);
  });

  it("names a bad email", async () => {
    const res = await api("POST", "/v1/users", { body: signUpBody({ email: "not-an-email" }) });
    const err = expectError(res, 400, "validation_failed");
    expect(Object.keys(err.fields!)).toEqual(["email"]);
  });

  it("names a password confirmation that does not match", async () => {
    const res = await api("POST", "/v1/users", {
      body: signUpBody({ password_confirmation: `${PASSWORD}!` }),
    });
    const err = expectError(res, 400, "validation_failed");
    expect(Object.keys(err.fields!)).toEqual(["password_confirmation"]);
  });

  it("names every bad field at once", async () => {
    const res = await api("POST", "/v1/users", { body: { email: "x", password: "1" } });
    const err = expectError(res, 400, "validation_failed");
    expect(Object.keys(err.fields!).sort()).toEqual(["email", "full_name", "password"]);
  });

  it.each([
    ["null", null],
    ["a number", 42],
    ["a string", "hello"],
    ["an array", [1, 2]],
    ["wrong types", { email: 123, password: { a: 1 }, full_name: ["x"] }],
  ])("a body that is %s is a 400, never a 5xx", async (_label, body) => {
    const res = await api("POST", "/v1/users", {
      raw: JSON.stringify(body),
      headers: { "Content-Type": "application/json" },
    });
    const err = expectError(res, 400, "validation_failed");
    expect(Object.keys(err.fields!).length).toBeGreaterThan(0);
  });

  it("login with wrong types is validation_failed too", async () => {
    const res = await api("POST", "/v1/tokens", { body: { email: ["a@b.test"], password: 12345678 } });
    const err = expectError(res, 400, "validation_failed");
    expect(Object.keys(err.fields!).sort()).toEqual(["email", "password"]);
  });
});

describe("404 and 405", () => {
  it.each(["/v1/nope", "/nope", "/v1/users/me/nope/deeper", "/v1/realms/default/nope"])(
    "unknown route %s is 404 not_found",
    async (path) => {
      expectError(await api("GET", path), 404, "not_found");
    },
  );

  it.each([
    ["GET", "/health/"],
    ["GET", "/v1/users/me/"],
    ["POST", "/v1/tokens/public/"],
    ["GET", "/.well-known/jwksxjson"],
    ["GET", "/xwell-known/jwks.json"],
  ])("%s %s (a near miss of a real path) is 404, not a 405 that allows the same method", async (method, path) => {
    const res = await api(method, path, method === "POST" ? { body: {} } : {});
    expectError(res, 404, "not_found");
    expect(res.headers.get("Allow")).toBeNull();
  });

  it("a POST with a JSON body to an unknown route is 404 too", async () => {
    expectError(await api("POST", "/v1/nope", { body: { a: 1 } }), 404, "not_found");
  });

  it.each([
    ["GET", "/v1/tokens", ["POST"]],
    ["GET", "/v1/tokens/refresh", ["POST"]],
    ["PUT", "/v1/tokens/public", ["POST"]],
    ["POST", "/health", ["GET"]],
    ["POST", "/.well-known/jwks.json", ["GET"]],
    ["PATCH", "/v1/domains/example.com", ["PUT", "DELETE"]],
    ["GET", "/v1/realms/default/tokens", ["POST"]],
    // Percent-escapes are decoded as the router decodes them.
    ["DELETE", "/v1/token%73/refresh", ["POST"]],
  ])("%s %s is 405 with Allow", async (method, path, allowed) => {
    const res = await api(method, path, method === "GET" ? {} : { body: {} });
    expectError(res, 405, "method_not_allowed");
    const allow = (res.headers.get("Allow") ?? "").split(/,\s*/).sort();
    for (const m of allowed) expect(allow).toContain(m);
    expect(allow).not.toContain(method);
  });
});

describe("X-Request-Id", () => {
  it("echoes a sane id", async () => {
    const id = "req-123_abc.DEF:9";
    const res = await api("GET", "/health", { headers: { "X-Request-Id": id } });
    expect(res.headers.get("X-Request-Id")).toBe(id);
  });

  it("echoes a sane id on error responses too", async () => {
    const res = await api("GET", "/v1/nope", { headers: { "X-Request-Id": "trace-42" } });
    expect(res.status).toBe(404);
    expect(res.headers.get("X-Request-Id")).toBe("trace-42");
  });

  it("generates a new, distinct id when none is sent", async () => {
    const a = (await api("GET", "/health")).headers.get("X-Request-Id");
    const b = (await api("GET", "/v1/nope")).headers.get("X-Request-Id");
    expect(a).toMatch(/^[A-Za-z0-9._:-]{8,128}$/);
    expect(b).toMatch(/^[A-Za-z0-9._:-]{8,128}$/);
    expect(a).not.toBe(b);
  });

  it.each([
    ["500 characters", "a".repeat(500)],
    ["spaces", "has some spaces"],
    ["angle brackets", "<script>"],
    ["quotes", 'a"b'],
  ])("replaces an insane id (%s)", async (_label, id) => {
    const res = await api("GET", "/health", { headers: { "X-Request-Id": id } });
    const got = res.headers.get("X-Request-Id");
    expect(got).not.toBe(id);
    expect(got).toMatch(/^[A-Za-z0-9._:-]{8,128}$/);
  });
});

describe("security headers", () => {
  it("every response says nosniff, errors included", async () => {
    for (const res of [
      await api("GET", "/health"),
      await api("GET", "/v1/nope"),
      await api("GET", "/v1/users/me"),
      await api("POST", "/v1/users", { raw: "{", headers: { "Content-Type": "application/json" } }),
    ]) {
      expect(res.headers.get("X-Content-Type-Options")).toBe("nosniff");
    }
  });

  it("token responses are Cache-Control: no-store", async () => {
    const email = uniqueEmail();
    const signup = await api("POST", "/v1/users", { body: { email, password: PASSWORD, full_name: "N S" } });
    expect(signup.status).toBe(201);
    expect(signup.headers.get("Cache-Control")).toBe("no-store");

    const pub = await api("POST", "/v1/tokens/public", { body: {} });
    expect(pub.status).toBe(201);
    expect(pub.headers.get("Cache-Control")).toBe("no-store");

    const loginRes = await api("POST", "/v1/tokens", { body: { email, password: PASSWORD } });
    expect(loginRes.status).toBe(200);
    expect(loginRes.headers.get("Cache-Control")).toBe("no-store");

    const refresh = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: loginRes.body.refresh_token } });
    expect(refresh.status).toBe(200);
    expect(refresh.headers.get("Cache-Control")).toBe("no-store");

    const me = await api("GET", "/v1/users/me", { token: loginRes.body.access_token });
    expect(me.status).toBe(200);
    expect(me.headers.get("Cache-Control")).toBe("no-store");

    const failed = await api("POST", "/v1/tokens", { body: { email, password: "wrong password" } });
    expect(failed.status).toBe(401);
    expect(failed.headers.get("Cache-Control")).toBe("no-store");
  });
});

describe("realm prefix", () => {
  it("/v1/realms/default/... is /v1/...", async () => {
    const email = uniqueEmail();
    const res = await api("POST", "/v1/realms/default/users", {
      body: { email, password: PASSWORD, full_name: "Realm Default" },
    });
    expect(res.status).toBe(201);
    expect(res.body.realm).toBe("default");

    // The same user, seen through both spellings.
    const pair = await login(email);
    expect(pair.user.id).toBe(res.body.id);
    const viaPrefix = await login(email, { prefix: "/v1/realms/default" });
    expect(viaPrefix.user.id).toBe(res.body.id);
    const me = await api("GET", "/v1/realms/default/users/me", { token: pair.access_token });
    expect(me.status).toBe(200);
    expect(me.body.id).toBe(res.body.id);

    const dup = await api("POST", "/v1/users", { body: { email, password: PASSWORD, full_name: "Again" } });
    expectError(dup, 409, "user_exists");
  });

  it.each(["nope-does-not-exist", "UPPER", "a%20b", "default%2Fx", "-leading"])(
    "unknown realm %s is 404 realm_not_found",
    async (realm) => {
      const res = await api("POST", `/v1/realms/${realm}/users`, { body: signUpBody() });
      expectError(res, 404, "realm_not_found");
      const me = await api("GET", `/v1/realms/${realm}/users/me`);
      expectError(me, 404, "realm_not_found");
    },
  );

  it("users of one realm do not exist in another", async () => {
    const realm = await createRealm();
    const email = uniqueEmail();
    await signUp(email);
    const res = await api("POST", `/v1/realms/${realm}/tokens`, { body: { email, password: PASSWORD } });
    expectError(res, 401, "invalid_credentials");
    // The same email may register separately in the other realm.
    const other = await signUp(email, {}, `/v1/realms/${realm}`);
    expect(other.realm).toBe(realm);
  });
});
