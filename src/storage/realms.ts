import { eq } from "drizzle-orm";
import type { Db } from "./db";
import { type RealmRow, realms } from "./schema";

export const REALM_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** A realm's settings; null when it does not exist. */
export async function findRealm(db: Db, id: string): Promise<RealmRow | null> {
  if (!REALM_ID.test(id)) return null;
  const rows = await db.select().from(realms).where(eq(realms.id, id)).limit(1);
  return rows[0] ?? null;
}
