// The findings of a hostile review (docs/api.md §16), one test per attack.
import { afterEach, describe, expect, it, vi } from "vitest";
import { api, createRealm, newSession, signUp, uniqueEmail, withPrefix } from "./helpers";

afterEach(() => {
  vi.useRealTimers();
});

describe("paths are judged as the router decodes them", () => {
  it("an encoded realm prefix is that realm (or 404), never realm default", async () => {
    const { pair } = await newSession();
    const b = await createRealm();
    // `%72` is `r`: the router routes /v1/realms/<b>/users/me, so the realm must be b.
    const encoded = await api("GET", `/v1/%72ealms/${b}/users/me`, { token: pair.access_token });
    expect(encoded.status).toBe(401);
    expect(encoded.body.error.code).toBe("invalid_token");
    const unknown = await api("GET", "/v1/%72ealms/no-such-realm/users/me", { token: pair.access_token });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe("realm_not_found");
    // Encoding inside the realm name decodes too: a user of realm b is found under %-escapes of b.
    const email = uniqueEmail();
    await signUp(email, {}, `/v1/realms/${b}`);
    const escaped = [...b].map((ch) => `%${ch.charCodeAt(0).toString(16)}`).join("");
    const login = await api("POST", withPrefix(`/v1/realms/${escaped}`, "/v1/tokens"), {
      body: { email, password: "correct horse battery" },
    });
    expect(login.status).toBe(200);
    expect(login.body.user.realm).toBe(b);
  });
});
