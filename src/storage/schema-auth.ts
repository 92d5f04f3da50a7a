import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";
// The tables below reference these; a cycle with schema.ts that only the lazy references cross.
import { realms, users } from "./schema";

/** D1 tables of the ways in and their records (see schema.ts for the conventions). */

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
