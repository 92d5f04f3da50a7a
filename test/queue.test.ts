import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { retryDelaySeconds, signPayload } from "../src/services/notifier";
import { apiWithEnv, frozenClock, uniqueEmail, waitFor } from "./helpers";
import { webhookReceiver } from "./webhook-receiver";

const HOOK = { NOTIFY_WEBHOOK_URL: "https://hooks.test/queue", NOTIFY_WEBHOOK_SECRET: "queue-test-webhook-secret" };
const FAILING = { ...HOOK, NOTIFY_WEBHOOK_URL: "https://fail.hooks.test/queue" };

const received = async () =>
  (await (await env.DOUBLE.fetch("http://double/__double/received")).json()) as {
    url: string;
    headers: Record<string, string>;
    body: string;
  }[];

async function consume(overrides: Record<string, string>, messages: { id: string; attempts: number; body: unknown }[]) {
  const batch = createMessageBatch(
    "user-registry-notify",
    messages.map((m) => ({ ...m, timestamp: new Date() })),
  );
  const ctx = createExecutionContext();
  await worker.queue(batch, { ...env, ...overrides }, ctx);
  return getQueueResult(batch, ctx);
}

describe("queued delivery: the consumer", () => {
  it("posts the signed webhook and acknowledges", async () => {
    const to = uniqueEmail();
    const payload = {
      type: "reset",
      channel: "email",
      to,
      code: "12345678",
      realm: "default",
      expires_at: "2026-01-01T00:00:00.000Z",
    };
    const result = await consume(HOOK, [{ id: "m1", attempts: 1, body: { v: 1, payload } }]);
    expect(result.explicitAcks).toEqual(["m1"]);
    expect(result.retryMessages).toEqual([]);
    const hit = (await received()).find((r) => r.url === HOOK.NOTIFY_WEBHOOK_URL && r.body.includes(to));
    expect(hit).toBeDefined();
    expect(JSON.parse(hit?.body ?? "{}")).toEqual(payload);
    // Signed at delivery, with the queue message's id (the same on every retry of it).
    expect(hit?.headers["x-webhook-id"]).toBe("m1");
    expect(await webhookReceiver(HOOK.NOTIFY_WEBHOOK_SECRET).accept(hit?.headers ?? {}, hit?.body ?? "")).toBe("ok");
  });

  it("signs at delivery time: a message that waited in the queue carries the time it was posted", async () => {
    const to = uniqueEmail();
    const payload = { type: "verify_email", channel: "email", to, code: "12345678", realm: "default" };
    const sentAt = Date.now();
    const clock = frozenClock(sentAt + 3_600_000);
    try {
      const result = await consume(HOOK, [{ id: "late-1", attempts: 2, body: { v: 1, payload } }]);
      expect(result.explicitAcks).toEqual(["late-1"]);
      const hit = (await received()).find((r) => r.body.includes(to));
      const t = Number(/^t=(\d+),/.exec(hit?.headers["x-signature"] ?? "")?.[1]);
      expect(t).toBe(Math.floor(clock.now / 1000));
      expect(await signPayload(HOOK.NOTIFY_WEBHOOK_SECRET, hit?.body ?? "", t)).toBe(hit?.headers["x-signature"]);
      // A receiver an hour later than the enqueue, but in step with the delivery, accepts it.
      const receiver = webhookReceiver(HOOK.NOTIFY_WEBHOOK_SECRET, { now: () => clock.now });
      expect(await receiver.accept(hit?.headers ?? {}, hit?.body ?? "")).toBe("ok");
    } finally {
      vi.useRealTimers();
    }
  });

  it("retries a failed delivery with growing delays, never loses it", async () => {
    const payload = { type: "otp", channel: "sms", to: "+15550000001", code: "123456", realm: "default" };
    const result = await consume(FAILING, [
      { id: "a", attempts: 1, body: { v: 1, payload } },
      { id: "b", attempts: 3, body: { v: 1, payload } },
    ]);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((m) => m.msgId)).toEqual(["a", "b"]);
    // Backoff by attempt: 10 s, 20 s, 40 s … capped at 10 minutes.
    expect([1, 2, 3, 4, 7, 20].map(retryDelaySeconds)).toEqual([10, 20, 40, 80, 600, 600]);
  });

  it("acknowledges (and logs) a message that is not a notification, instead of retrying it forever", async () => {
    const result = await consume(HOOK, [
      { id: "x", attempts: 1, body: "nonsense" },
      { id: "y", attempts: 1, body: { v: 2, payload: {} } },
    ]);
    expect(result.explicitAcks.sort()).toEqual(["x", "y"]);
    expect(result.retryMessages).toEqual([]);
  });

  it("keeps messages (retries) while no webhook is configured", async () => {
    const result = await consume({}, [{ id: "z", attempts: 1, body: { v: 1, payload: { type: "otp" } } }]);
    expect(result.retryMessages.map((m) => m.msgId)).toEqual(["z"]);
    expect(result.explicitAcks).toEqual([]);
  });
});

describe("queued delivery: the producer", () => {
  it("answers 202 at once and puts the notification on the queue instead of posting inline", async () => {
    const phone = `+1555${Math.floor(1e6 + Math.random() * 8e6)}`;
    const before = (await received()).filter((r) => r.body.includes(phone)).length;
    const res = await apiWithEnv({ ...FAILING, NOTIFY_QUEUE: env.TEST_NOTIFY_QUEUE }, "POST", "/v1/otp", {
      body: { phone_number: phone },
    });
    // Even with a failing webhook: the queue owns delivery now.
    expect(res.status).toBe(202);
    expect((await received()).filter((r) => r.body.includes(phone)).length).toBe(before);
    const queued = await waitFor(async () => {
      const all = (await (await env.DOUBLE.fetch("http://double/__double/queued")).json()) as {
        body: { v: number; payload: Record<string, unknown> };
      }[];
      return all.find((m) => m.body.payload.to === phone);
    }, 10_000);
    expect(queued.body.v).toBe(1);
    expect(queued.body.payload).toMatchObject({ type: "otp", channel: "sms", to: phone, realm: "default" });
    expect(String(queued.body.payload.code)).toMatch(/^\d{6}$/);
    // Nothing is signed at enqueue time: the consumer signs when it posts (see above).
    expect(Object.keys(queued.body).sort()).toEqual(["payload", "v"]);
  });
});
