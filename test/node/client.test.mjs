// user-registry/client (docs/api.md §14) against the running worker: typed calls, storage, and
// authFetch's single-flight refresh.
import { describe, expect, it } from "vitest";
import { createClient, memoryStorage, RegistryError } from "../../lib/client.js";
import { api, PASSWORD, registry, resign, uniqueEmail } from "./registry.mjs";

/** A client whose requests are recorded ("METHOD /path"). */
function recorded(storage = memoryStorage()) {
  const calls = [];
  const client = createClient({
    baseUrl: registry().url,
    storage,
    fetch: (url, init) => {
      calls.push(`${init?.method ?? "GET"} ${new URL(url).pathname}`);
      return fetch(url, init);
    },
  });
  return { client, calls, storage };
}

describe("createClient", () => {
  it("signs up, logs in, reads /me and lists devices; errors carry the code", async () => {
    const { client, storage } = recorded();
    const email = uniqueEmail();
    const user = await client.signUp({ email, password: PASSWORD, full_name: "Client Person" });
    expect(user.email).toBe(email);
    const pair = await client.login({ email, password: PASSWORD });
    expect(await storage.get("user-registry:refresh_token")).toBe(pair.refresh_token);
    expect((await client.me()).id).toBe(user.id);
    expect((await client.devices()).devices.map((d) => d.device_id)).toEqual([pair.device_id]);
    const err = await client.login({ email, password: "wrong password" }).catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect({ status: err.status, code: err.code }).toEqual({ status: 401, code: "invalid_credentials" });
  });

  it("10 concurrent calls with an expired access token: exactly one refresh, and all succeed", async () => {
    const { client, calls, storage } = recorded();
    const email = uniqueEmail();
    await client.signUp({ email, password: PASSWORD, full_name: "Race" });
    const pair = await client.login({ email, password: PASSWORD });
    const past = Math.floor(Date.now() / 1000) - 60;
    const expired = await resign(pair.access_token, { iat: past - 900, exp: past });
    expect((await api("GET", "/v1/users/me", { token: expired })).body.error.code).toBe("token_expired");
    await storage.set("user-registry:access_token", expired);
    calls.length = 0;
    const results = await Promise.all(Array.from({ length: 10 }, () => client.me()));
    expect(results.every((u) => u.email === email)).toBe(true);
    expect(calls.filter((c) => c === "POST /v1/tokens/refresh")).toHaveLength(1);
    expect(await storage.get("user-registry:access_token")).not.toBe(expired);
    // The rotated refresh token is the one kept: another refresh works.
    expect((await client.refresh()).access_token).toBeTruthy();
  });

  it("a session that ended: the refresh fails with its code, the tokens are forgotten", async () => {
    const { client, storage } = recorded();
    const email = uniqueEmail();
    await client.signUp({ email, password: PASSWORD, full_name: "Gone" });
    const pair = await client.login({ email, password: PASSWORD });
    const past = Math.floor(Date.now() / 1000) - 60;
    await api("POST", "/v1/logout", { token: pair.access_token, body: {} });
    await storage.set("user-registry:access_token", await resign(pair.access_token, { iat: past - 900, exp: past }));
    const err = await client.me().catch((e) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.status).toBe(401);
    expect(await storage.get("user-registry:refresh_token")).toBeNull();
  });
});
