import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError } from "../src/errors";
import { makeDeps } from "../src/services/deps";
import { notify } from "../src/services/notifier";
import { api, apiWithEnv, signUp, uniqueEmail } from "./helpers";
import { webhookReceiver } from "./webhook-receiver";

const HOOK = "https://hooks.test/notify";
const SECRET = "test-webhook-secret-5f1c2a9e";
const WEBHOOK = { NOTIFY_WEBHOOK_URL: HOOK, NOTIFY_WEBHOOK_SECRET: SECRET };

interface Received {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string;
}

/** What the test double received at the webhook for one address (other files may share the double). */
async function deliveredTo(to: string): Promise<Received[]> {
  const res = await env.DOUBLE.fetch("http://double/__double/received");
  const all = (await res.json()) as Received[];
  return all.filter((r) => {
    if (r.url !== HOOK) return false;
    try {
      return JSON.parse(r.body).to === to;
    } catch {
      return false;
    }
  });
}

/**
 * A webhook endpoint on its own host, answered inside this test (ok, HTTP 500, or a network
 * error). The double's global `/__double/mode` is not used for failures: test files run in
 * parallel and share the double, so flipping its mode would fail other files' deliveries.
 */
function fakeHook(host: string, behave: () => "ok" | "status" | "network" | "slow") {
  const realFetch = globalThis.fetch;
  const calls: { url: string; headers: Headers; body: string }[] = [];
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const req = new Request(input as RequestInfo, init);
    if (new URL(req.url).hostname !== host) return realFetch(input as RequestInfo, init);
    calls.push({ url: req.url, headers: req.headers, body: await req.text() });
    const how = behave();
    if (how === "network") throw new TypeError("Network connection lost");
    if (how === "slow") {
      // Answers after 5 s, unless the caller gives up first (its AbortSignal).
      await new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, 5_000);
        req.signal.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(req.signal.reason);
        });
      });
      return new Response("ok", { status: 200 });
    }
    return new Response(how === "ok" ? "ok" : "fail", { status: how === "ok" ? 200 : 500 });
  });
  return calls;
}

/** The test's own HMAC-SHA256 of the exact body, hex. */
async function hmacHex(secret: string, body: string): Promise<string> {
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(body)));
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Every line the worker wrote to the console during `fn`. */
async function capturingConsole<T>(fn: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const keep = (...args: unknown[]) => {
    lines.push(args.map(String).join(" "));
  };
  const spies = (["log", "info", "warn", "error", "debug"] as const).map((m) =>
    vi.spyOn(console, m).mockImplementation(keep),
  );
  try {
    return { result: await fn(), lines };
  } finally {
    for (const s of spies) s.mockRestore();
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("notifier: signed webhook", () => {
  it("POSTs the reset code as JSON signed with X-Signature: t=<unix>,v1=<HMAC of t.body>, and an X-Webhook-Id", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const before = Date.now();
    const res = await apiWithEnv(WEBHOOK, "POST", "/v1/users/reset", { body: { email } });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({});

    const got = await deliveredTo(email);
    expect(got).toHaveLength(1);
    const hit = got[0] as Received;
    expect(hit.method).toBe("POST");
    expect(hit.headers["content-type"]).toMatch(/^application\/json/);
    const [, t] = /^t=(\d+),v1=[0-9a-f]{64}$/.exec(hit.headers["x-signature"] ?? "") ?? [];
    expect(Number(t)).toBeGreaterThanOrEqual(Math.floor(before / 1000));
    expect(Number(t)).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000));
    expect(hit.headers["x-signature"]).toBe(`t=${t},v1=${await hmacHex(SECRET, `${t}.${hit.body}`)}`);
    expect(hit.headers["x-webhook-id"]).toMatch(/^[0-9a-f-]{36}$/);
    expect(await webhookReceiver(SECRET).accept(hit.headers, hit.body)).toBe("ok");
    // The signature is over these exact bytes, this time and this secret: anything else does not match.
    expect(await webhookReceiver("another secret").accept(hit.headers, hit.body)).toBe("bad_signature");
    expect(await webhookReceiver(SECRET).accept(hit.headers, `${hit.body} `)).toBe("bad_signature");
    const later = hit.headers["x-signature"]?.replace(`t=${t},`, `t=${Number(t) + 1},`) ?? "";
    expect(await webhookReceiver(SECRET).accept({ ...hit.headers, "x-signature": later }, hit.body)).toBe(
      "bad_signature",
    );

    const payload = JSON.parse(hit.body);
    expect(Object.keys(payload).sort()).toEqual(["channel", "code", "expires_at", "realm", "to", "type"]);
    expect(payload).toMatchObject({
      type: "reset",
      channel: "email",
      to: email,
      realm: "default",
      code: expect.stringMatching(/^\d{8}$/),
    });
    const expires = Date.parse(payload.expires_at);
    expect(expires - before).toBeGreaterThanOrEqual(15 * 60 * 1000 - 1000);
    expect(expires - Date.now()).toBeLessThanOrEqual(15 * 60 * 1000);
    expect(res.text).not.toContain(payload.code);

    // The delivered code is the one that works.
    const done = await api("PUT", "/v1/users/reset", {
      body: { email, code: payload.code, password: "webhook reset pw", password_confirmation: "webhook reset pw" },
    });
    expect(done.status).toBe(204);
  });

  it("a receiver's check: the signed time within 5 minutes, and each X-Webhook-Id once", async () => {
    const email = uniqueEmail();
    await signUp(email);
    await apiWithEnv(WEBHOOK, "POST", "/v1/users/reset", { body: { email } });
    const [hit] = await deliveredTo(email);
    const { headers, body } = hit as Received;
    const t = Number(/^t=(\d+),/.exec(headers["x-signature"] ?? "")?.[1]) * 1000;
    // A replay: the same post (same id) a second time is refused, even within the window.
    const receiver = webhookReceiver(SECRET, { now: () => t + 1000 });
    expect(await receiver.accept(headers, body)).toBe("ok");
    expect(await receiver.accept(headers, body)).toBe("replayed");
    // A post captured and sent again later (a new receiver that forgot the ids): too old.
    expect(await webhookReceiver(SECRET, { now: () => t + 5 * 60_000 }).accept(headers, body)).toBe("ok");
    expect(await webhookReceiver(SECRET, { now: () => t + 5 * 60_000 + 1000 }).accept(headers, body)).toBe("stale");
    // Without an id or with the old signature format: malformed.
    const { "x-webhook-id": _, ...noId } = headers;
    expect(await webhookReceiver(SECRET).accept(noId, body)).toBe("malformed");
    // Each post has its own id. (A second post to another account: v1.1 sends one reset code per
    // account a minute, api.md §16.)
    const other = uniqueEmail();
    await signUp(other);
    await apiWithEnv(WEBHOOK, "POST", "/v1/users/reset", { body: { email: other } });
    const posts = [...(await deliveredTo(email)), ...(await deliveredTo(other))];
    const ids = new Set(posts.map((r) => r.headers["x-webhook-id"]));
    expect(ids.size).toBe(2);
  });

  it("sends nothing for an unknown email, and answers the same", async () => {
    const email = uniqueEmail("nowhere.example");
    const res = await apiWithEnv(WEBHOOK, "POST", "/v1/users/reset", { body: { email } });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({});
    expect(await deliveredTo(email)).toHaveLength(0);
  });

  it("a failing webhook still answers 202 for a reset (no hint that the email exists) and logs no code", async () => {
    const failures = ["network", "status"] as const;
    let round = 0;
    const calls = fakeHook("hooks-down.test", () => failures[round % 2] as "network" | "status");
    for (const ENVIRONMENT of ["test", "production"]) {
      const email = uniqueEmail();
      await signUp(email);
      const { result: res, lines } = await capturingConsole(() =>
        apiWithEnv(
          { NOTIFY_WEBHOOK_URL: "https://hooks-down.test/notify", NOTIFY_WEBHOOK_SECRET: SECRET, ENVIRONMENT },
          "POST",
          "/v1/users/reset",
          {
            body: { email },
          },
        ),
      );
      round++;
      expect(res.status).toBe(202);
      expect(res.body).toEqual({});

      // The attempt reached the webhook (which failed it); the failure is logged without the code or address.
      const mine = calls.filter((c) => JSON.parse(c.body).to === email);
      expect(mine).toHaveLength(1);
      const code = JSON.parse((mine[0] as { body: string }).body).code as string;
      expect(code).toMatch(/^\d{8}$/);
      const failure = lines.map((l) => JSON.parse(l)).find((m) => m.event === "notification_failed");
      expect(failure).toMatchObject({ type: "reset", realm: "default", error: "delivery_failed" });
      const output = lines.join("\n");
      expect(output).not.toContain(code);
      expect(output).not.toContain(email);
      expect(res.text).not.toContain(code);
    }
  });
});

describe("notifier: no webhook", () => {
  it("outside production writes the message to the log and calls nothing", async () => {
    const email = uniqueEmail();
    await signUp(email);
    const { result: res, lines } = await capturingConsole(() =>
      apiWithEnv({}, "POST", "/v1/users/reset", { body: { email } }),
    );
    expect(res.status).toBe(202);
    const msg = lines.map((l) => JSON.parse(l)).find((m) => m.event === "notification" && m.to === email);
    expect(msg).toMatchObject({
      type: "reset",
      channel: "email",
      realm: "default",
      code: expect.stringMatching(/^\d{8}$/),
    });
    expect(await deliveredTo(email)).toHaveLength(0);
  });

  it("in production answers 503 delivery_unavailable for every reset, known email or not", async () => {
    const known = uniqueEmail();
    const user = await signUp(known);
    const unknown = uniqueEmail("nowhere.example");
    const { result, lines } = await capturingConsole(async () => ({
      a: await apiWithEnv({ ENVIRONMENT: "production" }, "POST", "/v1/users/reset", { body: { email: known } }),
      b: await apiWithEnv({ ENVIRONMENT: "production" }, "POST", "/v1/users/reset", { body: { email: unknown } }),
    }));
    const { a, b } = result;
    expect(a.status).toBe(503);
    expect(a.body.error.code).toBe("delivery_unavailable");
    expect(b.status).toBe(503);
    expect(b.text).toBe(a.text);
    expect(lines.some((l) => l.includes('"event":"notification"'))).toBe(false);
    const row = await env.DB.prepare("SELECT count(*) AS n FROM verification_codes WHERE subject = ?")
      .bind(user.id)
      .first<{ n: number }>();
    expect(row?.n).toBe(0);
  });
});

describe("notify()", () => {
  const depsWith = (overrides: Record<string, string>) => makeDeps({ ...env, ...overrides }, Date.now(), () => {});
  const message = (to: string) => ({
    type: "otp" as const,
    channel: "sms" as const,
    to,
    realm: "default",
    code: "123456",
    expires_at: new Date().toISOString(),
  });
  const hookOn = (host: string) => ({ NOTIFY_WEBHOOK_URL: `https://${host}/notify`, NOTIFY_WEBHOOK_SECRET: SECRET });

  it("resolves when the webhook accepts, with a body the test can verify", async () => {
    const calls = fakeHook("hooks-ok.test", () => "ok");
    await notify(await depsWith(hookOn("hooks-ok.test")), message("+15550000000"));
    expect(calls).toHaveLength(1);
    const call = calls[0] as { headers: Headers; body: string };
    const headers = Object.fromEntries(call.headers);
    expect(await webhookReceiver(SECRET).accept(headers, call.body)).toBe("ok");
    expect(JSON.parse(call.body)).toMatchObject({ type: "otp", channel: "sms", to: "+15550000000", code: "123456" });
  });

  it("throws 502 delivery_failed when the webhook answers an error or cannot be reached", async () => {
    for (const how of ["status", "network"] as const) {
      fakeHook("hooks-down.test", () => how);
      const err = await notify(await depsWith(hookOn("hooks-down.test")), message("+15550000001")).catch((e) => e);
      expect(err, how).toBeInstanceOf(ApiError);
      expect(err.code).toBe("delivery_failed");
      expect(err.status).toBe(502);
      vi.restoreAllMocks();
    }
  });

  it("gives up on a webhook that takes longer than an interactive request can wait", async () => {
    fakeHook("hooks-slow.test", () => "slow");
    const started = Date.now();
    const err = await notify(await depsWith(hookOn("hooks-slow.test")), message("+15550000003")).catch((e) => e);
    // A 5 s answer is too late: the send fails (502) rather than holding the client for it.
    expect(err).toBeInstanceOf(ApiError);
    expect(err.code).toBe("delivery_failed");
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("throws 503 delivery_unavailable in production without a webhook", async () => {
    const err = await notify(await depsWith({ ENVIRONMENT: "production" }), message("+15550000002")).catch((e) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err.code).toBe("delivery_unavailable");
    expect(err.status).toBe(503);
  });
});
