import { and, eq, sql } from "drizzle-orm";
import type { Db } from "./db";
import { type UserRow, userEmails, users } from "./schema";

export interface EmailEntry {
  email: string;
  current: boolean;
  added_at: string;
}

export interface UserRecord extends UserRow {
  emails: EmailEntry[];
}

const emailsJson = sql<string>`(SELECT json_group_array(json_object('email', e.email, 'added_at', e.added_at)) FROM (SELECT email, added_at FROM user_emails WHERE user_id = ${users.id} ORDER BY added_at, email) e)`;

function withEmails(row: UserRow & { emailsJson: string | null }): UserRecord {
  const { emailsJson: raw, ...user } = row;
  const list = JSON.parse(raw ?? "[]") as { email: string; added_at: string }[];
  return {
    ...user,
    emails: list.map((e) => ({ email: e.email, added_at: e.added_at, current: e.email === user.email })),
  };
}

/** A user by id within a realm, with their email history; null when there is none. */
export async function findUserById(db: Db, realm: string, id: string): Promise<UserRecord | null> {
  const rows = await db
    .select({ ...userColumns, emailsJson })
    .from(users)
    .where(and(eq(users.id, id), eq(users.realm, realm)))
    .limit(1);
  return rows[0] ? withEmails(rows[0]) : null;
}

/** A user by current email within a realm. */
export async function findUserByEmail(db: Db, realm: string, email: string): Promise<UserRecord | null> {
  const rows = await db
    .select({ ...userColumns, emailsJson })
    .from(users)
    .where(and(eq(users.realm, realm), eq(users.email, email)))
    .limit(1);
  return rows[0] ? withEmails(rows[0]) : null;
}

/** A user by phone number within a realm. */
export async function findUserByPhone(db: Db, realm: string, phone: string): Promise<UserRecord | null> {
  const rows = await db
    .select({ ...userColumns, emailsJson })
    .from(users)
    .where(and(eq(users.realm, realm), eq(users.phoneNumber, phone)))
    .limit(1);
  return rows[0] ? withEmails(rows[0]) : null;
}

/** Inserts a user and their first email in one batch (D1 has no transactions; a batch is atomic). */
export async function insertUser(db: Db, row: typeof users.$inferInsert): Promise<void> {
  if (row.email) {
    await db.batch([
      db.insert(users).values(row),
      db.insert(userEmails).values({ userId: row.id, email: row.email, addedAt: row.createdAt }),
    ]);
  } else {
    await db.insert(users).values(row);
  }
}

export const userColumns = {
  id: users.id,
  realm: users.realm,
  email: users.email,
  phoneNumber: users.phoneNumber,
  passwordHash: users.passwordHash,
  fullName: users.fullName,
  imageUrl: users.imageUrl,
  roles: users.roles,
  status: users.status,
  source: users.source,
  profile: users.profile,
  createdAt: users.createdAt,
  updatedAt: users.updatedAt,
};
