import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { app } from "../src/index";
import type { ApiResponse } from "./helpers";

/**
 * Fault injection for the tests: a wrapper over the Worker's bindings that counts every call the
 * worker makes to D1 (statements and batches, through sessions too), KV and the device Durable
 * Object, and makes the Nth of them (of a chosen kind) fail the way the platform fails. The
 * worker is then called through `app.fetch` with the wrapped bindings, in this isolate; the
 * Durable Object itself keeps the real bindings, so a fault stands between the worker and a store,
 * where a network error would.
 */
export type FaultKind = "d1-read" | "d1-write" | "kv-read" | "kv-write" | "do";

export interface FaultCall {
  kind: FaultKind;
  /** The SQL (first 80 characters), the KV method and key, or the object's method. */
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

  /** The Worker's env with D1, KV and the Durable Object namespace wrapped. */
  env(): typeof env {
    const wrapped = { ...env } as Record<string, unknown>;
    wrapped.DB = this.d1(env.DB);
    wrapped.TOKENS = this.kv(env.TOKENS);
    wrapped.DEVICE_SESSIONS = this.namespace(env.DEVICE_SESSIONS);
    return wrapped as unknown as typeof env;
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
  opts: { body?: unknown; token?: string } = {},
): Promise<ApiResponse<T>> {
  const headers: Record<string, string> = {};
  if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const ctx = createExecutionContext();
  const res = await app.fetch(
    new Request(`https://registry.test${path}`, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    }),
    faults.env(),
    ctx,
  );
  // Work deferred past the response may fail too: that must not reach the client either.
  await waitOnExecutionContext(ctx).catch(() => undefined);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body: body as T, text };
}
