import { asc, eq } from "drizzle-orm";
import type { Db } from "./db";
import { type RealmRow, realms } from "./schema";

export const REALM_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** A realm's settings; null when it does not exist. */
export async function findRealm(db: Db, id: string): Promise<RealmRow | null> {
  if (!REALM_ID.test(id)) return null;
  const rows = await db.select().from(realms).where(eq(realms.id, id)).limit(1);
  return rows[0] ?? null;
}

/** Every realm, by id. */
export const listRealmRows = (db: Db) => db.select().from(realms).orderBy(asc(realms.id));

/** The settings a realm may be given (docs/api.md §6). */
export type RealmSettings = Pick<RealmRow, "registration" | "approvalRequired" | "captchaRequired" | "updatedAt"> &
  Partial<Pick<RealmRow, "adminMfaRequired" | "emailVerification">>;

/** Creates a realm or changes its settings; returns the row as written. */
export async function upsertRealm(db: Db, id: string, settings: RealmSettings): Promise<RealmRow> {
  const [row] = await db
    .insert(realms)
    .values({ id, createdAt: settings.updatedAt, ...settings })
    .onConflictDoUpdate({ target: realms.id, set: settings })
    .returning();
  if (!row) throw new Error("realm upsert returned no row");
  return row;
}
