import { exports } from "cloudflare:workers";
import { hc } from "hono/client";
import { describe, expect, it } from "vitest";
import type { AppType } from "../src/index";
import { PASSWORD, uniqueEmail } from "./helpers";

const worker = (exports as unknown as { default: Fetcher }).default;

/** Hono's typed client over the exported route types, talking to the worker under test. */
const client = hc<AppType>("https://registry.test", {
  fetch: (input: RequestInfo | URL, init?: RequestInit) => worker.fetch(new Request(input, init)),
});

describe("typed client (hc<AppType>)", () => {
  it("signs up, logs in and reads /me with typed requests and responses", async () => {
    const email = uniqueEmail();
    const signed = await client.v1.users.$post({ json: { email, password: PASSWORD, full_name: "Typed" } });
    expect(signed.status).toBe(201);
    const login = await client.v1.tokens.$post({ json: { email, password: PASSWORD } });
    expect(login.status).toBe(200);
    if (login.status !== 200) throw new Error("login failed");
    const pair = await login.json();
    // Typed: the compiler knows access_token is a string and user.email a string | null.
    const token: string = pair.access_token;
    const me = await client.v1.users.me.$get({}, { headers: { Authorization: `Bearer ${token}` } });
    expect(me.status).toBe(200);
    if (me.status !== 200) throw new Error("me failed");
    const user = await me.json();
    const userEmail: string | null = user.email;
    expect(userEmail).toBe(email);
  });
});
