import { describe, expect, it } from "vitest";
import { faultyApi, type Operation, runMatrix } from "./faults";
import { api, login, newSession, PASSWORD, signUp, uniqueEmail } from "./helpers";
import { codeOf, me, refresh } from "./session-helpers";

/**
 * Every multi-step operation with each of its store calls failed in turn (docs/reliability.md):
 * the answer is either the operation's success, when the write that decides it committed, or
 * `503 temporarily_unavailable` with Retry-After, when it did not; never a 500. Then the state is
 * checked (done, or not begun: nothing half-written) and the operation is tried again without
 * faults, which must succeed.
 */
const NEW_PASSWORD = "another good password";
/** A webhook for the notifier (the test double answers it), so its post is a fault point too. */
const WEBHOOK = {
  NOTIFY_WEBHOOK_URL: "https://hooks.test/fault-matrix-account",
  NOTIFY_WEBHOOK_SECRET: "fault-matrix-secret",
};
const body = (s: { email: string }) => ({ email: s.email, password: PASSWORD, full_name: "Fault" });
const canLogIn = async (email: string, password = PASSWORD) =>
  (await api("POST", "/v1/tokens", { body: { email, password } })).status;

/** Two devices of one user: `pair` acts, `other` must be logged out by the "everywhere" operations. */
async function twoDevices() {
  const { email, user, pair } = await newSession();
  const other = await login(email);
  return { email, user, pair, other };
}

const operations: Operation<any>[] = [
  {
    name: "sign-up",
    setup: async () => ({ email: uniqueEmail() }),
    run: (f, s) => faultyApi(f, "POST", "/v1/users", { body: body(s), env: WEBHOOK }),
    ok: 201,
    done: async (s) => expect(await canLogIn(s.email)).toBe(200),
    untouched: async (s) => expect(await canLogIn(s.email)).toBe(401),
    again: (s) => api("POST", "/v1/users", { body: body(s) }),
  },
  {
    name: "login",
    setup: async () => {
      const email = uniqueEmail();
      await signUp(email);
      return { email };
    },
    run: (f, s) => faultyApi(f, "POST", "/v1/tokens", { body: { email: s.email, password: PASSWORD } }),
    ok: 200,
    done: async () => {},
    untouched: async () => {},
    again: (s) => api("POST", "/v1/tokens", { body: { email: s.email, password: PASSWORD } }),
  },
  {
    name: "refresh",
    setup: async () => (await newSession()).pair,
    run: (f, s) => faultyApi(f, "POST", "/v1/tokens/refresh", { body: { refresh_token: s.refresh_token } }),
    ok: 200,
    done: async () => {},
    // The refresh token was not spent.
    untouched: async () => {},
    again: (s) => refresh(s.refresh_token),
  },
  {
    name: "logout",
    setup: async () => (await newSession()).pair,
    run: (f, s) => faultyApi(f, "POST", "/v1/logout", { token: s.access_token, body: {} }),
    ok: 204,
    done: async (s) => expect(codeOf(await refresh(s.refresh_token))).toBe("session_revoked"),
    untouched: async (s) => expect((await me(s.access_token)).status).toBe(200),
    again: (s) => api("POST", "/v1/logout", { token: s.access_token, body: {} }),
  },
  {
    name: "log out everywhere",
    setup: twoDevices,
    run: (f, s) => faultyApi(f, "POST", "/v1/logout", { token: s.pair.access_token, body: { all: true } }),
    ok: 204,
    done: async (s) => {
      expect(codeOf(await refresh(s.pair.refresh_token))).toBe("session_revoked");
      expect(codeOf(await refresh(s.other.refresh_token))).toBe("session_revoked");
    },
    untouched: async (s) => expect((await refresh(s.other.refresh_token)).status).toBe(200),
    again: (s) => api("POST", "/v1/logout", { token: s.pair.access_token, body: { all: true } }),
  },
  {
    name: "password change",
    setup: twoDevices,
    run: (f, s) =>
      faultyApi(f, "PUT", "/v1/users/me/password", {
        token: s.pair.access_token,
        body: { password: NEW_PASSWORD, password_confirmation: NEW_PASSWORD, current_password: PASSWORD },
      }),
    ok: 204,
    done: async (s) => {
      expect(await canLogIn(s.email, NEW_PASSWORD)).toBe(200);
      expect(codeOf(await refresh(s.other.refresh_token))).toBe("session_revoked");
      expect((await me(s.pair.access_token)).status).toBe(200);
    },
    untouched: async (s) => expect(await canLogIn(s.email)).toBe(200),
    again: (s) =>
      api("PUT", "/v1/users/me/password", {
        token: s.pair.access_token,
        body: { password: NEW_PASSWORD, password_confirmation: NEW_PASSWORD, current_password: PASSWORD },
      }),
  },
  {
    name: "email change",
    setup: async () => ({ ...(await newSession()), to: uniqueEmail() }),
    run: (f, s) =>
      faultyApi(f, "PUT", "/v1/users/me/email", {
        token: s.pair.access_token,
        body: { email: s.to, current_password: PASSWORD },
        env: WEBHOOK,
      }),
    ok: 200,
    done: async (s) => expect(await canLogIn(s.to)).toBe(200),
    untouched: async (s) => expect(await canLogIn(s.email)).toBe(200),
    again: (s) =>
      api("PUT", "/v1/users/me/email", {
        token: s.pair.access_token,
        body: { email: s.to, current_password: PASSWORD },
      }),
  },
  {
    name: "deletion",
    setup: twoDevices,
    run: (f, s) => faultyApi(f, "DELETE", "/v1/users/me", { token: s.pair.access_token }),
    ok: 204,
    done: async (s) => {
      expect(await canLogIn(s.email)).toBe(401);
      expect(codeOf(await refresh(s.other.refresh_token))).toBe("session_revoked");
    },
    untouched: async (s) => expect(await canLogIn(s.email)).toBe(200),
    again: (s) => api("DELETE", "/v1/users/me", { token: s.pair.access_token }),
  },
];

describe("faults: each store call of each operation failed in turn", () => {
  for (const op of operations) {
    it(op.name, async () => {
      const outcomes = await runMatrix(op);
      console.log(`fault points of ${op.name}: ${outcomes.join(", ")}`);
    });
  }
});
