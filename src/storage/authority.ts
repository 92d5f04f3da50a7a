import { and, eq, isNull } from "drizzle-orm";
import type { Db } from "./db";
import { authorityTokens } from "./schema";

export type AuthorityTokenRow = typeof authorityTokens.$inferSelect;

/** Stores a new authority token's row (only its SHA-256). */
export async function insertAuthorityToken(db: Db, row: typeof authorityTokens.$inferInsert): Promise<void> {
  await db.insert(authorityTokens).values(row);
}

/** Marks a live authority token of a domain revoked; false when there is no such live token. */
export async function markAuthorityRevoked(
  db: Db,
  ref: { id: string; realm: string; domain: string },
  at: string,
): Promise<boolean> {
  const rows = await db
    .update(authorityTokens)
    .set({ revokedAt: at })
    .where(
      and(
        eq(authorityTokens.id, ref.id),
        eq(authorityTokens.realm, ref.realm),
        eq(authorityTokens.domain, ref.domain),
        isNull(authorityTokens.revokedAt),
      ),
    )
    .returning({ id: authorityTokens.id });
  return rows.length > 0;
}

/** An authority token's row, or null. */
export async function findAuthorityToken(db: Db, realm: string, id: string): Promise<AuthorityTokenRow | null> {
  const rows = await db
    .select()
    .from(authorityTokens)
    .where(and(eq(authorityTokens.id, id), eq(authorityTokens.realm, realm)))
    .limit(1);
  return rows[0] ?? null;
}
