import { and, asc, eq, inArray } from "drizzle-orm";
import type { Db } from "./db";
import { domainRules } from "./schema";

export type DomainRuleRow = typeof domainRules.$inferSelect;

/** The rules of a realm among these domains, domain → rule. */
export async function rulesAmong(db: Db, realm: string, domains: string[]): Promise<Map<string, "allow" | "block">> {
  const rows = await db
    .select({ domain: domainRules.domain, rule: domainRules.rule })
    .from(domainRules)
    .where(and(eq(domainRules.realm, realm), inArray(domainRules.domain, domains)));
  return new Map(rows.map((r) => [r.domain, r.rule]));
}

/** Every rule of a realm, by domain. */
export const listRuleRows = (db: Db, realm: string) =>
  db.select().from(domainRules).where(eq(domainRules.realm, realm)).orderBy(asc(domainRules.domain));

/** Sets a domain's rule (a new one, or a change); returns the row as written. */
export async function upsertRule(
  db: Db,
  row: { realm: string; domain: string; rule: "allow" | "block"; createdAt: string },
): Promise<DomainRuleRow> {
  const [written] = await db
    .insert(domainRules)
    .values(row)
    .onConflictDoUpdate({ target: [domainRules.realm, domainRules.domain], set: { rule: row.rule } })
    .returning();
  if (!written) throw new Error("upsert returned no row");
  return written;
}

/** Removes a domain's rule; false when it had none. */
export async function deleteRule(db: Db, realm: string, domain: string): Promise<boolean> {
  const gone = await db
    .delete(domainRules)
    .where(and(eq(domainRules.realm, realm), eq(domainRules.domain, domain)))
    .returning({ domain: domainRules.domain });
  return gone.length > 0;
}
