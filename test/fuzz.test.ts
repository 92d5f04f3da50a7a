// Property-based fuzzing of every route (the hostile-input half of the abuse issue).
//
// The route list comes from the app's own OpenAPI document, so a new route is fuzzed without
// touching this file. Each request is built from hostile parts: random JSON, wrong types for
// the route's fields, huge strings and bodies, deep nesting, unicode edge cases as text and as
// raw (invalid) UTF-8 bytes, prototype-pollution keys, duplicated keys, random Content-Types,
// random and huge Authorization / X-Request-Id headers, garbage in path and query, realm prefixes.
//
// Properties of every answer: never a 5xx; every non-2xx answer has exactly the error shape of
// api.md §1 with a known code and its status; every answer has a sane X-Request-Id; a rejected
// request writes nothing to D1 (row counts and rowid sums of every table, before and after,
// with the documented exceptions below); Object.prototype is never polluted.
//
// Reproduce: FUZZ_SEED=<seed printed on failure> npx vitest run test/fuzz.test.ts
// More runs: FUZZ_RUNS=200; shrink a failure to a minimal request: FUZZ_SHRINK=1.

import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ERRORS } from "../src/errors";
import worker, { app } from "../src/index";
import { knownRoutes } from "../src/routes/define";
import { createRealm, login, PASSWORD, signUpVerified, uniqueEmail, withPrefix } from "./helpers";

const RUNS = Number(env.FUZZ_RUNS) > 0 ? Number(env.FUZZ_RUNS) : 30;
const SEED = env.FUZZ_SEED !== "" && Number.isFinite(Number(env.FUZZ_SEED)) ? Number(env.FUZZ_SEED) : undefined;
fc.configureGlobal({
  ...(SEED === undefined ? {} : { seed: SEED }),
  // Without shrinking the first counterexample is reported at once (with seed and path to replay it).
  endOnFailure: env.FUZZ_SHRINK !== "1",
});

// ---------------------------------------------------------------------------------------------
// The routes, from the OpenAPI document.

type JsonSchema = {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  allOf?: JsonSchema[];
};
interface Param {
  name: string;
  in: "path" | "query" | "header" | "cookie";
  schema: JsonSchema;
}
interface RouteInfo {
  method: string;
  /** OpenAPI path, `{param}` placeholders. */
  path: string;
  params: Param[];
  body: JsonSchema | null;
  /** Declares bearer auth (so most cases carry a real token, to get past it). */
  secured: boolean;
}

const doc = app.getOpenAPI31Document({ openapi: "3.1.0", info: { title: "fuzz", version: "1" } }) as unknown as {
  paths: Record<
    string,
    Record<
      string,
      {
        parameters?: Param[];
        security?: unknown[];
        requestBody?: { content?: Record<string, { schema?: JsonSchema }> };
      }
    >
  >;
  components?: { schemas?: Record<string, JsonSchema> };
};

function deref(s: JsonSchema | undefined): JsonSchema {
  let cur = s ?? {};
  for (let i = 0; cur.$ref && i < 10; i++) cur = doc.components?.schemas?.[cur.$ref.split("/").pop() as string] ?? {};
  if (cur.allOf?.length) {
    const parts = cur.allOf.map(deref);
    return {
      type: "object",
      properties: Object.assign({}, ...parts.map((p) => p.properties ?? {})),
      required: parts.flatMap((p) => p.required ?? []),
    };
  }
  return cur;
}

const HTTP_METHODS = new Set(["get", "post", "put", "patch", "delete"]);
const ROUTES: RouteInfo[] = [
  ...Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.entries(ops)
      .filter(([m]) => HTTP_METHODS.has(m))
      .map(([m, op]) => ({
        method: m.toUpperCase(),
        path,
        params: op.parameters ?? [],
        body: op.requestBody?.content?.["application/json"]?.schema
          ? deref(op.requestBody.content["application/json"].schema)
          : null,
        secured: (op.security?.length ?? 0) > 0,
      })),
  ),
  // Served but not in the document (it cannot describe itself); knownRoutes lists them.
  { method: "GET", path: "/openapi.json", params: [], body: null, secured: false },
  { method: "GET", path: "/docs", params: [], body: null, secured: false },
];

const concrete = (path: string) => path.replace(/\{[^}]+\}/g, "x");

// ---------------------------------------------------------------------------------------------
// Sending requests and checking answers.

const ERROR_CODES = new Set(Object.keys(ERRORS));
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const POLLUTION_MARK = "fuzzPolluted";

interface Plan {
  method: string;
  url: string;
  headers: [string, string][];
  body: Uint8Array | null;
  note: string;
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

/** Calls the worker's fetch directly and waits for its deferred work (audit rows, deliveries). */
async function send(plan: Plan): Promise<Answer> {
  const headers = new Headers();
  for (const [k, v] of plan.headers) headers.append(k, v);
  const request = new Request(plan.url, {
    method: plan.method,
    headers,
    body: plan.body === null || plan.method === "GET" || plan.method === "HEAD" ? undefined : plan.body,
  });
  const ctx = createExecutionContext();
  const res = await worker.fetch(request as Parameters<typeof worker.fetch>[0], env, ctx);
  const text = await res.text();
  await waitOnExecutionContext(ctx);
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

let TABLES: string[] = [];

/** Row count and rowid sum of every application table (a replaced row changes the sum). */
async function snapshot(): Promise<Record<string, string>> {
  const results = await env.DB.batch<{ n: number; r: number }>(
    TABLES.map((t) => env.DB.prepare(`SELECT count(*) AS n, total(rowid) AS r FROM "${t}"`)),
  );
  return Object.fromEntries(TABLES.map((t, i) => [t, `${results[i]?.results[0]?.n}/${results[i]?.results[0]?.r}`]));
}

/**
 * Tables a rejected request may legitimately change:
 * - 401/403/429: a failed attempt is recorded (audit trail, login throttle).
 * - invalid_code: a failed reset attempt is audited (reset_failed) and counted against the
 *   account's daily failures (code_counters, api.md §16).
 * - refresh_token_reused: theft detection ends the session, which removes its device index row.
 */
function mayChange(status: number, code: string | undefined): Set<string> {
  const tables = new Set<string>();
  if (status === 401 || status === 403 || status === 429) {
    tables.add("audit_events");
    tables.add("login_throttle");
  }
  if (code === "invalid_code") {
    tables.add("audit_events");
    tables.add("code_counters");
  }
  if (code === "refresh_token_reused") tables.add("devices");
  return tables;
}

const PROTO_KEYS_AT_START = Object.getOwnPropertyNames(Object.prototype).sort();
const ARRAY_PROTO_KEYS_AT_START = Object.getOwnPropertyNames(Array.prototype).sort();

function expectPrototypesClean() {
  expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(PROTO_KEYS_AT_START);
  expect(Object.getOwnPropertyNames(Array.prototype).sort()).toEqual(ARRAY_PROTO_KEYS_AT_START);
  expect(({} as Record<string, unknown>)[POLLUTION_MARK]).toBeUndefined();
  expect(([] as unknown as Record<string, unknown>)[POLLUTION_MARK]).toBeUndefined();
}

/** The checks every answer must pass; returns the error code of a rejection. */
function checkAnswer(plan: Plan, res: Answer): string | undefined {
  expect(res.status, "never a 5xx").toBeLessThan(500);
  expect(res.status).toBeGreaterThanOrEqual(200);

  const given = plan.headers.find(([k]) => k.toLowerCase() === "x-request-id")?.[1];
  const rid = res.headers.get("X-Request-Id");
  expect(rid ?? "(none)", "every answer has X-Request-Id").toMatch(SANE_REQUEST_ID);
  if (given !== undefined && SANE_REQUEST_ID.test(given.trim())) expect(rid).toBe(given.trim());

  expect(res.text, "no password hash ever leaves").not.toContain("pbkdf2-sha256$");

  if (res.status >= 200 && res.status < 300) return undefined;
  if (plan.method === "HEAD") return undefined; // no body to check
  // api.md §1: exactly {error: {code, message, fields?}}.
  const body = res.json as { error?: { code?: unknown; message?: unknown; fields?: unknown } } | undefined;
  expect(res.headers.get("Content-Type") ?? "").toMatch(/^application\/json/);
  expect(body && typeof body === "object" && !Array.isArray(body)).toBe(true);
  expect(Object.keys(body as object)).toEqual(["error"]);
  const error = body?.error as Record<string, unknown>;
  expect(error && typeof error === "object" && !Array.isArray(error)).toBe(true);
  const keys = Object.keys(error).sort();
  expect(keys.filter((k) => k !== "fields")).toEqual(["code", "message"]);
  expect(typeof error.code).toBe("string");
  const code = error.code as string;
  expect(code).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
  expect(ERROR_CODES.has(code), `known code ${code}`).toBe(true);
  expect(res.status, `status of ${code}`).toBe(ERRORS[code as keyof typeof ERRORS][0]);
  expect(typeof error.message).toBe("string");
  expect((error.message as string).length).toBeGreaterThan(0);
  if ("fields" in error) {
    expect(code).toBe("validation_failed");
    const fields = error.fields as Record<string, unknown>;
    expect(fields && typeof fields === "object" && !Array.isArray(fields)).toBe(true);
    for (const v of Object.values(fields)) expect(typeof v).toBe("string");
  }
  if (res.status === 405) expect(res.headers.get("Allow")).toBeTruthy();
  if (res.status === 401) expect(res.headers.get("WWW-Authenticate") ?? "").toMatch(/^Bearer /);
  return code;
}

const summary = (plan: Plan, res?: Answer) =>
  `${plan.method} ${plan.url.slice(0, 300)} [${plan.note}] headers=${JSON.stringify(
    plan.headers.map(([k, v]) => [k, v.length > 80 ? `${v.slice(0, 80)}...(${v.length})` : v]),
  )} body=${plan.body ? `${JSON.stringify(new TextDecoder().decode(plan.body.slice(0, 300)))}(${plan.body.byteLength} bytes)` : "none"}${
    res ? ` -> ${res.status} ${res.text.slice(0, 300)}` : ""
  }`;

/** One fuzz case: send, then check the answer, D1 and the prototypes. */
async function runCase(plan: Plan): Promise<Answer> {
  const before = await snapshot();
  let res: Answer | undefined;
  try {
    res = await send(plan);
    const code = checkAnswer(plan, res);
    if (res.status >= 300) {
      const after = await snapshot();
      const allowed = mayChange(res.status, code);
      const changed = TABLES.filter((t) => !allowed.has(t) && before[t] !== after[t]);
      expect(
        changed,
        `a rejected request wrote to D1: ${changed.map((t) => `${t} ${before[t]} -> ${after[t]}`).join(", ")}`,
      ).toEqual([]);
    }
    expectPrototypesClean();
    return res;
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    err.message = `${err.message}\n  request: ${summary(plan, res)}`;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Who calls: a realm of this file with an admin, a user (email domain fuzz.test) and an authority
// token for fuzz.test; a user and an admin of realm default; public tokens of both realms. Built
// once; before each route every one of them is checked and made again if an earlier route's
// fuzzing ended it (deleted, deactivated, logged out, its refresh token replayed...).

interface Principal {
  id: string;
  email: string;
  access: string;
  refresh: string;
}
interface Actors {
  realm: string;
  prefix: string;
  user: Principal;
  admin: Principal;
  authority: string;
  publicToken: string;
  defaultUser: Principal;
  defaultAdmin: Principal;
  defaultPublicToken: string;
}

const REALM_ADMIN = "root@admin.test";
const DEFAULT_ADMIN = "second-root@admin.test";

async function call(method: string, path: string, token?: string, body?: unknown): Promise<Answer> {
  const headers: [string, string][] = [];
  if (token) headers.push(["Authorization", `Bearer ${token}`]);
  if (body !== undefined) headers.push(["Content-Type", "application/json"]);
  return send({
    method,
    url: `https://registry.test${path}`,
    headers,
    body: body === undefined ? null : enc.encode(JSON.stringify(body)),
    note: "setup",
  });
}

async function principal(email: string, prefix = ""): Promise<Principal> {
  // Proven addresses, as their owners would have them; a bootstrap address claims the seat only
  // while its realm has no other active admin, so a re-made admin is given the role directly.
  const user = await signUpVerified(email, {}, prefix);
  if ([REALM_ADMIN, DEFAULT_ADMIN].includes(email) && !user.roles.includes("admin")) {
    await env.DB.prepare(`UPDATE users SET roles = '["user","admin"]', status = 'active' WHERE id = ?`)
      .bind(user.id)
      .run();
  }
  const pair = await login(email, { prefix });
  return { id: user.id, email, access: pair.access_token, refresh: pair.refresh_token };
}

/** Removes a user (by id, and whoever holds the email) straight from D1, so the email can sign up again. */
async function purge(realm: string, id: string, email: string): Promise<void> {
  const rows = await env.DB.prepare(
    "SELECT id FROM users WHERE realm = ? AND (id = ? OR id IN (SELECT user_id FROM user_emails WHERE email = ?))",
  )
    .bind(realm, id, email)
    .all<{ id: string }>();
  for (const row of rows.results) {
    await env.DB.batch([
      env.DB.prepare("DELETE FROM user_emails WHERE user_id = ?").bind(row.id),
      env.DB.prepare("DELETE FROM devices WHERE user_id = ?").bind(row.id),
      env.DB.prepare("DELETE FROM users WHERE id = ?").bind(row.id),
    ]);
  }
  await env.DB.prepare("DELETE FROM login_throttle WHERE realm = ? AND subject = ?").bind(realm, email).run();
  // The address's verification code too, so the new account is sent one at once.
  await env.DB.prepare("DELETE FROM verification_codes WHERE realm = ? AND subject = ?").bind(realm, email).run();
}

/** Whether the principal's access token still works, as an active user (an admin when asked). */
async function alive(p: Principal | undefined, prefix: string, admin = false): Promise<boolean> {
  if (!p) return false;
  const res = await call("GET", withPrefix(prefix, "/v1/users/me"), p.access);
  const me = res.json as { status?: string; roles?: string[] } | undefined;
  return res.status === 200 && me?.status === "active" && (!admin || !!me.roles?.includes("admin"));
}

async function publicToken(prefix = ""): Promise<string> {
  const res = await call("POST", withPrefix(prefix, "/v1/tokens/public"), undefined, {});
  if (res.status !== 201) throw new Error(`public token: ${res.status} ${res.text}`);
  return (res.json as { token: string }).token;
}

async function authorityToken(prefix: string, adminToken: string): Promise<string> {
  const res = await call("POST", withPrefix(prefix, "/v1/domains/fuzz.test/authority-token"), adminToken, {});
  if (res.status !== 201) throw new Error(`authority token: ${res.status} ${res.text}`);
  return (res.json as { token: string }).token;
}

let actorsCache: Actors | undefined;

/** The actors, each checked and made again if needed. */
async function actors(): Promise<Actors> {
  const realm = actorsCache?.realm ?? (await createRealm());
  const prefix = `/v1/realms/${realm}`;
  const a: Partial<Actors> = actorsCache ? { ...actorsCache } : { realm, prefix };
  if (!(await alive(a.admin, prefix, true))) {
    await purge(realm, a.admin?.id ?? "", REALM_ADMIN);
    a.admin = await principal(REALM_ADMIN, prefix);
  }
  if (!(await alive(a.user, prefix))) a.user = await principal(uniqueEmail("fuzz.test"), prefix);
  if (!(await alive(a.defaultAdmin, "", true))) {
    await purge("default", a.defaultAdmin?.id ?? "", DEFAULT_ADMIN);
    a.defaultAdmin = await principal(DEFAULT_ADMIN);
  }
  if (!(await alive(a.defaultUser, ""))) a.defaultUser = await principal(uniqueEmail());
  if (!a.authority || (await call("GET", withPrefix(prefix, "/v1/users?limit=1"), a.authority)).status !== 200) {
    a.authority = await authorityToken(prefix, (a.admin as Principal).access);
  }
  a.publicToken ??= await publicToken(prefix);
  a.defaultPublicToken ??= await publicToken();
  actorsCache = a as Actors;
  return actorsCache;
}

// ---------------------------------------------------------------------------------------------
// Generators.

const enc = new TextEncoder();
const concat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
};

const UNICODE_EDGES = [
  "\ud800", // lone high surrogate
  "\udfff", // lone low surrogate
  "a\udc00\ud800b", // reversed pair
  "\u202e", // RTL override
  "\u200f\u200e", // RTL / LTR marks
  "\u0000", // NUL
  "a\u0000b",
  "\ufeff", // BOM
  "\uffff\ufffe", // non-characters
  "😀",
  "👩‍👩‍👧‍👦", // ZWJ sequence
  "e\u0301", // combining accent
  "\u2028\u2029", // line/paragraph separators
  "İıſK", // case-mapping oddities (dotted I, long s, Kelvin sign)
  "ＡＢＣ＠ｅｘａｍｐｌｅ．ｃｏｍ", // fullwidth
  "\t\n\r\v\f",
  " ",
  "",
];
const INJECTIONS = [
  "' OR 1=1 --",
  '"; DROP TABLE users; --',
  "%",
  "_",
  "\\",
  "$" + "{7*7}", // template injection probe
  "<script>x</script>",
  "../../etc/passwd",
  "null",
  "[object Object]",
];

/** An own property only (a key like `__proto__` must not find Object.prototype). */
const own = <T>(obj: Record<string, T>, key: string): T | undefined => (Object.hasOwn(obj, key) ? obj[key] : undefined);

/**
 * Percent-encodes like encodeURIComponent, but a lone surrogate (which encodeURIComponent refuses)
 * becomes its raw three-byte form (%ED%A0%80 for U+D800): bytes no valid UTF-8 decoder accepts.
 */
function encodeSegment(s: string): string {
  let out = "";
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const next = s.charCodeAt(i + 1);
    if (c >= 0xd800 && c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      out += encodeURIComponent(s.slice(i, i + 2));
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      out += [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)]
        .map((b) => `%${b.toString(16).toUpperCase()}`)
        .join("");
    } else {
      out += encodeURIComponent(s[i] as string);
    }
  }
  return out;
}

const headerSafe = fc.string({
  unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
  maxLength: 200,
});
const loneSurrogates = fc.string({
  unit: fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c)),
  minLength: 1,
  maxLength: 8,
});
/** A string of n copies of one character, n up to past the 16 KiB body limit. */
const hugeString = fc
  .tuple(fc.constantFrom("a", "é", "😀", "\u0000", "\ud800", "%"), fc.integer({ min: 1_000, max: 20_000 }))
  .map(([c, n]) => c.repeat(n));

const hostileString = (sample?: fc.Arbitrary<unknown>) =>
  fc.oneof(
    w(2, fc.constantFrom(...UNICODE_EDGES, ...INJECTIONS)),
    w(1, fc.string({ unit: "binary", maxLength: 40 })),
    w(1, fc.string({ unit: "grapheme", maxLength: 40 })),
    w(1, loneSurrogates),
    w(1, hugeString),
    ...(sample
      ? [
          // The plausible value with an edge case in front or behind: gets furthest into a route.
          w(
            4,
            fc
              .tuple(sample, fc.constantFrom(...UNICODE_EDGES, ...INJECTIONS), fc.boolean())
              .map(([s, edge, before]) => (before ? `${edge}${String(s)}` : `${String(s)}${edge}`)),
          ),
        ]
      : []),
  );

/** JSON-compatible values of every type. */
const anyJsonTyped = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, -1, 2 ** 53, -(2 ** 53), 1e308, 5e-324, 1.5),
  fc.string({ maxLength: 20 }),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
);

function jsonType(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function declaredTypes(s: JsonSchema | undefined): Set<string> {
  const d = deref(s);
  if (d.anyOf || d.oneOf) return new Set([...(d.anyOf ?? d.oneOf ?? [])].flatMap((x) => [...declaredTypes(x)]));
  const t = d.type ? (Array.isArray(d.type) ? d.type : [d.type]) : (d.enum ?? []).map(jsonType);
  const out = new Set(t);
  if (out.has("number")) out.add("integer");
  return out;
}

/** A value whose JSON type the field does not accept (any value when the schema names no type). */
const wrongType = (s: JsonSchema | undefined) => {
  const types = declaredTypes(s);
  return types.size ? anyJsonTyped.filter((v) => !types.has(jsonType(v))) : anyJsonTyped;
};

/** An object whose parse would pollute a prototype if anything merged it naively. */
const pollution = fc
  .constantFrom(
    `{"__proto__":{"${POLLUTION_MARK}":"yes"}}`,
    `{"constructor":{"prototype":{"${POLLUTION_MARK}":"yes"}}}`,
    `{"prototype":{"${POLLUTION_MARK}":"yes"}}`,
    `{"a":{"__proto__":{"${POLLUTION_MARK}":"yes"}}}`,
    `[{"__proto__":{"${POLLUTION_MARK}":"yes"}}]`,
    `{"__proto__":null}`,
    `{"__proto__":[]}`,
    `{"hasOwnProperty":"x","toString":1,"valueOf":{},"__defineGetter__":null}`,
  )
  .map((text) => JSON.parse(text) as unknown);

/** Sets a key as an own, enumerable property (so `__proto__` is written as a key, not a prototype). */
function withKey(obj: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const copy = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>;
  Object.defineProperty(copy, key, { value, enumerable: true, writable: true, configurable: true });
  return copy;
}

/** JSON text of `obj` with one more member, written verbatim (duplicates and all). */
function withRawMember(obj: Record<string, unknown>, key: string, valueText: string, first: boolean): string {
  const base = JSON.stringify(obj);
  const member = `${JSON.stringify(key)}:${valueText}`;
  if (base === "{}") return `{${member}}`;
  return first ? `{${member},${base.slice(1)}` : `${base.slice(0, -1)},${member}}`;
}

const deepText = fc
  .tuple(fc.integer({ min: 1, max: 10_000 }), fc.constantFrom("array", "object", "mixed", "unclosed"))
  .map(([d, kind]) => {
    switch (kind) {
      case "array":
        return "[".repeat(d) + "]".repeat(d);
      case "object":
        return `${'{"a":'.repeat(d)}1${"}".repeat(d)}`;
      case "mixed":
        return `${'[{"__proto__":'.repeat(d)}0${"}]".repeat(d)}`;
      default:
        return "[".repeat(d);
    }
  });

const INVALID_UTF8: number[][] = [
  [0xc0, 0xaf], // overlong "/"
  [0xc1, 0xbf], // overlong
  [0xe0, 0x80, 0xaf], // overlong "/" in 3 bytes
  [0xf0, 0x80, 0x80, 0xaf], // overlong "/" in 4 bytes
  [0xed, 0xa0, 0x80], // UTF-8-encoded lone surrogate U+D800
  [0xed, 0xbf, 0xbf], // U+DFFF
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xf8, 0x88, 0x80, 0x80, 0x80], // 5-byte form
  [0xff],
  [0xfe, 0xff],
  [0x80], // lone continuation byte
  [0xc3], // truncated sequence
  [0x00], // raw NUL inside a JSON string (invalid JSON)
];

const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-8",
  "application/json;charset=UTF-16",
  "APPLICATION/JSON",
  "application/vnd.api+json",
  "application/merge-patch+json",
  "application/json; charset=utf-8; boundary=x",
  "application/json ; x=y",
  "application/jsonx",
  "application/json5",
  "text/json",
  "text/plain",
  "text/plain;charset=UTF-8",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=----x",
  "application/xml",
  "application/octet-stream",
  "*/*",
  "",
  ";",
  "application/",
];
const contentType = fc.oneof(
  { weight: 24, arbitrary: fc.constant<string | null>("application/json") },
  { weight: 1, arbitrary: fc.constant<string | null>(null) },
  { weight: 3, arbitrary: fc.constantFrom<string | null>(...CONTENT_TYPES) },
  { weight: 1, arbitrary: headerSafe as fc.Arbitrary<string | null> },
);

/** Realistic values for the fields the API knows, so that mutations reach past the first check. */
function fieldSamples(a: Actors, realmUser: Principal): Record<string, fc.Arbitrary<unknown>> {
  const digits = (n: number) => fc.stringMatching(new RegExp(`^\\d{${n}}$`));
  const alnum32 = fc.stringMatching(/^[A-Za-z0-9]{32}$/);
  return {
    email: fc.oneof(
      fc.constantFrom(realmUser.email, a.defaultUser.email, "root@admin.test", " Mixed.Case@Fuzz.Test "),
      fc.stringMatching(/^[a-z0-9]{1,12}$/).map((s) => `f${s}@fuzz.test`),
    ),
    password: fc.constantFrom(PASSWORD, PASSWORD, "another password 1", "short"),
    password_confirmation: fc.constantFrom(PASSWORD),
    current_password: fc.constantFrom(PASSWORD, "wrong password"),
    full_name: fc.constantFrom("Fuzz Person", "Ada"),
    name: fc.constantFrom("Fuzz Person"),
    phone_number: digits(7).map((d) => `+1555${d}`),
    phone_otp: digits(6),
    otp: digits(6),
    code: digits(8),
    refresh_token: fc.oneof(
      fc.constantFrom(realmUser.refresh, a.defaultUser.refresh),
      fc
        .tuple(
          fc.constantFrom(realmUser.refresh, a.defaultUser.refresh),
          fc.nat(),
          fc.constantFrom("flip", "cut", "append", "swap"),
        )
        .map(([t, i, how]) => {
          const at = i % t.length;
          if (how === "cut") return t.slice(0, at);
          if (how === "append") return `${t}A`;
          if (how === "swap") return t.split(".").reverse().join(".");
          const c = t[at] === "A" ? "B" : "A";
          return t.slice(0, at) + c + t.slice(at + 1);
        }),
    ),
    device_id: fc.oneof(alnum32, fc.constantFrom("short", "Z".repeat(32))),
    description: fc.constantFrom("fuzz device"),
    profile: fc.constantFrom({ locale: "en" }, {}),
    image_url: fc.constantFrom("https://example.com/a.png", "javascript:alert(1)", "http://example.com/a.png"),
    push_token: fc.constantFrom("fcm-token-1", null),
    fcm_token: fc.constantFrom("fcm-token-1"),
    captcha_token: fc.constantFrom("1x0000000000000000000000000000000AA"),
    roles: fc.constantFrom(["user"], ["admin", "user"], []),
    rule: fc.constantFrom("allow", "block"),
    registration: fc.constantFrom("open", "allowlist", "closed"),
    approval_required: fc.constant(false),
    captcha_required: fc.constant(false),
    all: fc.constant(false),
    expires_in_days: fc.constantFrom(1, 90, 365),
  };
}

function defaultValue(s: JsonSchema): fc.Arbitrary<unknown> {
  const d = deref(s);
  if (d.enum?.length) return fc.constantFrom(...d.enum);
  const types = [...declaredTypes(d)].filter((t) => t !== "null");
  switch (types[0]) {
    case "string":
      return fc.string({ minLength: 1, maxLength: 12 });
    case "integer":
    case "number":
      return fc.integer({ min: 1, max: 5 });
    case "boolean":
      return fc.boolean();
    case "array":
      return fc.constant([]);
    case "object":
      return fc.constant({});
    default:
      return fc.jsonValue({ maxDepth: 1 });
  }
}

type BodySpec = { bytes: Uint8Array | null; note: string };
const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });

/** A body for a route: random JSON, or a plausible body with one hostile change, or hostile raw bytes. */
function bodyArb(schema: JsonSchema | null, samples: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<BodySpec> {
  const props = schema?.properties ?? {};
  const required = new Set(schema?.required ?? []);
  const base: fc.Arbitrary<Record<string, unknown>> = fc
    .record(
      Object.fromEntries(
        Object.entries(props).map(([k, s]) => {
          const arb = own(samples, k) ?? defaultValue(s);
          return [k, required.has(k) ? arb : fc.option(arb, { nil: undefined, freq: 2 })];
        }),
      ),
    )
    .map((o) => JSON.parse(JSON.stringify(o)) as Record<string, unknown>);
  const keys = [...Object.keys(props), "__proto__", "constructor", "prototype", "unknown_field"];
  const key = fc.constantFrom(...keys);
  const json =
    (note: string) =>
    (v: unknown): BodySpec => ({ bytes: enc.encode(JSON.stringify(v) ?? "null"), note });
  const text =
    (note: string) =>
    (t: string): BodySpec => ({ bytes: enc.encode(t), note });

  const mutated = fc.oneof(
    // Wrong JSON type for one known field.
    w(
      4,
      fc
        .tuple(base, key)
        .chain(([b, k]) => wrongType(own(props, k)).map((v) => json(`wrong type for ${k}`)(withKey(b, k, v)))),
    ),
    // Hostile strings in one field.
    w(
      6,
      fc
        .tuple(base, key)
        .chain(([b, k]) => hostileString(own(samples, k)).map((v) => json(`hostile string in ${k}`)(withKey(b, k, v)))),
    ),
    // A required field missing.
    w(
      1,
      fc.tuple(base, key).map(([b, k]) => {
        const copy = { ...b };
        delete copy[k];
        return json(`without ${k}`)(copy);
      }),
    ),
    // Prototype-pollution keys at the top, as a field's value, or deep inside one.
    w(
      2,
      fc
        .tuple(base, fc.constantFrom("__proto__", "constructor", "prototype"), pollution)
        .map(([b, k, p]) => json(`pollution key ${k}`)(withKey(b, k, (p as Record<string, unknown>)?.[k] ?? p))),
    ),
    w(
      2,
      fc.tuple(base, key, pollution, fc.integer({ min: 0, max: 20 })).map(([b, k, p, depth]) => {
        let v: unknown = p;
        for (let i = 0; i < depth; i++) v = i % 2 ? [v] : { nested: v };
        return json(`pollution in ${k} at depth ${depth}`)(withKey(b, k, v));
      }),
    ),
    // Deep nesting as raw text in one field, and as the whole body.
    w(
      2,
      fc.tuple(base, key, deepText).map(([b, k, d]) => text(`deep ${k}`)(withRawMember(b, k, d, false))),
    ),
    w(1, deepText.map(text("deep body"))),
    // Duplicated keys: the hostile copy before or after the plausible one.
    w(
      2,
      fc
        .tuple(base, key, fc.oneof(wrongType(undefined), hostileString()), fc.boolean())
        .map(([b, k, v, first]) => text(`duplicate ${k}`)(withRawMember(b, k, JSON.stringify(v) ?? "null", first))),
    ),
    // Invalid UTF-8 inside one field's string, sent as raw bytes.
    w(
      2,
      fc.tuple(base, key, fc.constantFrom(...INVALID_UTF8), fc.string({ maxLength: 5 })).map(([b, k, bad, around]) => {
        const before = withRawMember(b, k, `"${around}`, false);
        return {
          bytes: concat(enc.encode(before.slice(0, -1)), new Uint8Array(bad), enc.encode(`${around}"}`)),
          note: `invalid utf-8 in ${k}`,
        };
      }),
    ),
    // Byte-order marks in front of a plausible body.
    w(
      1,
      fc
        .tuple(
          base,
          fc.constantFrom([0xef, 0xbb, 0xbf], [0xfe, 0xff], [0xff, 0xfe], [0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf]),
        )
        .map(([b, bom]) => ({
          bytes: concat(new Uint8Array(bom), enc.encode(JSON.stringify(b))),
          note: "bom",
        })),
    ),
    // Around and past the 16 KiB limit.
    w(
      1,
      fc
        .tuple(base, fc.integer({ min: 16_000, max: 17_000 }))
        .map(([b, n]) => json(`padded to ~${n}`)(withKey(b, "pad", "p".repeat(n)))),
    ),
    w(
      1,
      fc
        .integer({ min: 16_384 - 2, max: 16_384 + 2 })
        .map((n) => json(`exactly ${n} bytes`)({ pad: "p".repeat(n - 10) })),
    ),
    // Truncated JSON and trailing garbage.
    w(
      1,
      fc.tuple(base, fc.nat()).map(([b, i]) => {
        const t = JSON.stringify(b);
        return text("truncated")(t.slice(0, i % Math.max(1, t.length)));
      }),
    ),
    w(
      1,
      fc
        .tuple(base, fc.constantFrom("\u0000", " x", "}", ",", "\n{}", "\ud800"))
        .map(([b, tail]) => text("trailing garbage")(JSON.stringify(b) + tail)),
    ),
  );

  return fc.oneof(
    { weight: 1, arbitrary: fc.constant<BodySpec>({ bytes: null, note: "no body" }) },
    { weight: 1, arbitrary: fc.constant<BodySpec>({ bytes: new Uint8Array(0), note: "empty body" }) },
    { weight: 2, arbitrary: fc.jsonValue().map(json("random json")) },
    {
      weight: 1,
      arbitrary: fc
        .anything({
          withBoxedValues: true,
          withMap: true,
          withSet: true,
          withSparseArray: true,
          withTypedArray: true,
          withDate: true,
          withNullPrototype: true,
          withObjectString: true,
        })
        .map((v) => {
          let t: string | undefined;
          try {
            t = JSON.stringify(v);
          } catch {
            t = undefined;
          }
          return text("anything")(t ?? "null");
        }),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => ({ bytes, note: "random bytes" })) },
    { weight: 4, arbitrary: base.map(json("plausible")) },
    { weight: 16, arbitrary: mutated },
  );
}

/** Path parameter values: plausible ones (with the actors' ids) and hostile ones, as they appear in a URL. */
function pathValue(name: string, a: Actors, realmUser: Principal): fc.Arbitrary<string> {
  const plausible: Record<string, string[]> = {
    id: ["me", realmUser.id, "0".repeat(32)],
    domain: ["fuzz.test", "example.com", "sub.fuzz.test"],
    device_id: ["Z".repeat(32)],
    realm: ["fz-new-realm", a.realm, "default"],
  };
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...(own(plausible, name) ?? ["x"])) },
    { weight: 3, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 80 }).map(encodeSegment) },
    {
      weight: 2,
      arbitrary: hostileString()
        .filter((s) => s.length > 0)
        .map((s) => encodeSegment(s).slice(0, 3000)),
    },
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        "%ZZ",
        "%",
        "%E0%A4%A",
        "%ED%A0%80", // encoded lone surrogate
        "%C0%AF", // overlong "/"
        "%00",
        "%2F",
        "..",
        ".",
        "%2e%2e",
        "a%2Fb",
        "%25",
        "%20",
        "me%00",
        "ME",
        "x".repeat(65),
        "x".repeat(5000),
        "%F0%9F%98%80",
        "__proto__",
        "constructor",
      ),
    },
  );
}

const QUERY_GARBAGE = [
  "%ZZ=1",
  "limit=%ZZ",
  "q=%ED%A0%80",
  "limit=1&limit=2",
  "cursor[]=1",
  "__proto__[x]=1",
  "=",
  "&&&",
  "limit",
  "q=%00",
  "domain=%C0%AF",
];

function queryArb(route: RouteInfo): fc.Arbitrary<string> {
  const qp = route.params.filter((p) => p.in === "query");
  const plausible: Record<string, string[]> = {
    limit: [
      "1",
      "2",
      "50",
      "100",
      "0",
      "101",
      "-1",
      "1.5",
      "abc",
      "1e2",
      "0x10",
      "Infinity",
      "NaN",
      "99999999999999999999",
      " 5",
      "",
    ],
    domain: ["fuzz.test", "FUZZ.TEST", "other.test", "fuzz", ".fuzz.test"],
    status: ["active", "pending", "disabled", "ACTIVE", "deleted"],
    cursor: ["", "abc", "eyJ9", btoa('{"c":"2020","i":"x"}'), "x".repeat(600)],
    q: ["f", "%", "_", "a%b_c", "\\", "root@"],
  };
  const one = (p: Param) =>
    fc.option(
      fc.oneof(
        fc.constantFrom(...(own(plausible, p.name) ?? ["1", "x"])),
        hostileString().map((s) => s.slice(0, 2000)),
        fc.string({ unit: "binary", maxLength: 30 }),
      ),
      { nil: undefined },
    );
  return fc
    .tuple(
      fc.record(Object.fromEntries(qp.map((p) => [p.name, one(p)]))),
      fc.option(fc.constantFrom(...QUERY_GARBAGE), { nil: undefined }),
      fc.option(fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 30 }), { maxKeys: 3 }), {
        nil: undefined,
      }),
    )
    .map(([known, garbage, extra]) => {
      const parts: string[] = [];
      for (const [k, v] of Object.entries({ ...extra, ...known })) {
        if (v !== undefined) parts.push(`${encodeSegment(k)}=${encodeSegment(String(v))}`);
      }
      if (garbage) parts.push(garbage);
      return parts.length ? `?${parts.join("&")}` : "";
    });
}

function authArb(a: Actors, inRealm: boolean, secured: boolean): fc.Arbitrary<string | null> {
  const mine = inRealm ? [a.user, a.admin] : [a.defaultUser, a.defaultAdmin];
  const theirs = inRealm ? [a.defaultUser, a.defaultAdmin] : [a.user, a.admin];
  const tokens = {
    user: mine[0]?.access as string,
    admin: mine[1]?.access as string,
    public: inRealm ? a.publicToken : a.defaultPublicToken,
  };
  // Most cases carry what the route takes, so that the body and parameters get checked too.
  return fc.oneof(
    { weight: secured ? 2 : 8, arbitrary: fc.constant(null) },
    { weight: secured ? 6 : 1, arbitrary: fc.constant(`Bearer ${tokens.user}`) },
    { weight: secured ? 6 : 1, arbitrary: fc.constant(`Bearer ${tokens.admin}`) },
    { weight: secured ? 1 : 4, arbitrary: fc.constant(`Bearer ${tokens.public}`) },
    { weight: 1, arbitrary: fc.constant(`Bearer ${a.authority}`) },
    { weight: 1, arbitrary: fc.constantFrom(...theirs.map((p) => `Bearer ${p.access}`), `Bearer ${mine[0]?.refresh}`) },
    {
      weight: 2,
      arbitrary: fc.oneof(
        headerSafe,
        headerSafe.map((s) => `Bearer ${s}`),
        fc.constantFrom(
          "Bearer",
          "Bearer ",
          "bearer x.y.z",
          "Basic dXNlcjpwYXNz",
          `Bearer ${tokens.user} extra`,
          `Bearer  ${tokens.user}`,
          `BEARER ${tokens.user}`,
        ),
        fc.integer({ min: 4_000, max: 20_000 }).map((n) => `Bearer ${"A".repeat(n)}`),
        fc
          .integer({ min: 1, max: 3 })
          .map((n) => `Bearer ${Array.from({ length: n }, () => "eyJhbGciOiJub25lIn0").join(".")}.`),
      ),
    },
  );
}

const requestIdArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/) },
  { weight: 2, arbitrary: headerSafe },
  { weight: 1, arbitrary: fc.integer({ min: 129, max: 20_000 }).map((n) => "r".repeat(n)) },
);

const REALM_GARBAGE = [
  "%ZZ",
  "%ED%A0%80",
  "DEFAULT",
  "no-such-realm",
  "a".repeat(33),
  "%2e%2e",
  "-x",
  "__proto__",
  "constructor",
];

function planArb(route: RouteInfo, a: Actors): fc.Arbitrary<Plan> {
  const isV1 = route.path.startsWith("/v1/");
  const realmChoice = isV1
    ? fc.oneof(
        { weight: 3, arbitrary: fc.constant({ prefix: "", inRealm: false }) },
        { weight: 3, arbitrary: fc.constant({ prefix: a.prefix, inRealm: true }) },
        { weight: 1, arbitrary: fc.constant({ prefix: "/v1/realms/default", inRealm: false }) },
        {
          weight: 1,
          arbitrary: fc
            .oneof(
              fc.constantFrom(...REALM_GARBAGE),
              fc.string({ unit: "binary", minLength: 1, maxLength: 40 }).map(encodeSegment),
            )
            .map((r) => ({ prefix: `/v1/realms/${r}`, inRealm: false })),
        },
      )
    : fc.constant({ prefix: "", inRealm: false });
  return realmChoice.chain(({ prefix, inRealm }) => {
    const realmUser = inRealm ? a.user : a.defaultUser;
    const pathParams = route.params.filter((p) => p.in === "path");
    const samples = fieldSamples(a, realmUser);
    return fc
      .record({
        params: fc.record(Object.fromEntries(pathParams.map((p) => [p.name, pathValue(p.name, a, realmUser)]))),
        query: queryArb(route),
        auth: authArb(a, inRealm, route.secured),
        requestId: requestIdArb,
        body:
          route.method === "GET"
            ? fc.constant<BodySpec>({ bytes: null, note: "no body" })
            : bodyArb(route.body, samples),
        contentType,
        origin: fc.option(fc.constantFrom("https://evil.example", "null", "https://app.example.com"), {
          nil: undefined,
          freq: 4,
        }),
      })
      .map(({ params, query, auth, requestId, body, contentType: ct, origin }) => {
        let path = route.path;
        for (const [k, v] of Object.entries(params)) path = path.replace(`{${k}}`, v as string);
        const headers: [string, string][] = [];
        if (auth !== null) headers.push(["Authorization", auth]);
        if (requestId !== undefined) headers.push(["X-Request-Id", requestId]);
        if (origin !== undefined) headers.push(["Origin", origin]);
        if (body.bytes !== null && ct !== null) headers.push(["Content-Type", ct]);
        return {
          method: route.method,
          url: `https://registry.test${prefix ? withPrefix(prefix, path) : path}${query}`,
          headers,
          body: body.bytes,
          note: body.note,
        };
      });
  });
}

// ---------------------------------------------------------------------------------------------
// The tests.

beforeAll(async () => {
  const rows = await env.DB.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all<{ name: string }>();
  TABLES = rows.results
    .map((r) => r.name)
    .filter((n) => n !== "d1_migrations" && !n.startsWith("_cf_") && !n.startsWith("sqlite_"))
    .sort();
  // The development notifier logs every code it "sends"; the fuzzing sends many.
  vi.spyOn(console, "log").mockImplementation(() => {});
});

afterAll(() => {
  vi.restoreAllMocks();
  expectPrototypesClean();
});

describe("the route list", () => {
  it("comes from the OpenAPI document and covers every route the app serves", () => {
    expect(ROUTES.length).toBeGreaterThanOrEqual(30);
    expect(TABLES).toEqual(
      expect.arrayContaining(["users", "user_emails", "devices", "audit_events", "verification_codes"]),
    );
    for (const known of knownRoutes) {
      const covered = ROUTES.some((r) => r.method === known.method && known.pattern.test(concrete(r.path)));
      expect(covered, `${known.method} ${known.pattern} is fuzzed`).toBe(true);
    }
  });
});

describe.each(ROUTES.map((r) => [`${r.method} ${r.path}`, r] as const))("fuzz %s", (_name, route) => {
  it(`${RUNS} hostile requests: no 5xx, the error shape, X-Request-Id, no D1 write when rejected, no pollution`, async () => {
    const a = await actors();
    await fc.assert(
      fc.asyncProperty(planArb(route, a), async (plan) => {
        await runCase(plan);
      }),
      { numRuns: RUNS },
    );
  }, 120_000);
});

describe("fuzz unknown routes and methods", () => {
  // workerd refuses other method names before a request exists.
  const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];
  const segment = fc.oneof(
    fc.constantFrom(
      "v1",
      "users",
      "me",
      "tokens",
      "realms",
      "devices",
      "domains",
      "otp",
      "x",
      "",
      "..",
      "%ZZ",
      "%2F",
      "health",
      "openapi.json",
    ),
    fc.string({ unit: "binary", minLength: 1, maxLength: 12 }).map(encodeSegment),
  );
  const plan = fc
    .record({
      method: fc.constantFrom(...METHODS),
      segments: fc.array(segment, { minLength: 1, maxLength: 6 }),
      v1: fc.boolean(),
      body: bodyArb(null, {}),
      contentType,
    })
    .map(({ method, segments, v1, body, contentType: ct }): Plan => {
      const headers: [string, string][] = [];
      if (body.bytes !== null && ct !== null) headers.push(["Content-Type", ct]);
      return {
        method,
        url: `https://registry.test/${v1 ? "v1/" : ""}${segments.join("/")}`,
        headers,
        body: body.bytes,
        note: body.note,
      };
    });

  it(`${RUNS * 2} random paths: 404 where no route is, 405 for a wrong method, the error shape`, async () => {
    await fc.assert(
      fc.asyncProperty(plan, async (p) => {
        const res = await runCase(p);
        const pathname = new URL(p.url).pathname;
        const routed = pathname.replace(/^\/v1\/realms\/[^/]+(\/.+)$/, "/v1$1");
        if (routed === pathname && !knownRoutes.some((r) => r.pattern.test(routed)) && p.method !== "OPTIONS") {
          // No route at this path for any method: 404, whatever the body or its content type.
          expect(res.status, summary(p, res)).toBe(404);
        }
      }),
      { numRuns: RUNS * 2 },
    );
  }, 120_000);
});

describe("regressions the fuzzing found", () => {
  const raw = (method: string, path: string, headers: [string, string][] = [], body: Uint8Array | null = null) =>
    send({ method, url: `https://registry.test${path}`, headers, body, note: "regression" });

  it("a malformed escape in the realm segment is 404 realm_not_found, not 500", async () => {
    for (const realm of ["%ZZ", "%", "%E0%A4%A", "%ED%A0%80", "%C0%AF"]) {
      for (const [method, path] of [
        ["GET", `/v1/realms/${realm}/users/me`],
        ["POST", `/v1/realms/${realm}/tokens`],
      ] as const) {
        const res = await raw(
          method,
          path,
          [["Content-Type", "application/json"]],
          method === "POST" ? enc.encode("{}") : null,
        );
        expect({ path, status: res.status, body: res.json }).toEqual({
          path,
          status: 404,
          body: { error: { code: "realm_not_found", message: ERRORS.realm_not_found[1] } },
        });
      }
    }
  });

  it("a body that is not JSON is 404 on an unknown route and 405 on a known path, not 415", async () => {
    const text: [string, string][] = [["Content-Type", "text/plain"]];
    expect((await raw("POST", "/v1/nowhere", text, enc.encode("hello"))).status).toBe(404);
    expect((await raw("PUT", "/v1/users/me/nothing", text, enc.encode("x".repeat(20_000)))).status).toBe(404);
    const wrongMethod = await raw("POST", "/v1/users/me", text, enc.encode("hello"));
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get("Allow")).toContain("GET");
    // On a real route the body rules still apply.
    expect((await raw("POST", "/v1/tokens/public", text, enc.encode("hello"))).status).toBe(415);
  });

  it("an empty body without a Content-Type reads as {} (README), not 415", async () => {
    const a = await actors();
    const logout = await raw(
      "POST",
      "/v1/logout",
      [["Authorization", `Bearer ${a.defaultUser.access}`]],
      new Uint8Array(0),
    );
    expect(logout.status).toBe(204);
    const signUp = await raw("POST", "/v1/users", [], new Uint8Array(0));
    expect(signUp.status).toBe(400);
    expect((signUp.json as { error: { code: string } }).error.code).toBe("validation_failed");
    // A body that is not empty still needs the JSON type.
    expect((await raw("POST", "/v1/tokens/public", [], enc.encode("{}"))).status).toBe(415);
  });
});
