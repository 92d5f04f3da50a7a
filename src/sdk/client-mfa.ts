// Typed calls of `user-registry/client`: second factors and passkeys (docs/api.md §12).
import type { Transport } from "./client-transport.js";
import type {
  MfaLoginInput,
  MfaStatus,
  Passkey,
  PasskeyCreationOptions,
  PasskeyLoginInput,
  PasskeyRequestOptions,
  RecoveryCodes,
  TokenPair,
  TotpEnrolment,
  WebAuthnResponse,
} from "./client-types.js";

/** Second factors and passkeys. */
export function mfaCalls(t: Transport) {
  const { authed, call, keep, signIn } = t;
  const enc = encodeURIComponent;
  return {
    // Second factors (docs/api.md §12). Enrolment and removal need a fresh access token (a login just now).
    /** Whether the authenticator app is on, how many recovery codes are left, how many passkeys. */
    mfaStatus: () => authed<MfaStatus>("GET", "/v1/users/me/mfa"),
    /** Starts enrolling an authenticator app: the secret and its otpauth URI; on once `confirmTotp` accepts a first code. */
    enrolTotp: () => authed<TotpEnrolment>("POST", "/v1/users/me/mfa/totp"),
    /** Confirms the enrolment with the app's first code; answers the 10 recovery codes (shown once). */
    confirmTotp: (code: string) => authed<RecoveryCodes>("PUT", "/v1/users/me/mfa/totp", { code }),
    /** Turns the authenticator app off; the recovery codes go too. */
    removeTotp: () => authed<void>("DELETE", "/v1/users/me/mfa/totp"),
    /** A new set of recovery codes; the previous set stops working. */
    regenerateRecoveryCodes: () => authed<RecoveryCodes>("POST", "/v1/users/me/mfa/recovery-codes"),
    /** The second step after `401 mfa_required` (`RegistryError.mfaToken`): an app code or a recovery code. */
    mfaLogin: async (input: MfaLoginInput) => keep(await call<TokenPair>("POST", "/v1/tokens/mfa", input)),

    // Passkeys (docs/api.md §12).
    /** Creation options for `navigator.credentials.create()` (fresh access token). */
    passkeyRegistrationOptions: () => authed<PasskeyCreationOptions>("POST", "/v1/users/me/passkeys/options"),
    /** Registers the passkey from the platform's registration response (fresh access token). */
    registerPasskey: (input: { response: WebAuthnResponse; name?: string }) =>
      authed<Passkey>("POST", "/v1/users/me/passkeys", input),
    passkeys: () => authed<{ passkeys: Passkey[] }>("GET", "/v1/users/me/passkeys"),
    deletePasskey: (id: string) => authed<void>("DELETE", `/v1/users/me/passkeys/${enc(id)}`),
    /** Request options for `navigator.credentials.get()` with a discoverable credential (no user named). */
    passkeyLoginOptions: () => call<PasskeyRequestOptions>("POST", "/v1/tokens/passkey/options", {}),
    /** Signs in with the platform's authentication response. */
    passkeyLogin: (input: PasskeyLoginInput) => signIn<TokenPair>("/v1/tokens/passkey", input),
  };
}
