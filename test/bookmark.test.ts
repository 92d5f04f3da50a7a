import { describe, expect, it } from "vitest";
import { api, PASSWORD, uniqueEmail } from "./helpers";

describe("D1 Sessions API: read-your-writes across requests with a bookmark", () => {
  it("answers with a bookmark and accepts it back", async () => {
    const email = uniqueEmail();
    const signed = await api("POST", "/v1/users", { body: { email, password: PASSWORD, full_name: "B" } });
    expect(signed.status).toBe(201);
    const afterWrite = signed.headers.get("X-D1-Bookmark");
    expect(afterWrite).toMatch(/^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{32}$/);

    const pair = await api("POST", "/v1/tokens", {
      body: { email, password: PASSWORD },
      headers: { "X-D1-Bookmark": afterWrite as string },
    });
    expect(pair.status).toBe(200);
    const me = await api("GET", "/v1/users/me", {
      token: pair.body.access_token,
      headers: { "X-D1-Bookmark": pair.headers.get("X-D1-Bookmark") as string },
    });
    expect(me.status).toBe(200);
    expect(me.body.email).toBe(email);
    // Bookmarks only move forward.
    expect((me.headers.get("X-D1-Bookmark") as string) >= (afterWrite as string)).toBe(true);
  });

  it("ignores a bookmark it cannot use instead of failing", async () => {
    for (const bogus of [
      "not a bookmark!",
      "x".repeat(300),
      "0000",
      "ffffffff-ffffffff-ffffffff-ffffffffffffffffffffffffffffffff",
    ]) {
      const res = await api("POST", "/v1/users", {
        body: { email: uniqueEmail(), password: PASSWORD, full_name: "B" },
        headers: { "X-D1-Bookmark": bogus },
      });
      expect(res.status, bogus).toBe(201);
    }
  });
});
