import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { apiWithEnv, claimsOf, configuredKey, otherKey, PASSWORD, uniqueEmail } from "./helpers";

const keysEnv = (...keys: object[]) => ({ JWT_PRIVATE_KEYS: JSON.stringify(keys) });
const header = (token: string) =>
  JSON.parse(atob((token.split(".")[0] as string).replace(/-/g, "+").replace(/_/g, "/")));

describe("signing-key rotation without logging anybody out", () => {
  it("new key first: new tokens carry its kid, old tokens verify until the old key is dropped", async () => {
    const oldKey = configuredKey(); // kid test-1
    const newKey = otherKey(); // kid test-2
    const email = uniqueEmail();
    const before = keysEnv(oldKey);
    const during = keysEnv(newKey, oldKey);
    const after = keysEnv(newKey);

    expect(
      (await apiWithEnv(before, "POST", "/v1/users", { body: { email, password: PASSWORD, full_name: "R" } })).status,
    ).toBe(201);
    const oldPair = (await apiWithEnv(before, "POST", "/v1/tokens", { body: { email, password: PASSWORD } })).body;
    expect(header(oldPair.access_token).kid).toBe("test-1");

    // Step 1: the new key goes in front.
    const jwks = await apiWithEnv(during, "GET", "/.well-known/jwks.json");
    expect(jwks.body.keys.map((k: { kid: string }) => k.kid)).toEqual(["test-2", "test-1"]);
    for (const k of jwks.body.keys) expect(k).not.toHaveProperty("d");
    const newPair = (await apiWithEnv(during, "POST", "/v1/tokens", { body: { email, password: PASSWORD } })).body;
    expect(header(newPair.access_token).kid).toBe("test-2");
    // Old tokens keep working, and refreshing one yields a token of the new key.
    expect((await apiWithEnv(during, "GET", "/v1/users/me", { token: oldPair.access_token })).status).toBe(200);
    const refreshed = await apiWithEnv(during, "POST", "/v1/tokens/refresh", {
      body: { refresh_token: oldPair.refresh_token },
    });
    expect(refreshed.status).toBe(200);
    expect(header(refreshed.body.access_token).kid).toBe("test-2");
    expect(claimsOf(refreshed.body.access_token).sub).toBe(claimsOf(oldPair.access_token).sub);

    // Step 2, after the old tokens have expired: drop the old key.
    const dropped = await apiWithEnv(after, "GET", "/v1/users/me", { token: oldPair.access_token });
    expect(dropped.status).toBe(401);
    expect(dropped.body.error.code).toBe("invalid_token");
    expect((await apiWithEnv(after, "GET", "/v1/users/me", { token: newPair.access_token })).status).toBe(200);
    expect(
      (await apiWithEnv(after, "GET", "/.well-known/jwks.json")).body.keys.map((k: { kid: string }) => k.kid),
    ).toEqual(["test-2"]);
    // Refresh tokens do not depend on the signing key: the session survives the whole rotation.
    const survived = await apiWithEnv(after, "POST", "/v1/tokens/refresh", {
      body: { refresh_token: refreshed.body.refresh_token },
    });
    expect(survived.status).toBe(200);
    expect(env.JWT_PRIVATE_KEYS).toContain("test-1");
  });
});
