import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

/**
 * D1 schema. Timestamps are ISO-8601 UTC strings (they sort as text). Booleans are 0/1.
 * Uniqueness that matters for correctness is enforced here, not in code, so concurrent
 * writers cannot create duplicates.
 */

/** Tenants. The row `default` is seeded by the first migration. */
export const realms = sqliteTable("realms", {
  id: text("id").primaryKey(),
  registration: text("registration", { enum: ["open", "allowlist", "closed"] })
    .notNull()
    .default("open"),
  approvalRequired: integer("approval_required", { mode: "boolean" }).notNull().default(false),
  captchaRequired: integer("captcha_required", { mode: "boolean" }).notNull().default(false),
  /** Admin routes refuse access tokens without `mfa` in `amr` (docs/api.md §12). */
  adminMfaRequired: integer("admin_mfa_required", { mode: "boolean" }).notNull().default(false),
  /** docs/api.md §6, §11: `required` refuses a password login to an unverified address (allowlist realms always do). */
  emailVerification: text("email_verification", { enum: ["optional", "required"] })
    .notNull()
    .default("optional"),
  createdAt: text("created_at").notNull(),
  updatedAt: text("updated_at").notNull(),
});

export const users = sqliteTable(
  "users",
  {
    id: text("id").primaryKey(),
    realm: text("realm")
      .notNull()
      .references(() => realms.id),
    email: text("email"),
    phoneNumber: text("phone_number"),
    passwordHash: text("password_hash"),
    fullName: text("full_name"),
    imageUrl: text("image_url"),
    roles: text("roles", { mode: "json" }).$type<string[]>().notNull().default(sql`'["user"]'`),
    status: text("status", { enum: ["active", "pending", "disabled"] })
      .notNull()
      .default("active"),
    source: text("source", { enum: ["password", "phone", "admin", "oidc"] }).notNull(),
    profile: text("profile", { mode: "json" }).$type<Record<string, unknown>>().notNull().default(sql`'{}'`),
    createdAt: text("created_at").notNull(),
    updatedAt: text("updated_at").notNull(),
    /** When a password change or reset last ended the account's sessions; a login that read an older value starts none. */
    passwordChangedAt: text("password_changed_at"),
    /** An email change waiting for its code (realms that require verification, docs/api.md §4); null when none. */
    pendingEmail: text("pending_email"),
    /**
     * Sessions begun before this time are over (docs/api.md §16): set by a password change or reset,
     * deactivation and "log out everywhere"; refresh and strict checks compare a session's start
     * with it, so a session the device index lost is ended too.
     */
    sessionsValidAfter: text("sessions_valid_after"),
  },
  (t) => [
    uniqueIndex("users_realm_email").on(t.realm, t.email),
    uniqueIndex("users_realm_phone").on(t.realm, t.phoneNumber),
    index("users_realm_created").on(t.realm, t.createdAt, t.id),
  ],
);

/** Every email a user has held; exactly the one equal to users.email is current. */
export const userEmails = sqliteTable(
  "user_emails",
  {
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    email: text("email").notNull(),
    addedAt: text("added_at").notNull(),
    /** When a code sent to this address was accepted (docs/api.md §11); null: not proven. */
    verifiedAt: text("verified_at"),
  },
  (t) => [primaryKey({ columns: [t.userId, t.email] })],
);

export const domainRules = sqliteTable(
  "domain_rules",
  {
    realm: text("realm")
      .notNull()
      .references(() => realms.id, { onDelete: "cascade" }),
    domain: text("domain").notNull(),
    rule: text("rule", { enum: ["allow", "block"] }).notNull(),
    createdAt: text("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.realm, t.domain] })],
);

/** Index of a user's device sessions, for listing; the Durable Object of each device is authoritative. */
export const devices = sqliteTable(
  "devices",
  {
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    deviceId: text("device_id").notNull(),
    realm: text("realm").notNull(),
    sessionId: text("session_id").notNull(),
    description: text("description"),
    pushToken: text("push_token"),
    pushTokenUpdatedAt: text("push_token_updated_at"),
    createdAt: text("created_at").notNull(),
    lastSeenAt: text("last_seen_at").notNull(),
    expiresAt: text("expires_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.deviceId] }), index("devices_expires").on(t.expiresAt)],
);

/** One live code per (realm, purpose, subject): reset codes, OTPs and email verification codes, stored only as a hash. */
export const verificationCodes = sqliteTable(
  "verification_codes",
  {
    realm: text("realm").notNull(),
    purpose: text("purpose", { enum: ["reset", "otp", "verify_email"] }).notNull(),
    subject: text("subject").notNull(),
    codeHash: text("code_hash").notNull(),
    attempts: integer("attempts").notNull().default(0),
    expiresAt: text("expires_at").notNull(),
    sentAt: text("sent_at").notNull(),
    day: text("day").notNull(),
    dayCount: integer("day_count").notNull().default(1),
  },
  (t) => [primaryKey({ columns: [t.realm, t.purpose, t.subject] }), index("codes_expires").on(t.expiresAt)],
);

/**
 * Per (realm, purpose, subject) and UTC day: codes sent and failed tries, for the daily caps of
 * every code purpose (docs/api.md §16). Kept apart from the code rows, which cleanup removes once they
 * expire, and removed only after their day is over, so a cap holds for the whole day.
 */
export const codeCounters = sqliteTable(
  "code_counters",
  {
    realm: text("realm").notNull(),
    purpose: text("purpose").notNull(),
    subject: text("subject").notNull(),
    day: text("day").notNull(),
    sends: integer("sends").notNull().default(0),
    failures: integer("failures").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.realm, t.purpose, t.subject, t.day] }), index("code_counters_day").on(t.day)],
);

/**
 * Devices that signed in to an account (any way of signing in), for the familiar-device lockout
 * (docs/api.md §10, docs/hardening.md, "Login throttle"): failures from other devices do not lock these out.
 */
export const loginDevices = sqliteTable(
  "login_devices",
  {
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    deviceId: text("device_id").notNull(),
    lastLoginAt: text("last_login_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.deviceId] }), index("login_devices_last").on(t.lastLoginAt)],
);

/** Security-relevant events. Never holds a secret, token, code or hash. */
export const auditEvents = sqliteTable(
  "audit_events",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    at: text("at").notNull(),
    realm: text("realm").notNull(),
    type: text("type").notNull(),
    userId: text("user_id"),
    deviceId: text("device_id"),
    ip: text("ip"),
    detail: text("detail", { mode: "json" }).$type<Record<string, unknown>>(),
    /** Who acted (docs/api.md §15): user, admin, authority (token id) or system; id null when unknown. */
    actorKind: text("actor_kind", { enum: ["user", "admin", "authority", "system"] })
      .notNull()
      .default("system"),
    actorId: text("actor_id"),
  },
  (t) => [
    index("audit_realm_at").on(t.realm, t.at),
    index("audit_user").on(t.userId),
    index("audit_realm_type_at").on(t.realm, t.type, t.at),
  ],
);

export type UserRow = typeof users.$inferSelect;
export type RealmRow = typeof realms.$inferSelect;

// Sign-in records: authority tokens, the login throttle, identities, second factors, passkeys.
export * from "./schema-auth";
