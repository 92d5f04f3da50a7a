/**
 * A webhook receiver as a notifier's integrator would write it (the README's check): the
 * signature is `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`; a post older (or newer)
 * than five minutes is refused, and so is an `X-Webhook-Id` seen before.
 */
export type Verdict = "ok" | "malformed" | "bad_signature" | "stale" | "replayed";

const enc = new TextEncoder();

async function hmacHex(secret: string, text: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, enc.encode(text)));
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export function webhookReceiver(secret: string, opts: { now?: () => number; windowSeconds?: number } = {}) {
  const seen = new Set<string>();
  const now = opts.now ?? (() => Date.now());
  const window = opts.windowSeconds ?? 300;
  return {
    seen,
    async accept(headers: Record<string, string | undefined>, body: string): Promise<Verdict> {
      const sig = headers["x-signature"] ?? "";
      const id = headers["x-webhook-id"];
      const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig);
      if (!m || !id) return "malformed";
      const [, t, v1] = m as unknown as [string, string, string];
      const expected = await hmacHex(secret, `${t}.${body}`);
      // Constant time, as a real receiver should compare.
      let diff = expected.length ^ v1.length;
      for (let i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ v1.charCodeAt(i);
      if (diff !== 0) return "bad_signature";
      if (Math.abs(Math.floor(now() / 1000) - Number(t)) > window) return "stale";
      if (seen.has(id)) return "replayed";
      seen.add(id);
      return "ok";
    },
  };
}
