import { describe, expect, it } from "vitest";
import { api, newSession } from "./helpers";

describe("smoke", () => {
  it("health", async () => {
    const res = await api("GET", "/health");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
  });
  it("sign-up, login, me", async () => {
    const { pair, email } = await newSession();
    const me = await api("GET", "/v1/users/me", { token: pair.access_token });
    expect(me.status).toBe(200);
    expect(me.body.email).toBe(email);
  });
});
