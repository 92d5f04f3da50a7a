import { z } from "@hono/zod-openapi";

/** Emails are trimmed and lower-cased (api.md §1). */
export const Email = z
  .string()
  .trim()
  .toLowerCase()
  .max(254)
  .pipe(z.email({ error: "must be an email address" }))
  .openapi({ example: "ada@example.com" });

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

export const EmailEntrySchema = z.object({ email: z.string(), current: z.boolean(), added_at: z.string() });

export const UserSchema = z
  .object({
    id: z.string(),
    realm: z.string(),
    email: z.string().nullable(),
    emails: z.array(EmailEntrySchema),
    phone_number: z.string().nullable(),
    full_name: z.string().nullable(),
    image_url: z.string().nullable(),
    roles: z.array(z.string()),
    status: z.enum(["active", "pending", "disabled"]),
    source: z.enum(["password", "phone", "admin"]),
    profile: z.record(z.string(), z.unknown()),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("User");

export const PublicUserSchema = z
  .object({ id: z.string(), full_name: z.string().nullable(), image_url: z.string().nullable() })
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
    created_at: z.string(),
    last_seen_at: z.string(),
    push_token: z.string().nullable(),
    push_token_updated_at: z.string().nullable(),
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

export const SignUpBody = z
  .object({
    email: Email,
    password: Password.optional(),
    password_confirmation: z.string().max(128).optional(),
    full_name: FullName,
    phone_number: E164.optional(),
    profile: Profile.optional(),
    captcha_token: z.string().max(4096).optional(),
    device_id: DeviceIdInput,
    roles: z.array(z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/)).max(16).optional(),
  })
  .refine((b) => b.password_confirmation === undefined || b.password_confirmation === b.password, {
    path: ["password_confirmation"],
    error: "does not match password",
  })
  .openapi("SignUp");

export const LoginBody = z
  .object({
    email: Email,
    password: z.string().min(1).max(1024),
    device_id: DeviceIdInput,
    description: Description.optional(),
  })
  .openapi("Login");

export const RefreshBody = z.object({ refresh_token: z.string().min(1).max(1024) }).openapi("Refresh");
export const PublicTokenBody = z.object({ device_id: DeviceIdInput }).openapi("PublicTokenRequest");
export const LogoutBody = z.object({ all: z.boolean().optional() }).openapi("Logout");
export const DeviceUpdateBody = z
  .object({
    push_token: z.string().min(1).max(4096).nullable().optional(),
    description: Description.nullable().optional(),
  })
  .openapi("DeviceUpdate");

export const Domain = z
  .string()
  .trim()
  .toLowerCase()
  .max(253)
  .regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/, {
    error: "must be a domain name, like example.com",
  });

export const DomainRuleSchema = z
  .object({ domain: z.string(), rule: z.enum(["allow", "block"]), created_at: z.string() })
  .openapi("DomainRule");
export const DomainRuleBody = z.object({ rule: z.enum(["allow", "block"]) }).openapi("DomainRuleUpdate");
