import { z } from "@hono/zod-openapi";
import {
  Description,
  DeviceIdInput,
  E164,
  Email,
  FullName,
  Password,
  Profile,
  Roles,
  Timestamp,
  TokenPairSchema,
} from "./schemas-base";

// The shared parts (email, password, user, token pair, ...): their own module, re-exported.
export * from "./schemas-base";

export const SignUpBody = z
  .object({
    email: Email,
    password: Password.optional().openapi({
      description:
        "Required for a sign-up; an admin creating a user may leave it out (a welcome code lets the user set one)",
    }),
    password_confirmation: z.string().max(128).optional(),
    full_name: FullName,
    phone_number: E164.optional().openapi({ description: "Needs phone_otp: a number is attached only with its proof" }),
    phone_otp: z
      .string()
      .trim()
      .regex(/^\d{6}$/, { error: "must be the 6-digit code sent to phone_number" })
      .optional()
      .openapi({ description: "Required with phone_number: the code POST /v1/otp sent to it" }),
    profile: Profile.optional(),
    captcha_token: z.string().max(4096).optional(),
    device_id: DeviceIdInput,
    roles: Roles.optional(),
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
  .object({ domain: z.string(), rule: z.enum(["allow", "block"]), created_at: Timestamp })
  .openapi("DomainRule");
export const DomainRuleBody = z.object({ rule: z.enum(["allow", "block"]) }).openapi("DomainRuleUpdate");

/** An https URL (no other scheme: an image URL is shown to other users). */
export const HttpsUrl = z
  .string()
  .trim()
  .max(2048)
  .pipe(z.url({ protocol: /^https$/, normalize: true, error: "must be an https URL" }))
  .openapi({ example: "https://example.com/ada.png" });

const CurrentPassword = z
  .string()
  .min(1)
  .max(1024)
  .optional()
  .openapi({ description: "Required when the account has a password" });

export const UserPatchBody = z
  .strictObject({
    full_name: FullName.optional(),
    phone_number: E164.nullable().optional().openapi({ description: "E.164; null removes it" }),
    phone_otp: z
      .string()
      .regex(/^\d{6}$/, { error: "must be the 6-digit code sent to phone_number" })
      .optional()
      .openapi({ description: "Required when you add or change your own number: the code from POST /v1/otp" }),
    image_url: HttpsUrl.nullable().optional().openapi({ description: "https only; null removes it" }),
    profile: Profile.optional().openapi({ description: "Replaces the whole profile (at most 4 KiB as JSON)" }),
  })
  .openapi("UserUpdate");

export const EmailChangeBody = z.object({ email: Email, current_password: CurrentPassword }).openapi("EmailChange");

export const PasswordChangeBody = z
  .object({
    password: Password,
    password_confirmation: z.string().max(128),
    current_password: CurrentPassword,
  })
  .refine((b) => b.password_confirmation === b.password, {
    path: ["password_confirmation"],
    error: "does not match password",
  })
  .openapi("PasswordChange");

export const ResetRequestBody = z.object({ email: Email }).openapi("ResetRequest");

/** A code typed by a person (8 digits are sent; anything else is simply wrong: 400 invalid_code). */
const TypedCode = z.string().trim().min(1).max(32).openapi({ example: "12345678" });

export const VerificationRequestBody = z.object({ email: Email }).openapi("VerificationRequest");
export const VerificationBody = z.object({ email: Email, code: TypedCode }).openapi("Verification");
export const EmailVerifyBody = z.object({ code: TypedCode }).openapi("EmailChangeVerify");
export const PendingEmailSchema = z
  .object({
    pending_email: z.string(),
    expires_in: z.number().int().openapi({ description: "Seconds the code sent to pending_email stays valid" }),
  })
  .openapi("PendingEmailChange");

export const ResetCompleteBody = z
  .object({
    email: Email,
    code: z.string().trim().min(1).max(32).openapi({ example: "12345678" }),
    password: Password,
    password_confirmation: z.string().max(128),
  })
  .refine((b) => b.password_confirmation === b.password, {
    path: ["password_confirmation"],
    error: "does not match password",
  })
  .openapi("ResetComplete");

export const OtpRequestBody = z
  .object({
    phone_number: E164,
    captcha_token: z.string().max(4096).optional(),
  })
  .openapi("OtpRequest");

export const OtpSentSchema = z
  .object({
    expires_in: z.number().int().openapi({ description: "Seconds the code stays valid" }),
    retry_after: z.number().int().openapi({ description: "Seconds until another code may be sent to this number" }),
  })
  .openapi("OtpSent");

export const OtpVerifyBody = z
  .object({
    phone_number: E164,
    otp: z
      .string()
      .trim()
      .regex(/^\d{6}$/, { error: "must be the 6-digit code" })
      .openapi({ example: "123456" }),
    name: FullName.optional().openapi({
      description: "The full name of a user created by this verify; ignored otherwise",
    }),
    fcm_token: z.string().min(1).max(4096).optional().openapi({ description: "The device's push (FCM) token" }),
    device_id: DeviceIdInput,
    description: Description.optional(),
  })
  .openapi("OtpVerify");

export const OtpTokenPairSchema = TokenPairSchema.extend({
  created: z.boolean().openapi({ description: "True when this verify created the user" }),
}).openapi("OtpTokenPair");

export const TotpCode = z.string().regex(/^\d{6}$/, { error: "must be 6 digits" });
export const RecoveryCode = z.string().trim().min(1).max(32);

export const TotpEnrolmentSchema = z
  .object({
    secret: z.string().openapi({ description: "The shared secret, base32 (what an app takes when typed in)" }),
    otpauth_uri: z.string().openapi({ description: "otpauth://totp/… for a QR code" }),
  })
  .openapi("TotpEnrolment");
export const TotpConfirmBody = z.object({ code: TotpCode }).openapi("TotpConfirm");
export const RecoveryCodesSchema = z
  .object({ recovery_codes: z.array(z.string()).openapi({ description: "Shown once; each works once" }) })
  .openapi("RecoveryCodes");

export const MfaStatusSchema = z
  .object({
    totp: z.boolean().openapi({ description: "An authenticator app is on (confirmed; a pending enrolment is not)" }),
    recovery_codes_left: z.number().int().openapi({ description: "Unused recovery codes (0 without the app)" }),
    passkeys: z.number().int().openapi({ description: "Registered passkeys" }),
  })
  .openapi("MfaStatus");

export const MfaLoginBody = z
  .object({
    mfa_token: z.string().min(1).max(128),
    code: TotpCode.optional(),
    recovery_code: RecoveryCode.optional(),
  })
  .refine((b) => (b.code === undefined) !== (b.recovery_code === undefined), {
    error: "give exactly one of code and recovery_code",
    path: ["code"],
  })
  .openapi("MfaLogin");

/** A WebAuthn response in its JSON form (as @simplewebauthn/browser gives it); the library checks the rest. */
const WebAuthnResponse = z.looseObject({
  id: z.string().min(1).max(1366),
  rawId: z.string().min(1).max(1366),
  type: z.literal("public-key"),
  response: z.looseObject({ clientDataJSON: z.string().min(1).max(8192) }),
  clientExtensionResults: z.record(z.string(), z.unknown()).optional().default({}),
});

export const PasskeyRegisterBody = z
  .object({ response: WebAuthnResponse, name: z.string().trim().min(1).max(100).optional() })
  .openapi("PasskeyRegistration");
export const PasskeyLoginBody = z
  .object({ response: WebAuthnResponse, device_id: DeviceIdInput, description: Description.optional() })
  .openapi("PasskeyLogin");
export const PasskeySchema = z
  .object({
    id: z.string(),
    name: z.string().nullable(),
    created_at: z.string(),
    last_used_at: z.string().nullable(),
    backed_up: z.boolean(),
    transports: z.array(z.string()),
  })
  .openapi("Passkey");
export const WebAuthnOptionsSchema = z
  .looseObject({ challenge: z.string() })
  .openapi("WebAuthnOptions", { description: "PublicKeyCredential creation or request options, JSON form" });
