import { hex } from "../crypto/encoding";
import { hmacSha256 } from "../crypto/random";
import { ApiError } from "../errors";
import type { Deps } from "./deps";

/** A message for a person: a code (OTP, reset, welcome) or a notice (an account awaiting approval). */
export interface Notification {
  type: "otp" | "reset" | "welcome" | "approval_needed";
  channel: "sms" | "email";
  to: string;
  realm: string;
  code?: string;
  expires_at?: string;
  /** Extra fields for notices (never a secret). */
  data?: Record<string, unknown>;
}

/** The exact bytes posted, and their signature header: `sha256=<hex HMAC-SHA256(body, NOTIFY_WEBHOOK_SECRET)>`. */
export async function signPayload(secret: string, body: string): Promise<string> {
  return `sha256=${hex(await hmacSha256(secret, body))}`;
}

/** False in production without a webhook: every notify() would answer 503 delivery_unavailable. */
export function deliveryAvailable(config: Deps["config"]): boolean {
  return Boolean(config.NOTIFY_WEBHOOK_URL && config.NOTIFY_WEBHOOK_SECRET) || config.ENVIRONMENT !== "production";
}

/**
 * Delivers a notification (api.md §8): a signed webhook when NOTIFY_WEBHOOK_URL is set
 * (502 delivery_failed when it fails); otherwise the log outside production (the only place
 * a code is ever logged, for `wrangler dev`), and 503 delivery_unavailable in production.
 */
export async function notify(deps: Deps, n: Notification): Promise<void> {
  const { NOTIFY_WEBHOOK_URL: url, NOTIFY_WEBHOOK_SECRET: secret, ENVIRONMENT } = deps.config;
  const payload: Record<string, unknown> = { type: n.type, channel: n.channel, to: n.to, realm: n.realm };
  if (n.code !== undefined) payload.code = n.code;
  if (n.expires_at !== undefined) payload.expires_at = n.expires_at;
  if (n.data) Object.assign(payload, n.data);
  if (!url || !secret) {
    if (ENVIRONMENT === "production") throw new ApiError("delivery_unavailable");
    console.log(JSON.stringify({ level: "info", event: "notification", dev_only: true, ...payload }));
    return;
  }
  const body = JSON.stringify(payload);
  let res: Response;
  try {
    res = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Signature": await signPayload(secret, body) },
      body,
      signal: AbortSignal.timeout(10_000),
    });
  } catch {
    throw new ApiError("delivery_failed");
  }
  // Drain the body so the connection can be reused.
  await res.body?.cancel().catch(() => {});
  if (!res.ok) throw new ApiError("delivery_failed");
}
