import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { OUTBOX_RETRY_MS } from "../src/storage/device-session";
import { Faults, faultyApi } from "./faults";
import { claimsOf, login, newSession } from "./helpers";
import { codeOf, deviceStub, listDevices, me, refresh, strictProbe } from "./session-helpers";

/** Rows of the D1 device index of a user. */
async function indexRows(userId: string) {
  const r = await env.DB.prepare("SELECT device_id, session_id FROM devices WHERE user_id = ?").bind(userId).all();
  return r.results;
}

describe("a logout whose follow-up writes fail still revokes everything (the session object's outbox)", () => {
  it("KV blacklist write fails: 204, the object keeps the tokens, and its alarm blacklists them", async () => {
    const { user, pair } = await newSession();
    const faults = new Faults({ failAt: 1, kinds: ["kv-write"] });
    const res = await faultyApi(faults, "POST", "/v1/logout", { token: pair.access_token, body: {} });
    expect(faults.failed?.what).toMatch(/^put bl:/);
    // The session ended in its object: that is the logout. The failed write does not make it a 500.
    expect(res.status).toBe(204);
    expect(codeOf(await strictProbe(pair.access_token))).toBe("session_revoked");

    // The obligation is kept in the object, not lost: its alarm carries it out.
    const stub = deviceStub(user.id, pair.device_id);
    expect(await env.TOKENS.get(`bl:${claimsOf(pair.access_token).jti}`)).toBeNull();
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await env.TOKENS.get(`bl:${claimsOf(pair.access_token).jti}`)).toBe("1");
    expect(codeOf(await me(pair.access_token))).toBe("token_revoked");
    expect(codeOf(await refresh(pair.refresh_token))).toBe("session_revoked");
    // Done: nothing is left in the object, and no alarm.
    expect(await runDurableObjectAlarm(stub)).toBe(false);
  });

  it("a retried logout carries out what the failed one left at once", async () => {
    const { pair } = await newSession();
    const faults = new Faults({ failAt: 1, kinds: ["kv-write"] });
    expect((await faultyApi(faults, "POST", "/v1/logout", { token: pair.access_token, body: {} })).status).toBe(204);
    // The token is not on the blacklist yet, so a non-strict route still takes it: the client's retry.
    const retry = await faultyApi(new Faults(), "POST", "/v1/logout", { token: pair.access_token, body: {} });
    expect(retry.status).toBe(204);
    expect(codeOf(await me(pair.access_token))).toBe("token_revoked");
  });

  it("index delete fails: 204, and the alarm deletes the ended session's row", async () => {
    const { user, pair } = await newSession();
    const faults = new Faults({ failAt: 1, kinds: ["d1-write"] });
    const res = await faultyApi(faults, "POST", "/v1/logout", { token: pair.access_token, body: {} });
    expect(faults.failed?.what).toMatch(/^delete from "devices"/);
    expect(res.status).toBe(204);
    expect(await indexRows(user.id)).toHaveLength(1);
    expect(await runDurableObjectAlarm(deviceStub(user.id, pair.device_id))).toBe(true);
    expect(await indexRows(user.id)).toHaveLength(0);
  });

  it("a new login on the device does not drop what the old session's end still owes", async () => {
    const { user, pair, email } = await newSession();
    const faults = new Faults({ failAt: 1, kinds: ["kv-write"] });
    expect((await faultyApi(faults, "POST", "/v1/logout", { token: pair.access_token, body: {} })).status).toBe(204);
    const stub = deviceStub(user.id, pair.device_id);
    const outbox = async () =>
      (await (
        await import("cloudflare:test")
      ).runInDurableObject(stub, (_o, state) =>
        state.storage.kv.get<{ attempt: number; jtis: unknown[] }>("outbox"),
      )) ?? null;
    expect((await outbox())?.jtis).toHaveLength(1);
    // A new login on the same device: the old session's tokens stay owed until they are blacklisted.
    const again = await login(email, { device_id: pair.device_id });
    expect((await listDevices(again.access_token)).body.devices).toHaveLength(1);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await outbox()).toBeNull();
    expect(codeOf(await me(pair.access_token))).toBe("token_revoked");
    expect((await me(again.access_token)).status).toBe(200);
  });

  it("the alarm backs off while the blacklist still fails, and delivers once it works", async () => {
    const { user, pair } = await newSession();
    expect(
      (
        await faultyApi(new Faults({ failAt: 1, kinds: ["kv-write"] }), "POST", "/v1/logout", {
          token: pair.access_token,
          body: {},
        })
      ).status,
    ).toBe(204);
    const stub = deviceStub(user.id, pair.device_id);
    // The object's own KV binding fails too.
    const real = env.TOKENS;
    const broken = { put: () => Promise.reject(new Error("KV PUT failed: 500")) } as unknown as KVNamespace;
    await runInDurableObject(stub, (o) => {
      (o as unknown as { env: { TOKENS: KVNamespace } }).env.TOKENS = broken;
    });
    const before = Date.now();
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    const after = await runInDurableObject(stub, async (o, state) => {
      (o as unknown as { env: { TOKENS: KVNamespace } }).env.TOKENS = real;
      return { box: state.storage.kv.get<{ attempt: number }>("outbox"), alarm: await state.storage.getAlarm() };
    });
    expect(after.box?.attempt).toBe(1);
    expect(after.alarm! - before).toBeGreaterThanOrEqual(OUTBOX_RETRY_MS[1]! - 1000);
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(await env.TOKENS.get(`bl:${claimsOf(pair.access_token).jti}`)).toBe("1");
  });
});
