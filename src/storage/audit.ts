import { and, desc, eq, gte, lt, or, type SQL } from "drizzle-orm";
import type { Db } from "./db";
import { auditEvents } from "./schema";

export type AuditRow = typeof auditEvents.$inferSelect;
export type AuditInsert = typeof auditEvents.$inferInsert;

/** Writes one audit event. */
export function insertAuditEvent(db: Db, row: AuditInsert) {
  return db.insert(auditEvents).values(row);
}

export interface AuditFilter {
  realm: string;
  userId?: string;
  type?: string;
  /** ISO-8601 UTC: events at or after it. */
  since?: string;
  /** The last event of the previous page: (at, id). */
  after?: { at: string; id: number };
  limit: number;
}

/** A realm's audit events, newest first (keyset on (at, id), so pages stay right while events are added). */
export async function listAuditEvents(db: Db, f: AuditFilter): Promise<AuditRow[]> {
  const t = auditEvents;
  const where: (SQL | undefined)[] = [eq(t.realm, f.realm)];
  if (f.userId) where.push(eq(t.userId, f.userId));
  if (f.type) where.push(eq(t.type, f.type));
  if (f.since) where.push(gte(t.at, f.since));
  if (f.after) where.push(or(lt(t.at, f.after.at), and(eq(t.at, f.after.at), lt(t.id, f.after.id))));
  return db
    .select()
    .from(t)
    .where(and(...where))
    .orderBy(desc(t.at), desc(t.id))
    .limit(f.limit);
}
