import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import { app } from "../src/index";
import type { ApiResponse } from "./helpers";

/**
 * Fault injection for the tests: a wrapper over the Worker's bindings that counts every call the
 * worker makes to D1 (statements and batches, through sessions too), KV and the device Durable
 * Object, and every outbound fetch (the notifier's webhook, Turnstile's siteverify), and makes the
 * Nth of them (of a chosen kind) fail the way the platform fails. The worker is then called
 * through `app.fetch` with the wrapped bindings, in this isolate; the Durable Object itself keeps
 * the real bindings, so a fault stands between the worker and a store, where a network error would.
 */
export type FaultKind = "d1-read" | "d1-write" | "kv-read" | "kv-write" | "do" | "fetch";

export interface FaultCall {
  kind: FaultKind;
  /** The SQL (first 80 characters), the KV method and key, the object's method, or the fetched URL. */
  what: string;
}

export interface FaultPlan {
  /** Fail the Nth call (1-based) among the calls that `kinds` selects; 0 fails none. */
  failAt: number;
  /** Which calls count towards failAt (all by default). */
  kinds?: FaultKind[];
}

/** The errors the runtime raises for a lost store, by kind (what production code sees). */
function platformError(kind: FaultKind, what: string): Error {
  // What fetch() throws when the other end cannot be reached.
  if (kind === "fetch") return new TypeError("Network connection lost.");
  if (kind === "do") {
    const e = new Error("Network connection lost.") as Error & { retryable: boolean };
    e.retryable = true;
    return e;
  }
  if (kind.startsWith("kv"))
    return new Error(`KV ${kind === "kv-read" ? "GET" : "PUT"} failed: 500 Internal Server Error`);
  return new Error(`D1_ERROR: Network connection lost. (injected at ${what.slice(0, 40)})`);
}

const WRITE_SQL = /^\s*(insert|update|delete|replace)\b/i;

export class Faults {
  readonly calls: FaultCall[] = [];
  /** The call that was failed, if any. */
  failed: FaultCall | null = null;
  private counted = 0;

  constructor(private plan: FaultPlan = { failAt: 0 }) {}

  /** Counts a call and throws if it is the one to fail. */
  hit(kind: FaultKind, what: string): void {
    const call = { kind, what };
    this.calls.push(call);
    if (this.plan.kinds && !this.plan.kinds.includes(kind)) return;
    this.counted++;
    if (this.counted === this.plan.failAt) {
      this.failed = call;
      throw platformError(kind, what);
    }
  }

  /** The Worker's env (with `overrides`) with D1, KV and the Durable Object namespace wrapped. */
  env(overrides: Partial<Cloudflare.Env> = {}): typeof env {
    const wrapped = { ...env, ...overrides } as Record<string, unknown>;
    wrapped.DB = this.d1(env.DB);
    wrapped.TOKENS = this.kv(env.TOKENS);
    wrapped.DEVICE_SESSIONS = this.namespace(env.DEVICE_SESSIONS);
    return wrapped as unknown as typeof env;
  }

  /** `fetch` counted and failed like the bindings (the test double still answers what passes). */
  fetch(real: typeof fetch): typeof fetch {
    return (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      this.hit("fetch", `${url.host}${url.pathname}`);
      return real(input, init);
    };
  }

  private d1(db: D1Database | D1DatabaseSession): D1Database {
    const real = new WeakMap<object, D1PreparedStatement>();
    const statement = (stmt: D1PreparedStatement, sql: string): D1PreparedStatement => {
      const kind: FaultKind = WRITE_SQL.test(sql) ? "d1-write" : "d1-read";
      const wrapper = {
        bind: (...values: unknown[]) => statement(stmt.bind(...values), sql),
        first: (col?: string) => (this.hit(kind, sql), col === undefined ? stmt.first() : stmt.first(col)),
        run: () => (this.hit(kind, sql), stmt.run()),
        all: () => (this.hit(kind, sql), stmt.all()),
        raw: (opts?: { columnNames?: boolean }) => (this.hit(kind, sql), stmt.raw(opts as { columnNames: true })),
      };
      real.set(wrapper, stmt);
      return wrapper as unknown as D1PreparedStatement;
    };
    const handle = (d: D1Database | D1DatabaseSession): unknown => ({
      prepare: (sql: string) => statement(d.prepare(sql), sql),
      batch: async (stmts: D1PreparedStatement[]) => {
        const sqls = stmts.map(() => "batch");
        this.hit("d1-write", `batch of ${sqls.length}`);
        return d.batch(stmts.map((s) => real.get(s) ?? s));
      },
      exec: (sql: string) => (this.hit("d1-write", sql), (d as D1Database).exec(sql)),
      withSession: (c?: string) => handle((d as D1Database).withSession(c as D1SessionConstraint)),
      getBookmark: () => (d as D1DatabaseSession).getBookmark?.() ?? null,
      dump: () => (d as D1Database).dump(),
    });
    return handle(db) as D1Database;
  }

  private kv(kv: KVNamespace): KVNamespace {
    return new Proxy(kv, {
      get: (target, prop) => {
        const value = Reflect.get(target, prop, target);
        if (typeof value !== "function") return value;
        const kind: FaultKind = prop === "put" || prop === "delete" ? "kv-write" : "kv-read";
        return (...args: unknown[]) => {
          this.hit(kind, `${String(prop)} ${String(args[0])}`);
          return value.apply(target, args);
        };
      },
    });
  }

  // biome-ignore lint/suspicious/noExplicitAny: any object class
  private namespace<T extends DurableObjectNamespace<any>>(ns: T): T {
    return new Proxy(ns, {
      get: (target, prop) => {
        const value = Reflect.get(target, prop, target);
        if (prop !== "get" || typeof value !== "function")
          return typeof value === "function" ? value.bind(target) : value;
        return (...args: unknown[]) => {
          const stub = value.apply(target, args);
          return new Proxy(stub, {
            get: (s, method) => {
              // RPC stubs answer every property name with a callable; `then` must stay undefined.
              if (typeof method !== "string" || method === "then") return undefined;
              return (...a: unknown[]) => {
                this.hit("do", method);
                return (s as unknown as Record<string, (...x: unknown[]) => unknown>)[method]?.(...a);
              };
            },
          });
        };
      },
    });
  }
}

/** Calls the app with the wrapped bindings and waits for its after-the-response work. */
export async function faultyApi<T = any>(
  faults: Faults,
  method: string,
  path: string,
  opts: { body?: unknown; token?: string; env?: Partial<Cloudflare.Env> } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const ctx = createExecutionContext();
  // The worker runs in this isolate: its outbound fetches go through the wrapper while it runs.
  const realFetch = globalThis.fetch;
  globalThis.fetch = faults.fetch(realFetch);
  let res: Response;
  try {
    res = await app.fetch(
      new Request(`https://registry.test${path}`, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      }),
      faults.env(opts.env),
      ctx,
    );
    // Work deferred past the response may fail too: that must not reach the client either.
    await waitOnExecutionContext(ctx).catch(() => undefined);
  } finally {
    globalThis.fetch = realFetch;
  }
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body: body as T, text };
}

/**
 * A multi-step operation for the fault matrix (docs/reliability.md): how to prepare it, run it
 * with faults, and check the state after success or after a refusal.
 */
export interface Operation<S> {
  name: string;
  setup: () => Promise<S>;
  run: (faults: Faults, s: S) => Promise<ApiResponse>;
  /** The status of success. */
  ok: number;
  /** The state after success (also after a retry that succeeded); `failed` is the call that failed, if any. */
  done: (s: S, failed: FaultCall | null) => Promise<void>;
  /** The state after a refusal: nothing changed. */
  untouched: (s: S, failed: FaultCall | null) => Promise<void>;
  /** The operation again, without faults (after a refusal). */
  again: (s: S) => Promise<ApiResponse>;
  /**
   * Clean refusals besides 503 temporarily_unavailable that a failed outbound fetch may give,
   * by error code (e.g. 502 delivery_failed when the webhook is down).
   */
  fetchErrors?: Record<string, number>;
}

const errorCode = (res: ApiResponse): string | undefined => (res.body as { error?: { code?: string } })?.error?.code;

/**
 * Runs `op` once to count its calls, then once per call with that call failing: the answer is the
 * success or a clean refusal (503 temporarily_unavailable with Retry-After, or one of `fetchErrors`
 * for a failed fetch), never a 500; the state is done or untouched; and after a refusal the
 * operation succeeds when tried again. Returns one line per fault point.
 */
export async function runMatrix<S>(op: Operation<S>): Promise<string[]> {
  const dry = new Faults();
  const first = await op.run(dry, await op.setup());
  expect(first.status, first.text).toBe(op.ok);
  const points: FaultCall[] = dry.calls;
  expect(points.length).toBeGreaterThan(0);
  const outcomes: string[] = [];
  for (let i = 1; i <= points.length; i++) {
    const s = await op.setup();
    const faults = new Faults({ failAt: i });
    const res = await op.run(faults, s);
    const failed = faults.failed;
    const where = `${op.name}, call ${i} (${failed?.kind} ${failed?.what.slice(0, 60)})`;
    outcomes.push(`${i} ${failed?.kind} [${failed?.what.slice(0, 48)}]: ${res.status}`);
    expect(res.status, `${where}: ${res.text}`).not.toBe(500);
    const check = async (what: string, step: () => Promise<unknown>) => {
      try {
        await step();
      } catch (e) {
        if (e instanceof Error) e.message = `${where}, ${what}: ${e.message}`;
        throw e;
      }
    };
    if (res.status === op.ok) {
      await check("done", () => op.done(s, failed));
      continue;
    }
    const code = errorCode(res);
    if (failed?.kind === "fetch" && code && op.fetchErrors?.[code] === res.status) {
      // A clean refusal of its own (the message could not go out).
    } else {
      expect(res.status, `${where}: ${res.text}`).toBe(503);
      expect(code, where).toBe("temporarily_unavailable");
      expect(res.headers.get("Retry-After"), where).toMatch(/^\d+$/);
    }
    await check("untouched", () => op.untouched(s, failed));
    const retry = await op.again(s);
    expect(retry.status, `${where}, retried: ${retry.text}`).toBe(op.ok);
    await check("done after the retry", () => op.done(s, null));
  }
  return outcomes;
}
