import { z } from "@hono/zod-openapi";

/** Emails are trimmed and lower-cased (docs/api.md §1). */
export const Email = z
  .string()
  .trim()
  .toLowerCase()
  .max(254)
  .pipe(z.email({ error: "must be an email address" }))
  .openapi({ example: "ada@example.com", format: "email" });

/** An ISO-8601 UTC timestamp in a response (docs/api.md §1). */
export const Timestamp = z.string().openapi({ format: "date-time", example: "2026-01-31T12:00:00.000Z" });

/** An email address in a response (trimmed and lower-cased when it was stored). */
export const EmailOut = z.string().openapi({ format: "email" });

/** A URL in a response. */
export const UrlOut = z.string().openapi({ format: "uri" });

export const Password = z
  .string()
  .min(8, { error: "must be at least 8 characters" })
  .max(128, { error: "must be at most 128 characters" });

export const E164 = z
  .string()
  .trim()
  .regex(/^\+[1-9]\d{6,14}$/, { error: "must be an E.164 phone number, like +14155550123" })
  .openapi({ example: "+14155550123" });

export const FullName = z.string().trim().min(1).max(200);

/** A free JSON object of at most 4 KiB (serialized). */
export const Profile = z
  .record(z.string().max(128), z.unknown())
  .refine((v) => new TextEncoder().encode(JSON.stringify(v)).byteLength <= 4096, {
    error: "must be at most 4 KiB as JSON",
  })
  .openapi({ type: "object", example: { locale: "en" } });

export const DeviceIdInput = z
  .string()
  .max(256)
  .optional()
  .openapi({ description: "32 characters [A-Za-z0-9]; any other value is replaced by a new one" });

export const Description = z.string().trim().max(200);

export const EmailEntrySchema = z.object({
  email: EmailOut,
  current: z.boolean(),
  verified: z.boolean().openapi({ description: "A code sent to this address was accepted (docs/api.md §11)" }),
  added_at: Timestamp,
});

export const UserSchema = z
  .object({
    id: z.string(),
    realm: z.string(),
    email: EmailOut.nullable(),
    email_verified: z.boolean().openapi({ description: "Whether the current email was proven by a code sent to it" }),
    emails: z.array(EmailEntrySchema),
    phone_number: z.string().nullable(),
    full_name: z.string().nullable(),
    image_url: UrlOut.nullable(),
    roles: z.array(z.string()),
    status: z.enum(["active", "pending", "disabled"]),
    source: z.enum(["password", "phone", "admin", "oidc"]),
    profile: z.record(z.string(), z.unknown()),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .openapi("User");

export const PublicUserSchema = z
  .object({ id: z.string(), full_name: z.string().nullable(), image_url: UrlOut.nullable() })
  .openapi("PublicUser");

export const TokenPairSchema = z
  .object({
    access_token: z.string(),
    refresh_token: z.string(),
    token_type: z.literal("Bearer"),
    expires_in: z.number().int(),
    refresh_expires_in: z.number().int(),
    device_id: z.string(),
    user: UserSchema,
  })
  .openapi("TokenPair");

export const DeviceSchema = z
  .object({
    device_id: z.string(),
    description: z.string().nullable(),
    current: z.boolean(),
    created_at: Timestamp,
    last_seen_at: Timestamp,
    push_token: z.string().nullable(),
    push_token_updated_at: Timestamp.nullable(),
  })
  .openapi("Device");

export const ErrorSchema = z
  .object({
    error: z.object({
      code: z.string(),
      message: z.string(),
      fields: z.record(z.string(), z.string()).optional(),
    }),
  })
  .openapi("Error");

/** Role names: lower-case, so `"admin"` in the stored JSON array can only be the role admin. */
export const Roles = z.array(z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/)).max(16);
