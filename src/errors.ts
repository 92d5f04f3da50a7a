/**
 * The error codes of the API contract (docs/api.md §1–§10) and their HTTP status, in one table.
 * Services throw `ApiError`; the app's single onError turns it into the wire shape.
 */
export const ERRORS = {
  validation_failed: [400, "The request is not valid"],
  invalid_json: [400, "The request body is not valid JSON"],
  invalid_code: [400, "The code is not valid"],
  invalid_state: [400, "This sign-in is not known or has expired. Please start again"],
  captcha_failed: [400, "The captcha check failed"],
  invalid_passkey: [400, "The passkey could not be verified"],
  missing_token: [401, "An access token is required"],
  invalid_token: [401, "The token is not valid"],
  token_expired: [401, "The token has expired"],
  token_revoked: [401, "The token has been revoked"],
  session_revoked: [401, "This session has ended. Please log in again"],
  refresh_token_reused: [401, "This refresh token was already used. The session has been ended"],
  fresh_token_required: [401, "This action needs a recent login. Please log in again"],
  invalid_credentials: [401, "The email or password is not correct"],
  invalid_otp: [401, "The code is not correct"],
  otp_expired: [401, "The code has expired. Please request a new one"],
  mfa_required: [401, "A second factor is required"],
  forbidden: [403, "You are not allowed to do this"],
  user_not_found: [403, "The user of this token no longer exists"],
  account_disabled: [403, "This account is disabled"],
  account_pending: [403, "This account is waiting for approval"],
  email_unverified: [403, "This email address is not verified yet"],
  domain_not_allowed: [403, "You are not allowed to register"],
  registration_closed: [403, "Registration is closed"],
  not_found: [404, "Not found"],
  realm_not_found: [404, "Realm not found"],
  method_not_allowed: [405, "Method not allowed"],
  user_exists: [409, "User already exists. Please log in"],
  email_in_use: [409, "This email is used by another account"],
  phone_in_use: [409, "This phone number is used by another account"],
  last_admin: [409, "The realm would be left without an admin"],
  account_exists: [409, "An account with this email exists. Sign in another way, then link this provider"],
  identity_in_use: [409, "This identity is already linked to an account"],
  last_credential: [409, "This is the account's only way to sign in"],
  totp_already_enabled: [409, "An authenticator app is already set up. Remove it first"],
  totp_not_enabled: [409, "No authenticator app is set up"],
  payload_too_large: [413, "The request body is larger than 16 KiB"],
  unsupported_media_type: [415, "The request body must be application/json"],
  too_many_attempts: [429, "Too many attempts. Please try again later"],
  internal_error: [500, "Something went wrong"],
  delivery_failed: [502, "The message could not be delivered"],
  provider_unavailable: [502, "The identity provider could not be reached"],
  config_invalid: [503, "The service is not configured"],
  temporarily_unavailable: [503, "The service is temporarily unavailable. Please try again shortly"],
  delivery_unavailable: [503, "No delivery channel is configured"],
  captcha_unavailable: [503, "The captcha check is not available"],
  passkeys_unavailable: [503, "Passkeys are not configured"],
} as const satisfies Record<string, readonly [number, string]>;

export type ErrorCode = keyof typeof ERRORS;

/** An expected failure with a stable code; mapped to HTTP in one place. */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly fields?: Record<string, string>;
  readonly headers?: Record<string, string>;
  /** Members of the error body beside `error` (e.g. `mfa_token` of 401 mfa_required). */
  readonly body?: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    message?: string,
    extra?: {
      fields?: Record<string, string>;
      headers?: Record<string, string>;
      body?: Record<string, unknown>;
      /** A status other than the table's, where the contract gives one code two statuses (mfa_required). */
      status?: number;
    },
  ) {
    const [status, defaultMessage] = ERRORS[code];
    super(message ?? defaultMessage);
    this.name = "ApiError";
    this.code = code;
    this.status = extra?.status ?? status;
    this.fields = extra?.fields;
    this.headers = extra?.headers;
    this.body = extra?.body;
  }
}

/** The wire shape of every error (docs/api.md §1). */
export function errorBody(code: ErrorCode, message?: string, fields?: Record<string, string>) {
  const error: { code: ErrorCode; message: string; fields?: Record<string, string> } = {
    code,
    message: message ?? ERRORS[code][1],
  };
  if (fields) error.fields = fields;
  return { error };
}

/** Codes that mean "a presented token was rejected": RFC 6750 `error="invalid_token"` goes with them. */
export const REJECTED_TOKEN_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  "invalid_token",
  "token_expired",
  "token_revoked",
  "session_revoked",
  "refresh_token_reused",
  "fresh_token_required",
]);

/** Whole seconds, rounded up, never 0 (a Retry-After of 0 would invite an immediate retry that fails). */
export const retryAfterSeconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

/** 429 too_many_attempts with its Retry-After. */
export function tooMany(retryAfterMs: number, message?: string): ApiError {
  return new ApiError("too_many_attempts", message, {
    headers: { "Retry-After": String(retryAfterSeconds(retryAfterMs)) },
  });
}

/**
 * True for an error of a store that a retry may not meet again: D1, KV or a Durable Object that
 * could not be reached or answered with an internal error (the runtime marks some `retryable` or
 * `overloaded`). Never a constraint violation or an error in a query, which a retry repeats.
 */
export function isTransientStoreError(e: unknown): boolean {
  for (let err = e, depth = 0; err && depth < 4; err = (err as { cause?: unknown }).cause, depth++) {
    const x = err as { retryable?: unknown; overloaded?: unknown; message?: unknown };
    if (x.retryable === true || x.overloaded === true) return true;
    const text = String(x.message ?? err);
    if (/constraint|no such (table|column)|syntax error|SQLITE_(CONSTRAINT|ERROR)\b/i.test(text)) return false;
    if (
      /D1_ERROR|Network connection lost|KV (GET|PUT|DELETE|LIST) failed|storage operation exceeded timeout|Durable Object (reset|is overloaded|storage)|internal error/i.test(
        text,
      )
    )
      return true;
  }
  return false;
}
