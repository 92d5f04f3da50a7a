import { z } from "zod";
import { oauthRedirectUris, oidcClientSecrets, oidcProblems, oidcProviders } from "./auth-methods/oidc-config";
import { authorityAudience as authorityAudienceOf } from "./crypto/jwt";
import type { Env } from "./env";

const intFromString = (fallback: number, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === "") return fallback;
      const n = Number(v);
      if (!Number.isInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: "custom", message: `must be a whole number from ${min} to ${max}` });
        return z.NEVER;
      }
      return n;
    });

const privateJwk = z
  .object({
    kty: z.literal("EC"),
    crv: z.literal("P-256"),
    kid: z.string().min(1).max(128),
    x: z.string().min(1),
    y: z.string().min(1),
    d: z.string().min(1),
  })
  .loose();

export type PrivateJwk = z.infer<typeof privateJwk>;

const jwtKeys = z.string({ error: "is not set" }).transform((raw, ctx) => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    ctx.addIssue({ code: "custom", message: "is not valid JSON" });
    return z.NEVER;
  }
  const keys = z.array(privateJwk).min(1).safeParse(parsed);
  if (!keys.success) {
    // Never echo the value: it holds private keys.
    ctx.addIssue({ code: "custom", message: "must be a JSON array of private P-256 JWKs, each with a kid" });
    return z.NEVER;
  }
  const kids = new Set(keys.data.map((k) => k.kid));
  if (kids.size !== keys.data.length) {
    ctx.addIssue({ code: "custom", message: "has two keys with the same kid" });
    return z.NEVER;
  }
  return keys.data;
});

const optionalText = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === "" ? undefined : v.trim()));

const schema = z.object({
  ISSUER: z.url({ error: "must be a URL" }),
  // The `aud` of access tokens (docs/api.md §2): one audience or a comma-separated list; default: the ISSUER.
  TOKEN_AUDIENCE: z
    .string()
    .optional()
    .transform((v) =>
      (v ?? "")
        .split(",")
        .map((a) => a.trim())
        .filter(Boolean),
    )
    .pipe(z.array(z.string().max(512, { error: "each audience must be at most 512 characters" })).max(16)),
  ENVIRONMENT: z.enum(["development", "test", "staging", "production"]).default("development"),
  ACCESS_TTL_SECONDS: intFromString(900, 60, 86_400),
  REFRESH_TTL_SECONDS: intFromString(2_592_000, 3_600, 31_536_000),
  PUBLIC_TTL_SECONDS: intFromString(2_592_000, 60, 31_536_000),
  JWT_PRIVATE_KEYS: jwtKeys,
  PASSWORD_PEPPER: z
    .string()
    .optional()
    .transform((v) => (v === undefined || v === "" ? undefined : v))
    .refine((v) => v === undefined || v.length >= 16, "must be at least 16 characters"),
  BOOTSTRAP_ADMIN_EMAILS: z
    .string()
    .optional()
    .transform((v) =>
      (v ?? "")
        .split(/[\s,]+/)
        .map((e) => e.trim().toLowerCase())
        .filter(Boolean),
    ),
  NOTIFY_WEBHOOK_URL: z
    .string()
    .optional()
    .transform((v) => (v === "" ? undefined : v))
    .pipe(z.url({ error: "must be a URL" }).optional()),
  // Receivers check X-Signature with it (docs/api.md §8): a short one could be guessed offline from one post.
  NOTIFY_WEBHOOK_SECRET: z
    .string()
    .optional()
    .transform((v) => (v === "" ? undefined : v))
    .refine((v) => v === undefined || v.length >= 16, "must be at least 16 characters"),
  TURNSTILE_SECRET: z
    .string()
    .optional()
    .transform((v) => (v === "" ? undefined : v)),
  AUDIT_RETENTION_DAYS: intFromString(90, 1, 3650),
  // Identity providers (docs/api.md §13).
  OIDC_PROVIDERS: oidcProviders,
  OIDC_CLIENT_SECRETS: oidcClientSecrets,
  OAUTH_REDIRECT_URIS: oauthRedirectUris,
  WEBAUTHN_RP_ID: optionalText.pipe(
    z
      .string()
      .regex(/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, {
        error: "must be a lower-case host name without scheme or port (e.g. example.com)",
      })
      .optional(),
  ),
  WEBAUTHN_RP_NAME: optionalText.pipe(z.string().max(64, { error: "must be at most 64 characters" }).optional()),
  WEBAUTHN_ORIGINS: optionalText.transform((v) =>
    (v ?? "")
      .split(",")
      .map((o) => o.trim())
      .filter(Boolean),
  ),
});

export type Config = z.output<typeof schema> & {
  /** Passkey settings (docs/api.md §12), or null when WEBAUTHN_RP_ID is not set (passkeys are off). */
  webauthn: WebAuthnConfig | null;
};

export interface WebAuthnConfig {
  rpId: string;
  rpName: string;
  origins: string[];
}

/**
 * The passkey settings, checked: each origin is an https origin on the RP ID or a subdomain of it
 * (http only for localhost), or an Android app's `android:apk-key-hash:`; without
 * WEBAUTHN_ORIGINS, `https://<RP ID>`.
 */
export function webauthnSettings(c: z.output<typeof schema>): { value: WebAuthnConfig | null; problems: string[] } {
  const rpId = c.WEBAUTHN_RP_ID;
  if (!rpId) {
    const problems = c.WEBAUTHN_ORIGINS.length ? ["WEBAUTHN_RP_ID: is required when WEBAUTHN_ORIGINS is set"] : [];
    return { value: null, problems };
  }
  const origins = c.WEBAUTHN_ORIGINS.length ? c.WEBAUTHN_ORIGINS : [`https://${rpId}`];
  const problems: string[] = [];
  for (const origin of origins) {
    if (/^android:apk-key-hash:[A-Za-z0-9_-]{43}$/.test(origin)) continue;
    let url: URL | null = null;
    try {
      url = new URL(origin);
    } catch {
      // reported below
    }
    const local = url?.hostname === "localhost";
    const ok =
      url !== null &&
      url.origin === origin &&
      (url.protocol === "https:" || (local && url.protocol === "http:")) &&
      (url.hostname === rpId || url.hostname.endsWith(`.${rpId}`));
    if (!ok) {
      problems.push(
        `WEBAUTHN_ORIGINS: "${origin}" is not an https origin on ${rpId} or a subdomain of it, nor android:apk-key-hash:<hash>`,
      );
    }
  }
  return { value: { rpId, rpName: c.WEBAUTHN_RP_NAME ?? rpId, origins }, problems };
}
export type ConfigResult = { ok: true; config: Config } | { ok: false; problems: string[] };

const cache = new WeakMap<object, ConfigResult>();

/** Reads and validates the environment once per env object; problems name the setting, never its value. */
export function loadConfig(env: Env): ConfigResult {
  const hit = cache.get(env);
  if (hit) return hit;
  const parsed = schema.safeParse(env);
  let result: ConfigResult;
  if (parsed.success) {
    const problems: string[] = [];
    if (!parsed.data.TOKEN_AUDIENCE.length) parsed.data.TOKEN_AUDIENCE = [parsed.data.ISSUER];
    if (parsed.data.TOKEN_AUDIENCE.includes(authorityAudienceOf(parsed.data.ISSUER))) {
      problems.push("TOKEN_AUDIENCE: must not name the audience of authority tokens");
    }
    if (parsed.data.NOTIFY_WEBHOOK_URL && !parsed.data.NOTIFY_WEBHOOK_SECRET) {
      problems.push("NOTIFY_WEBHOOK_SECRET: is required when NOTIFY_WEBHOOK_URL is set");
    }
    problems.push(...oidcProblems(parsed.data.OIDC_PROVIDERS, parsed.data.OIDC_CLIENT_SECRETS));
    const webauthn = webauthnSettings(parsed.data);
    problems.push(...webauthn.problems);
    result = problems.length
      ? { ok: false, problems }
      : { ok: true, config: { ...parsed.data, webauthn: webauthn.value } };
  } else {
    result = {
      ok: false,
      problems: parsed.error.issues.map((i) => `${i.path.join(".") || "config"}: ${i.message}`),
    };
  }
  cache.set(env, result);
  return result;
}
