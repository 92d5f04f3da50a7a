import { and, eq, sql } from "drizzle-orm";
import { type CodeRef, codeStillHeld, consumeCodeStatement, deleteCodes, releaseFailure } from "./codes";
import type { Db } from "./db";
import { auditEvents, userEmails, users } from "./schema";
import { hasAdminRole, otherAdminExists } from "./users";

/** The columns of a user a profile change (PATCH /v1/users/{id}) writes. */
export type UserFields = Partial<typeof users.$inferInsert>;

/** Writes a profile change of a user (a unique violation on the phone number is the caller's to map). */
export async function updateUserFields(db: Db, realm: string, id: string, set: UserFields): Promise<void> {
  await db
    .update(users)
    .set(set)
    .where(and(eq(users.id, id), eq(users.realm, realm)));
}

/** Replaces the stored hash of an unchanged password (a rehash at login). */
export const rehashPassword = (db: Db, id: string, passwordHash: string) =>
  db.update(users).set({ passwordHash }).where(eq(users.id, id));

/**
 * A new password: every session begun before `at` is over (sessions_valid_after, docs/api.md §16),
 * and the user's reset codes go. One batch.
 */
export async function writeNewPassword(db: Db, realm: string, id: string, passwordHash: string, at: string) {
  await db.batch([
    db
      .update(users)
      .set({ passwordHash, updatedAt: at, passwordChangedAt: at, sessionsValidAfter: at })
      .where(eq(users.id, id)),
    deleteCodes(db, realm, [id], "reset"),
  ]);
}

/** A new password after a reset, with the use of its code; false when the code was used meanwhile. */
export async function writeResetPassword(
  db: Db,
  input: { id: string; passwordHash: string; at: string; ref: CodeRef; codeHash: string; now: number },
): Promise<boolean> {
  const { id, passwordHash, at, ref, codeHash, now } = input;
  // The password and the use of the code in one batch, the update only while the code is still
  // there: a lost store leaves both as they were (the code still works), and of two concurrent uses
  // one wins. A correct try is not a failed one: its slot of the daily budget goes back (checkCode).
  const [, consumed] = await db.batch([
    db
      .update(users)
      .set({ passwordHash, updatedAt: at, passwordChangedAt: at, sessionsValidAfter: at })
      .where(and(eq(users.id, id), codeStillHeld(ref, codeHash))),
    consumeCodeStatement(db, ref, codeHash),
    releaseFailure(db, ref, now),
  ]);
  return consumed.length > 0;
}

/** Whether the realm has an active admin other than this user. */
export async function anotherAdminExists(db: Db, realm: string, id: string): Promise<boolean> {
  const row = await db.get<{ ok: number }>(sql`SELECT ${otherAdminExists(realm, id)} AS ok`);
  return Boolean(row?.ok);
}

/**
 * Deletes a user, their email history and the codes of `subjects`, in one batch, unless the user
 * is the realm's last active admin (decided in the statement too, so two admins deleting each
 * other at once cannot both win). False when no row was deleted.
 */
export async function deleteUserRows(db: Db, realm: string, id: string, subjects: string[]): Promise<boolean> {
  const [deleted] = await db.batch([
    db
      .delete(users)
      .where(
        and(eq(users.id, id), eq(users.realm, realm), sql`(NOT ${hasAdminRole} OR ${otherAdminExists(realm, id)})`),
      )
      .returning({ id: users.id }),
    db.delete(userEmails).where(and(eq(userEmails.userId, id), sql`NOT EXISTS (SELECT 1 FROM users WHERE id = ${id})`)),
    deleteCodes(db, realm, subjects),
  ]);
  return deleted.length > 0;
}

/** Removes a user made a moment ago whose welcome could not be delivered, with their codes and sign-up record. */
export async function removeNewUser(db: Db, realm: string, id: string): Promise<void> {
  await db.batch([
    db.delete(users).where(eq(users.id, id)),
    deleteCodes(db, realm, [id]),
    db.delete(auditEvents).where(and(eq(auditEvents.userId, id), eq(auditEvents.type, "signup"))),
  ]);
}
