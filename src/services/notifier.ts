import { hex } from "../crypto/encoding";
import { hmacSha256 } from "../crypto/random";
import { ApiError } from "../errors";
import type { Deps } from "./deps";

/** A message for a person: a code (OTP, reset, welcome) or a notice (an account awaiting approval). */
export interface Notification {
  type: "otp" | "reset" | "welcome" | "verify_email" | "email_changed" | "approval_needed";
  channel: "sms" | "email";
  to: string;
  realm: string;
  code?: string;
  expires_at?: string;
  /** Extra fields for notices (never a secret). */
  data?: Record<string, unknown>;
}

/**
 * The `X-Signature` header of a post (api.md §8): `t=<unix seconds>,v1=<hex HMAC-SHA256 of
 * "<t>.<body>" under NOTIFY_WEBHOOK_SECRET>`. The time is signed with the body, so a receiver can
 * refuse an old post, and with `X-Webhook-Id` one it has seen before.
 */
export async function signPayload(secret: string, body: string, t: number): Promise<string> {
  return `t=${t},v1=${hex(await hmacSha256(secret, `${t}.${body}`))}`;
}

/** False in production without a webhook: every notify() would answer 503 delivery_unavailable. */
export function deliveryAvailable(config: Deps["config"]): boolean {
  return Boolean(config.NOTIFY_WEBHOOK_URL && config.NOTIFY_WEBHOOK_SECRET) || config.ENVIRONMENT !== "production";
}

/** The JSON object posted for a notification (api.md §8). */
function notificationPayload(n: Notification): Record<string, unknown> {
  const payload: Record<string, unknown> = { type: n.type, channel: n.channel, to: n.to, realm: n.realm };
  if (n.code !== undefined) payload.code = n.code;
  if (n.expires_at !== undefined) payload.expires_at = n.expires_at;
  if (n.data) Object.assign(payload, n.data);
  return payload;
}

/** A queued notification: the payload to post, as the consumer receives it. */
export interface QueuedNotification {
  v: 1;
  payload: Record<string, unknown>;
}

/**
 * How long a post may take: a client waits for a direct one (an OTP send answers only after
 * it), so a few seconds; the queue's consumer has no one waiting and retries anyway.
 */
const DIRECT_TIMEOUT_MS = 3_000;
const QUEUED_TIMEOUT_MS = 10_000;

/**
 * Posts one payload to the webhook, signed now (at delivery, so a queued message that waited or
 * was retried still carries a current time), with `id` as `X-Webhook-Id`. Throws ApiError
 * delivery_failed when the webhook cannot be reached within `timeoutMs` or answers other than 2xx.
 */
async function postWebhook(
  url: string,
  secret: string,
  payload: Record<string, unknown>,
  id: string,
  timeoutMs: number,
): Promise<void> {
  const body = JSON.stringify(payload);
  const signature = await signPayload(secret, body, Math.floor(Date.now() / 1000));
  let res: Response;
  try {
    res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Signature": signature, "X-Webhook-Id": id },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch {
    throw new ApiError("delivery_failed");
  }
  // Drain the body so the connection can be reused.
  await res.body?.cancel().catch(() => {});
  if (!res.ok) throw new ApiError("delivery_failed");
}

/**
 * Delivers a notification (api.md §8): a signed webhook when NOTIFY_WEBHOOK_URL is set
 * (502 delivery_failed when it fails) — through the NOTIFY_QUEUE when that binding exists, so
 * the API answers at once and a failed delivery is retried, not lost; otherwise the log outside
 * production (the only place a code is ever logged, for `wrangler dev`), and 503
 * delivery_unavailable in production.
 */
export async function notify(deps: Deps, n: Notification): Promise<void> {
  const { NOTIFY_WEBHOOK_URL: url, NOTIFY_WEBHOOK_SECRET: secret, ENVIRONMENT } = deps.config;
  const payload = notificationPayload(n);
  if (!url || !secret) {
    if (ENVIRONMENT === "production") throw new ApiError("delivery_unavailable");
    console.log(JSON.stringify({ level: "info", event: "notification", dev_only: true, ...payload }));
    return;
  }
  const queue = deps.env.NOTIFY_QUEUE;
  if (queue) {
    try {
      await queue.send({ v: 1, payload } satisfies QueuedNotification, { contentType: "json" });
    } catch {
      throw new ApiError("delivery_failed");
    }
    return;
  }
  await postWebhook(url, secret, payload, crypto.randomUUID(), DIRECT_TIMEOUT_MS);
}

/**
 * notify() that settles quietly: a failure is logged (the type, the realm and the error code;
 * never the address or a code) and resolves. For deliveries that run after the response.
 */
export function notifyQuietly(deps: Deps, n: Notification): Promise<void> {
  return notify(deps, n).catch((e) => {
    console.error(
      JSON.stringify({
        level: "error",
        event: "notification_failed",
        type: n.type,
        realm: n.realm,
        error: e instanceof ApiError ? e.code : "internal_error",
      }),
    );
  });
}

/** Backoff between queue retries: 10 s, 20 s, 40 s … at most 10 minutes. */
export const retryDelaySeconds = (attempts: number) => Math.min(10 * 2 ** Math.max(0, attempts - 1), 600);

/**
 * The queue consumer: posts each message's signed webhook; a failure is retried with backoff
 * (after max_retries the queue moves it to the dead-letter queue, see wrangler.toml); a message
 * that is not ours is acknowledged and logged, never retried forever.
 */
export async function deliverBatch(
  batch: MessageBatch<unknown>,
  config: { NOTIFY_WEBHOOK_URL?: string; NOTIFY_WEBHOOK_SECRET?: string },
): Promise<void> {
  const { NOTIFY_WEBHOOK_URL: url, NOTIFY_WEBHOOK_SECRET: secret } = config;
  for (const msg of batch.messages) {
    const body = msg.body as Partial<QueuedNotification> | null;
    if (body?.v !== 1 || typeof body.payload !== "object" || body.payload === null) {
      console.error(JSON.stringify({ level: "error", event: "notification_dropped", reason: "malformed", id: msg.id }));
      msg.ack();
      continue;
    }
    if (!url || !secret) {
      msg.retry({ delaySeconds: retryDelaySeconds(msg.attempts) });
      continue;
    }
    try {
      // The queue's message id: unique per message and the same on every retry, so a receiver that
      // got a post whose answer was lost refuses the retry as a replay instead of sending twice.
      await postWebhook(url, secret, body.payload, msg.id, QUEUED_TIMEOUT_MS);
      msg.ack();
    } catch {
      // Never the payload: it may hold a code.
      console.error(
        JSON.stringify({
          level: "warn",
          event: "notification_retry",
          id: msg.id,
          attempts: msg.attempts,
          type: body.payload.type,
        }),
      );
      msg.retry({ delaySeconds: retryDelaySeconds(msg.attempts) });
    }
  }
}
