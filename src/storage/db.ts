import type { SQL } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";

export type Db = ReturnType<typeof makeDb>;

// drizzle's D1 driver only prepares and batches statements, which a D1 session does too.
// Without `schema`: nothing here uses drizzle's relational queries (`db.query`), and building
// their configuration walks the whole schema on every drizzle() call, which is once per request
// (each request has its own binding object or D1 session); that was ~10% of a /v1/users/me.
const makeDb = (d1: D1Database | D1DatabaseSession) => drizzle(d1 as D1Database);
const cache = new WeakMap<D1Database | D1DatabaseSession, Db>();

/** One drizzle instance per D1 binding or D1 session. */
export function getDb(d1: D1Database | D1DatabaseSession): Db {
  let db = cache.get(d1);
  if (!db) {
    db = makeDb(d1);
    cache.set(d1, db);
  }
  return db;
}

/** How many rows a D1 write (drizzle's `db.run`) changed. */
export const changedRows = (res: unknown): number =>
  (res as { meta?: { changes?: number } } | null)?.meta?.changes ?? 0;

/** True when a D1 error is a UNIQUE or PRIMARY KEY violation (a lost race with another writer). */
export function isUniqueViolation(e: unknown): boolean {
  const text = String((e as { message?: string })?.message ?? e) + String((e as { cause?: unknown })?.cause ?? "");
  return /UNIQUE constraint failed|PRIMARY KEY constraint failed|SQLITE_CONSTRAINT/i.test(text);
}

/** The column of the unique index that a violation names, when it says. */
export function violatedColumn(e: unknown): string | null {
  const text = String((e as { message?: string })?.message ?? e) + String((e as { cause?: unknown })?.cause ?? "");
  const m = /UNIQUE constraint failed: \w+\.(\w+)(?:, \w+\.(\w+))?/.exec(text);
  return m ? (m[2] ?? m[1] ?? null) : null;
}

/**
 * Runs raw statements as one D1 batch (atomic) on the request's client. drizzle's own batch
 * cannot take a raw `sql` statement that has parameters, so these go to D1 directly.
 */
export async function batchRaw(db: Db, statements: SQL[]): Promise<D1Result[]> {
  const client = db.$client as D1Database;
  return client.batch(
    statements.map((s) => {
      const q = db.run(s).getQuery();
      return client.prepare(q.sql).bind(...q.params);
    }),
  );
}
