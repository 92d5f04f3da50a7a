import { and, Column, eq, fillPlaceholders, type SQL, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/d1";
import { newId } from "../crypto/random";
import { iso } from "../time";
import { type AuditInsert, insertAuditEvent } from "./audit";
import type { Db } from "./db";
import { type UserRow, userEmails, users } from "./schema";

export interface EmailEntry {
  email: string;
  current: boolean;
  /** A code sent to this address was accepted (docs/api.md §11). */
  verified: boolean;
  added_at: string;
}

export interface UserRecord extends UserRow {
  emails: EmailEntry[];
  /** An authenticator app is confirmed: a session needs a second factor (docs/api.md §12). */
  totpOn: boolean;
}

const emailsJson = sql<string>`(SELECT json_group_array(json_object('email', e.email, 'added_at', e.added_at, 'verified', e.verified_at IS NOT NULL)) FROM (SELECT email, added_at, verified_at FROM user_emails WHERE user_id = ${users.id} ORDER BY added_at, email) e)`;

/** A row of a select of `userColumnsWithEmails`, as a UserRecord. */
export function withEmails(row: UserRow & { emailsJson: string | null; totpOn: unknown }): UserRecord {
  const { emailsJson: raw, totpOn, ...user } = row;
  const list = JSON.parse(raw ?? "[]") as { email: string; added_at: string; verified: number }[];
  return {
    ...user,
    totpOn: Boolean(totpOn),
    emails: list.map((e) => ({
      email: e.email,
      added_at: e.added_at,
      current: e.email === user.email,
      verified: e.verified === 1,
    })),
  };
}

/** Whether the current email was proven (docs/api.md §11); false without an email. Also reads session copies made before `verified` existed. */
export const emailVerified = (u: { email: string | null; emails: { email: string; verified?: boolean }[] }) =>
  u.email !== null && u.emails.some((e) => e.email === u.email && e.verified === true);

/**
 * The finders' SQL, built once per isolate (with placeholders) instead of on every call: for these
 * point reads drizzle's query builder cost more CPU than the rest of a GET /v1/users/me together.
 * Each call runs the text on the request's own client (binding or D1 session) and decodes each
 * column as drizzle does, so the results are the same as `db.select(...)`.
 */
interface Finder {
  text: string;
  params: unknown[];
  /** The selected fields in the order the SELECT lists them (drizzle lists a flat selection in key order). */
  decoders: (readonly [string, Column | null])[];
}
const finders = new Map<string, Finder>();
const p = sql.placeholder;

function finder(name: string, where: () => SQL | undefined): Finder {
  let f = finders.get(name);
  if (!f) {
    const selected = userColumnsWithEmails;
    // A drizzle instance only for building SQL: it never runs a query.
    const q = drizzle({} as D1Database)
      .select(selected)
      .from(users)
      .where(where())
      .limit(1)
      .toSQL();
    const decoders = Object.entries(selected).map(
      ([key, field]) => [key, field instanceof Column ? field : null] as const,
    );
    f = { text: q.sql, params: q.params, decoders };
    finders.set(name, f);
  }
  return f;
}

async function findOne(db: Db, f: Finder, values: Record<string, string>): Promise<UserRecord | null> {
  const rows = await db.$client
    .prepare(f.text)
    .bind(...fillPlaceholders(f.params, values))
    .raw();
  const raw = rows[0];
  if (!raw) return null;
  // As drizzle maps a row: each column decodes its own value (JSON columns parse); null stays null.
  const row: Record<string, unknown> = {};
  f.decoders.forEach(([key, column], i) => {
    const value = raw[i];
    row[key] = value === null || !column ? value : column.mapFromDriverValue(value);
  });
  return withEmails(row as UserRow & { emailsJson: string | null; totpOn: unknown });
}

/** A user by id within a realm, with their email history; null when there is none. */
export const findUserById = (db: Db, realm: string, id: string) =>
  findOne(
    db,
    finder("id", () => and(eq(users.id, p("id")), eq(users.realm, p("realm")))),
    { id, realm },
  );

/** A user by current email within a realm. */
export const findUserByEmail = (db: Db, realm: string, email: string) =>
  findOne(
    db,
    finder("email", () => and(eq(users.realm, p("realm")), eq(users.email, p("email")))),
    { realm, email },
  );

/** A user by phone number within a realm. */
export const findUserByPhone = (db: Db, realm: string, phone: string) =>
  findOne(
    db,
    finder("phone", () => and(eq(users.realm, p("realm")), eq(users.phoneNumber, p("phone")))),
    {
      realm,
      phone,
    },
  );

/** A new user row with the defaults every source shares (id, timestamps, no image, empty profile, no password change yet). */
export function newUserRow(
  now: number,
  fields: Pick<
    UserRow,
    "realm" | "email" | "phoneNumber" | "passwordHash" | "fullName" | "roles" | "status" | "source"
  > &
    Partial<Pick<UserRow, "profile">>,
): UserRow {
  const at = iso(now);
  return {
    id: newId(now),
    imageUrl: null,
    profile: {},
    createdAt: at,
    updatedAt: at,
    passwordChangedAt: null,
    pendingEmail: null,
    sessionsValidAfter: null,
    ...fields,
  };
}

/**
 * Inserts a user and their first email in one batch (D1 has no transactions; a batch is atomic),
 * with the audit rows that record it. `emailVerifiedAt`: when the first email is already proven;
 * unverified otherwise.
 */
export async function insertUser(
  db: Db,
  row: typeof users.$inferInsert,
  emailVerifiedAt: string | null = null,
  audit: AuditInsert[] = [],
): Promise<void> {
  const rest = [
    ...(row.email
      ? [
          db
            .insert(userEmails)
            .values({ userId: row.id, email: row.email, addedAt: row.createdAt, verifiedAt: emailVerifiedAt }),
        ]
      : []),
    ...audit.map((a) => insertAuditEvent(db, a)),
  ];
  if (rest.length) await db.batch([db.insert(users).values(row), ...rest]);
  else await db.insert(users).values(row);
}

const userColumns = {
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
  passwordChangedAt: users.passwordChangedAt,
  pendingEmail: users.pendingEmail,
  sessionsValidAfter: users.sessionsValidAfter,
};

const totpOn = sql<number>`EXISTS (SELECT 1 FROM totp_factors t WHERE t.user_id = ${users.id} AND t.confirmed_at IS NOT NULL)`;

/**
 * Every column of a user, their email history (as JSON) and whether TOTP is on: select these,
 * then map rows with withEmails.
 */
export const userColumnsWithEmails = { ...userColumns, emailsJson, totpOn };

/**
 * The row's roles include `admin`. Role names match ^[a-z][a-z0-9_-]*$, so the quoted name in the
 * JSON array matches that role alone.
 */
export const hasAdminRole = sql`${users.roles} LIKE '%"admin"%'`;

/** The realm has an active admin other than `exceptId` (for checks decided inside a write). */
export const otherAdminExists = (realm: string, exceptId: string) =>
  sql`EXISTS (SELECT 1 FROM users o WHERE o.realm = ${realm} AND o.id <> ${exceptId} AND o.status = 'active' AND o.roles LIKE '%"admin"%')`;

/** Marks every session of the user begun before `now` as over (docs/api.md §16). */
export async function setSessionsValidAfter(db: Db, userId: string, now: number): Promise<void> {
  await db
    .update(users)
    .set({ sessionsValidAfter: iso(now) })
    .where(eq(users.id, userId));
}
