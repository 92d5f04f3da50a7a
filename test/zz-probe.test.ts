import { env } from "cloudflare:workers";
import { afterEach, expect, it, vi } from "vitest";
import { api, newSession, claimsOf } from "./helpers";

afterEach(() => vi.useRealTimers());
it("fake clock reaches worker and DO", async () => {
  const { pair } = await newSession();
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(Date.now() + 16 * 60_000);
  const me = await api("GET", "/v1/users/me", { token: pair.access_token });
  console.log(me.status, me.body);
  const r = await env.CONSUMER.fetch("http://consumer/verify", { method: "POST", body: JSON.stringify({ token: pair.access_token }) });
  console.log(await r.text());
  vi.setSystemTime(Date.now() + 31 * 86400_000);
  const rr = await api("POST", "/v1/tokens/refresh", { body: { refresh_token: pair.refresh_token } });
  console.log(rr.status, rr.body);
});
