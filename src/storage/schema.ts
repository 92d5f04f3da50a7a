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

/**
 * Domain authority tokens (docs/api.md §6): only a SHA-256 of the token is stored; revocation is a
 * timestamp, checked on every use, so a revoked token stops at once.
 */
export const authorityTokens = sqliteTable(
  "authority_tokens",
  {
    id: text("id").primaryKey(),
    realm: text("realm")
      .notNull()
      .references(() => realms.id, { onDelete: "cascade" }),
    domain: text("domain").notNull(),
    tokenHash: text("token_hash").notNull(),
    createdBy: text("created_by"),
    createdAt: text("created_at").notNull(),
    expiresAt: text("expires_at").notNull(),
    revokedAt: text("revoked_at"),
  },
  (t) => [index("authority_realm_domain").on(t.realm, t.domain), index("authority_expires").on(t.expiresAt)],
);

/**
 * Login throttling per account (docs/api.md §10), keyed by the email tried (known or not, so the
 * throttle itself reveals nothing). `failures` counts attempts since the last success; it is
 * raised before the password is checked, by one conditional UPDATE, so concurrent attempts
 * cannot exceed the limit.
 */
export const loginThrottle = sqliteTable(
  "login_throttle",
  {
    realm: text("realm").notNull(),
    subject: text("subject").notNull(),
    failures: integer("failures").notNull().default(0),
    lockouts: integer("lockouts").notNull().default(0),
    lockedUntil: text("locked_until"),
    updatedAt: text("updated_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.realm, t.subject] }), index("login_throttle_updated").on(t.updatedAt)],
);

/**
 * Accounts of identity providers linked to a user (docs/api.md §13): one `(realm, provider, subject)`
 * belongs to one user, and a user links at most one account per provider.
 */
export const identities = sqliteTable(
  "identities",
  {
    realm: text("realm").notNull(),
    provider: text("provider").notNull(),
    subject: text("subject").notNull(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    /** The address the provider gave when the identity was linked (null when it gave none). */
    email: text("email"),
    createdAt: text("created_at").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.realm, t.provider, t.subject] }),
    uniqueIndex("identities_user_provider").on(t.userId, t.provider),
  ],
);

/**
 * Short-lived single-use records of the identity provider flows, keyed by a SHA-256 of their
 * secret (never the secret itself): `state` (a web sign-in in progress, 10 minutes), `code` (our
 * one-time code for POST /v1/tokens/oauth, 60 s), `nonce` (a spent ID token nonce, until the
 * token's exp). A record is taken by DELETE ... RETURNING, so only one request can spend it.
 */
export const oauthRecords = sqliteTable(
  "oauth_records",
  {
    key: text("key").primaryKey(),
    kind: text("kind", { enum: ["state", "code", "nonce"] }).notNull(),
    realm: text("realm").notNull(),
    data: text("data", { mode: "json" }).$type<Record<string, unknown>>().notNull(),
    expiresAt: text("expires_at").notNull(),
  },
  (t) => [index("oauth_records_expires").on(t.expiresAt)],
);

/**
 * An account's authenticator app (docs/api.md §12): the TOTP secret, usable once `confirmed_at` is set.
 * `last_step` is the newest 30-second step whose code was accepted; a code is accepted only for a
 * later step (one conditional UPDATE), so a code works once even within its window.
 */
export const totpFactors = sqliteTable("totp_factors", {
  userId: text("user_id")
    .primaryKey()
    .references(() => users.id, { onDelete: "cascade" }),
  realm: text("realm").notNull(),
  secret: text("secret").notNull(),
  confirmedAt: text("confirmed_at"),
  lastStep: integer("last_step"),
  createdAt: text("created_at").notNull(),
});

/** Recovery codes: only an HMAC of each is stored; `used_at` spends one (a conditional UPDATE). */
export const recoveryCodes = sqliteTable(
  "recovery_codes",
  {
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    codeHash: text("code_hash").notNull(),
    usedAt: text("used_at"),
    createdAt: text("created_at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.userId, t.codeHash] })],
);

/**
 * The second step of a login (docs/api.md §12): a correct first factor leaves a row here instead of a
 * session. Only a SHA-256 of the `mfa_token` is stored. It carries the device and what the first
 * step checked; `attempts` is raised before each try, by a conditional UPDATE, so at most 5 are judged.
 */
export const mfaTokens = sqliteTable(
  "mfa_tokens",
  {
    tokenHash: text("token_hash").primaryKey(),
    realm: text("realm").notNull(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    deviceId: text("device_id").notNull(),
    description: text("description"),
    pushToken: text("push_token"),
    amr: text("amr", { mode: "json" }).$type<string[]>().notNull(),
    attempts: integer("attempts").notNull().default(0),
    expiresAt: text("expires_at").notNull(),
  },
  (t) => [index("mfa_tokens_expires").on(t.expiresAt)],
);

/** WebAuthn credentials (passkeys). `id` is the credential id (base64url), unique across realms. */
export const passkeys = sqliteTable(
  "passkeys",
  {
    id: text("id").primaryKey(),
    realm: text("realm").notNull(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id, { onDelete: "cascade" }),
    name: text("name"),
    publicKey: text("public_key").notNull(),
    counter: integer("counter").notNull().default(0),
    transports: text("transports", { mode: "json" }).$type<string[]>().notNull().default(sql`'[]'`),
    backedUp: integer("backed_up", { mode: "boolean" }).notNull().default(false),
    createdAt: text("created_at").notNull(),
    lastUsedAt: text("last_used_at"),
  },
  (t) => [index("passkeys_user").on(t.userId)],
);

/**
 * WebAuthn challenges, kept server-side: 5 minutes, spent by the first verification that names
 * them (DELETE … RETURNING). Registration challenges belong to one user; login ones to none.
 */
export const webauthnChallenges = sqliteTable(
  "webauthn_challenges",
  {
    challenge: text("challenge").primaryKey(),
    realm: text("realm").notNull(),
    purpose: text("purpose", { enum: ["register", "login"] }).notNull(),
    userId: text("user_id"),
    expiresAt: text("expires_at").notNull(),
  },
  (t) => [index("webauthn_challenges_expires").on(t.expiresAt)],
);
