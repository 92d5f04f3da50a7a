import { ApiError } from "../errors";
import type { RealmRow } from "../storage/schema";
import type { Deps } from "./deps";

const SITEVERIFY_URL = "https://challenges.cloudflare.com/turnstile/v0/siteverify";

/**
 * Turnstile check (docs/api.md §4, §6) for sign-up and OTP send. Required when TURNSTILE_SECRET is
 * set or the realm has captcha_required. Missing or rejected: 400 captcha_failed. A realm that
 * requires it without a configured secret, or siteverify unreachable: 503 captcha_unavailable
 * (fail closed: an outage must not switch the check off).
 */
export async function checkCaptcha(deps: Deps, realm: RealmRow, token: string | undefined, ip: string | null) {
  const secret = deps.config.TURNSTILE_SECRET;
  if (!secret && !realm.captchaRequired) return;
  if (!secret) throw new ApiError("captcha_unavailable");
  if (!token) throw new ApiError("captcha_failed", "A captcha token is required");
  const form = new URLSearchParams({ secret, response: token });
  if (ip) form.set("remoteip", ip);
  let outcome: { success?: unknown };
  try {
    const res = await fetch(SITEVERIFY_URL, { method: "POST", body: form, signal: AbortSignal.timeout(5_000) });
    if (!res.ok) throw new Error(`siteverify answered ${res.status}`);
    outcome = (await res.json()) as { success?: unknown };
  } catch (e) {
    console.error(JSON.stringify({ level: "error", event: "captcha_unavailable", error: String(e) }));
    throw new ApiError("captcha_unavailable");
  }
  if (outcome.success !== true) throw new ApiError("captcha_failed");
}
