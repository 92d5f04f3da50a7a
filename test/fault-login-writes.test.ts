import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { Faults, faultyApi } from "./faults";
import { api, PASSWORD, signUp, uniqueEmail } from "./helpers";
import { codeOf } from "./session-helpers";

/**
 * The writes that go with a login or a sign-up (docs/reliability.md, "Login writes", "Audit
 * rows"): the login-throttle reset and the audit row share the D1 batch of the change they belong
 * to, so a failure of any of them fails the change, and the answer tells the truth.
 */
const failures = async (subject: string) =>
  (
    await env.DB.prepare("SELECT failures FROM login_throttle WHERE realm = 'default' AND subject = ?")
      .bind(subject)
      .first<{ failures: number }>()
  )?.failures ?? 0;

const auditRows = async (userId: string, type: string) =>
  (
    await env.DB.prepare("SELECT count(*) AS n FROM audit_events WHERE user_id = ? AND type = ?")
      .bind(userId, type)
      .first<{ n: number }>()
  )?.n ?? 0;

describe("login writes", () => {
  it("a login succeeds with its throttle reset and audit row, or reports the failure with the count kept", async () => {
    const dry = new Faults();
    const probe = uniqueEmail();
    await signUp(probe);
    expect((await faultyApi(dry, "POST", "/v1/tokens", { body: { email: probe, password: PASSWORD } })).status).toBe(
      200,
    );
    const points = dry.calls.length;
    expect(dry.calls.some((c) => c.what.startsWith("batch"))).toBe(true);
    for (let i = 1; i <= points; i++) {
      const email = uniqueEmail();
      const user = await signUp(email);
      for (let n = 0; n < 2; n++) {
        expect((await api("POST", "/v1/tokens", { body: { email, password: "wrong password" } })).status).toBe(401);
      }
      expect(await failures(email)).toBe(2);
      const faults = new Faults({ failAt: i });
      const res = await faultyApi(faults, "POST", "/v1/tokens", { body: { email, password: PASSWORD } });
      const where = `call ${i} (${faults.failed?.kind} ${faults.failed?.what.slice(0, 50)}): ${res.text}`;
      if (res.status === 200) {
        // Signed in: no failure is left counted, and the login is on the trail.
        expect(await failures(email), where).toBe(0);
        expect(await auditRows(user.id, "login"), where).toBe(1);
      } else {
        // Not signed in, and told so: the count stands and no login is recorded.
        expect(res.status, where).toBe(503);
        expect(codeOf(res), where).toBe("temporarily_unavailable");
        expect(await failures(email), where).toBe(2);
        expect(await auditRows(user.id, "login"), where).toBe(0);
      }
    }
  });

  it("a sign-up whose audit write fails writes nothing; a sign-up that succeeds has its audit row", async () => {
    const dry = new Faults();
    const first = uniqueEmail();
    const ok = await faultyApi(dry, "POST", "/v1/users", {
      body: { email: first, password: PASSWORD, full_name: "A" },
    });
    expect(ok.status).toBe(201);
    expect(await auditRows(ok.body.id, "signup")).toBe(1);
    for (let i = 1; i <= dry.calls.length; i++) {
      const email = uniqueEmail();
      const faults = new Faults({ failAt: i });
      const res = await faultyApi(faults, "POST", "/v1/users", { body: { email, password: PASSWORD, full_name: "A" } });
      const where = `call ${i} (${faults.failed?.kind} ${faults.failed?.what.slice(0, 50)}): ${res.text}`;
      const row = await env.DB.prepare("SELECT id FROM users WHERE email = ?").bind(email).first<{ id: string }>();
      if (res.status === 201) {
        expect(row?.id, where).toBe(res.body.id);
        expect(await auditRows(res.body.id, "signup"), where).toBe(1);
      } else {
        expect(res.status, where).toBe(503);
        expect(row, where).toBeNull();
        const orphans = await env.DB.prepare(
          "SELECT count(*) AS n FROM audit_events WHERE type = 'signup' AND user_id NOT IN (SELECT id FROM users)",
        ).first<{ n: number }>();
        expect(orphans?.n, where).toBe(0);
      }
    }
  });
});
