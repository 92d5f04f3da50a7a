// The runtime's own limits, for the ratios of `npm run bench` (bench/run.mjs):
//   GET /hello  bare Hono returning a small JSON
//   GET /d1     one D1 point read by primary key (?id=) of a seeded row
//   GET /do     one RPC to a trivial SQLite-backed Durable Object that writes one row, then one KV put
//   GET /hash   the password check alone: user-registry's own verifyPassword (PBKDF2, same parameters)
// and Floor, an RPC entrypoint whose verify() does no work (the consumer's /floor calls it): what a
// service-binding call costs by itself.
// Built by `wrangler deploy --dry-run` with bench/workers/baseline.toml, like the worker itself.
import { DurableObject, WorkerEntrypoint } from "cloudflare:workers";
import { Hono } from "hono";
import { hashPassword, verifyPassword } from "../../src/crypto/passwords";

export class Trivial extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, at INTEGER NOT NULL)");
  }

  write(at) {
    this.ctx.storage.sql.exec("INSERT INTO hits (at) VALUES (?)", at);
    return { ok: true };
  }
}

const CLAIMS = {
  iss: "https://user-registry.bench",
  sub: "018bcfe5680000000000000000000001",
  realm: "default",
  type: "access",
  did: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
  sid: "BBBBBBBBBBBBBBBBBBBBBBBB",
  jti: "CCCCCCCCCCCCCCCCCCCCCCCC",
  iat: 1700000000,
  exp: 1700000900,
  fresh: true,
  roles: ["user"],
  email: "user1@seed.bench.test",
  name: "Seed User 1",
};

export class Floor extends WorkerEntrypoint {
  verify(_token) {
    return { ok: true, claims: { ...CLAIMS } };
  }
}

let stored;
const app = new Hono();

app.get("/hello", (c) => c.json({ hello: "world" }));

app.get("/d1", async (c) => {
  const row = await c.env.DB.prepare("SELECT * FROM users WHERE id = ?")
    .bind(c.req.query("id") ?? "")
    .first();
  return row ? c.json({ id: row.id, email: row.email }) : c.json({ error: "not_found" }, 404);
});

app.get("/do", async (c) => {
  const ns = c.env.TRIVIAL;
  const n = Math.floor(Math.random() * 16);
  await ns.get(ns.idFromName(`t${n}`)).write(Date.now());
  await c.env.KV.put(`k${Math.floor(Math.random() * 1e9)}`, "1", { expirationTtl: 60 });
  return c.json({ ok: true });
});

app.get("/hash", async (c) => {
  stored ??= hashPassword("correct horse battery");
  const t0 = performance.now();
  const result = await verifyPassword("correct horse battery", await stored);
  return c.json({ ok: result.ok, ms: performance.now() - t0 });
});

export default app;
