import type { DeviceSession } from "./storage/device-session";

/** The bindings and variables of wrangler.toml, plus the secrets set with `wrangler secret put`. */
export interface Env {
  DB: D1Database;
  TOKENS: KVNamespace;
  DEVICE_SESSIONS: DurableObjectNamespace<DeviceSession>;
  /** Per-client-IP rate limiters (optional: absent bindings are not enforced). */
  RL_SIGNUP?: RateLimit;
  RL_LOGIN?: RateLimit;
  RL_OTP?: RateLimit;
  RL_RESET?: RateLimit;
  CORS_ORIGINS?: string;
  /** Optional: notifications go through this queue (consumer: the same worker's queue handler). */
  NOTIFY_QUEUE?: Queue<unknown>;
  ISSUER?: string;
  TOKEN_AUDIENCE?: string;
  ENVIRONMENT?: string;
  ACCESS_TTL_SECONDS?: string;
  REFRESH_TTL_SECONDS?: string;
  PUBLIC_TTL_SECONDS?: string;
  JWT_PRIVATE_KEYS?: string;
  PASSWORD_PEPPER?: string;
  BOOTSTRAP_ADMIN_EMAILS?: string;
  NOTIFY_WEBHOOK_URL?: string;
  NOTIFY_WEBHOOK_SECRET?: string;
  TURNSTILE_SECRET?: string;
  /** Passkeys (docs/api.md §12): the relying party id (a host name), its display name, and the allowed origins (comma-separated). */
  WEBAUTHN_RP_ID?: string;
  WEBAUTHN_RP_NAME?: string;
  WEBAUTHN_ORIGINS?: string;
  AUDIT_RETENTION_DAYS?: string;
  /** JSON array of identity providers (docs/api.md §13). */
  OIDC_PROVIDERS?: string;
  /** Secret: JSON object, provider id → client secret. */
  OIDC_CLIENT_SECRETS?: string;
  /** Comma-separated redirect targets the web sign-in may hand its one-time code to. */
  OAUTH_REDIRECT_URIS?: string;
}
