import { and, eq, type SQL, sql } from "drizzle-orm";
import { newId } from "../crypto/random";
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

async function findOne(db: Db, where: SQL | undefined): Promise<UserRecord | null> {
  const rows = await db
    .select({ ...userColumns, emailsJson })
    .from(users)
    .where(where)
    .limit(1);
  return rows[0] ? withEmails(rows[0]) : null;
}

/** A user by id within a realm, with their email history; null when there is none. */
export const findUserById = (db: Db, realm: string, id: string) =>
  findOne(db, and(eq(users.id, id), eq(users.realm, realm)));

/** A user by current email within a realm. */
export const findUserByEmail = (db: Db, realm: string, email: string) =>
  findOne(db, and(eq(users.realm, realm), eq(users.email, email)));

/** A user by phone number within a realm. */
export const findUserByPhone = (db: Db, realm: string, phone: string) =>
  findOne(db, and(eq(users.realm, realm), eq(users.phoneNumber, phone)));

/** A new user row with the defaults every source shares (id, timestamps, no image, empty profile). */
export function newUserRow(
  now: number,
  fields: Pick<
    UserRow,
    "realm" | "email" | "phoneNumber" | "passwordHash" | "fullName" | "roles" | "status" | "source"
  > &
    Partial<Pick<UserRow, "profile">>,
): UserRow {
  const at = new Date(now).toISOString();
  return { id: newId(now), imageUrl: null, profile: {}, createdAt: at, updatedAt: at, ...fields };
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
