// The wire types of `user-registry/client` (docs/api.md §2–§5, §12, §13).
// test/sdk-types.test.ts checks them against the API's schemas.

export interface EmailEntry {
  email: string;
  current: boolean;
  /** A code sent to this address was accepted. */
  verified: boolean;
  added_at: string;
}
export interface User {
  id: string;
  realm: string;
  email: string | null;
  /** Whether the current email was proven by a code sent to it. */
  email_verified: boolean;
  emails: EmailEntry[];
  phone_number: string | null;
  full_name: string | null;
  image_url: string | null;
  roles: string[];
  status: "active" | "pending" | "disabled";
  source: "password" | "phone" | "admin" | "oidc";
  profile: Record<string, unknown>;
  created_at: string;
  updated_at: string;
  [field: string]: unknown;
}
export interface PublicUser {
  id: string;
  full_name: string | null;
  image_url: string | null;
}
export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_expires_in: number;
  device_id: string;
  user: User;
}
export interface Device {
  device_id: string;
  description: string | null;
  current: boolean;
  created_at: string;
  last_seen_at: string;
  push_token: string | null;
  push_token_updated_at: string | null;
}
export interface PublicToken {
  token: string;
  device_id: string;
  expires_in: number;
}
export interface SignUpInput {
  email: string;
  password: string;
  password_confirmation?: string;
  full_name: string;
  phone_number?: string;
  profile?: Record<string, unknown>;
  captcha_token?: string;
  device_id?: string;
}
export interface LoginInput {
  email: string;
  password: string;
  device_id?: string;
  description?: string;
}
export interface UserPatch {
  full_name?: string;
  phone_number?: string | null;
  /** The OTP sent to a new phone_number (POST /v1/otp), proving the caller holds it. */
  phone_otp?: string;
  image_url?: string | null;
  profile?: Record<string, unknown>;
}
export interface OtpSent {
  expires_in: number;
  retry_after: number;
}
export interface OtpVerifyInput {
  phone_number: string;
  otp: string;
  name?: string;
  fcm_token?: string;
  device_id?: string;
  description?: string;
}

// Second factors and passkeys (docs/api.md §12).

export interface TotpEnrolment {
  /** The shared secret, base32 (for typing into the app). */
  secret: string;
  /** `otpauth://totp/…`, for a QR code. */
  otpauth_uri: string;
}
export interface RecoveryCodes {
  /** Shown once; each works once. */
  recovery_codes: string[];
}
/** `GET /v1/users/me/mfa`: which second factors the account has now. */
export interface MfaStatus {
  /** An authenticator app is on (enrolled and confirmed; a pending enrolment does not count). */
  totp: boolean;
  /** Recovery codes not used yet (0 without the app). */
  recovery_codes_left: number;
  /** Registered passkeys. */
  passkeys: number;
}
/** The second step of a login that answered `401 mfa_required`: exactly one of `code` and `recovery_code`. */
export type MfaLoginInput =
  | { mfa_token: string; code: string; recovery_code?: never }
  | { mfa_token: string; recovery_code: string; code?: never };
export interface Passkey {
  id: string;
  name: string | null;
  created_at: string;
  last_used_at: string | null;
  backed_up: boolean;
  transports: string[];
}
/** How a passkey may reach the browser (WebAuthn's AuthenticatorTransport, with the newer values). */
export type PasskeyTransport = "ble" | "cable" | "hybrid" | "internal" | "nfc" | "smart-card" | "usb";
export type UserVerification = "discouraged" | "preferred" | "required";
/** A credential named in WebAuthn options, its id base64url. */
export interface PasskeyDescriptor {
  id: string;
  type: "public-key";
  transports?: PasskeyTransport[];
}
/**
 * WebAuthn creation options in their JSON form (PublicKeyCredentialCreationOptionsJSON), as
 * `passkeyRegistrationOptions` answers them: hand them to the platform as they are, e.g.
 * `startRegistration({ optionsJSON })` of @simplewebauthn/browser.
 */
export interface PasskeyCreationOptions {
  rp: { id?: string; name: string };
  /** The user handle (`id`, base64url) and the names the authenticator shows. */
  user: { id: string; name: string; displayName: string };
  challenge: string;
  pubKeyCredParams: { alg: number; type: "public-key" }[];
  timeout?: number;
  /** The account's passkeys, so the same authenticator is not registered twice. */
  excludeCredentials?: PasskeyDescriptor[];
  authenticatorSelection?: {
    authenticatorAttachment?: "platform" | "cross-platform";
    requireResidentKey?: boolean;
    residentKey?: "discouraged" | "preferred" | "required";
    userVerification?: UserVerification;
  };
  hints?: ("hybrid" | "security-key" | "client-device")[];
  attestation?: "direct" | "enterprise" | "indirect" | "none";
  attestationFormats?: ("fido-u2f" | "packed" | "android-safetynet" | "android-key" | "tpm" | "apple" | "none")[];
  extensions?: { credProps?: boolean };
}
/**
 * WebAuthn request options in their JSON form (PublicKeyCredentialRequestOptionsJSON), as
 * `passkeyLoginOptions` answers them: e.g. `startAuthentication({ optionsJSON })`.
 */
export interface PasskeyRequestOptions {
  challenge: string;
  timeout?: number;
  rpId?: string;
  /** Empty for a discoverable credential (no user named). */
  allowCredentials?: PasskeyDescriptor[];
  userVerification?: UserVerification;
  hints?: ("hybrid" | "security-key" | "client-device")[];
}
/** @deprecated Use `PasskeyCreationOptions` or `PasskeyRequestOptions`. */
export type WebAuthnOptions = PasskeyCreationOptions | PasskeyRequestOptions;
/** A WebAuthn registration or authentication response in its JSON form (what @simplewebauthn/browser returns). */
export interface WebAuthnResponse {
  id: string;
  rawId: string;
  type: "public-key";
  response: { clientDataJSON: string };
  clientExtensionResults?: object;
  authenticatorAttachment?: string;
}
export interface PasskeyLoginInput {
  response: WebAuthnResponse;
  device_id?: string;
  description?: string;
}

// Identity providers (docs/api.md §13).

export interface OidcLoginInput {
  /** The id of a provider of the registry's OIDC_PROVIDERS. */
  provider: string;
  id_token: string;
  /** The nonce the app gave the provider. */
  nonce?: string;
  /** For a new account (Apple gives the name to the app only). */
  name?: string;
  device_id?: string;
  description?: string;
}
export interface OauthLoginInput {
  /** The one-time code the registry put on the app's redirect_uri. */
  code: string;
  device_id?: string;
  description?: string;
}
export interface Identity {
  provider: string;
  subject: string;
  email: string | null;
  created_at: string;
}
export type FederatedTokenPair = TokenPair & { created: boolean };
