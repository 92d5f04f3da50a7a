// Typed calls of `user-registry/client`: accounts, password reset, devices and phone OTP
// (docs/api.md §2–§5).
import { DEVICE, type Transport } from "./client-transport.js";
import type {
  Device,
  LoginInput,
  OtpSent,
  OtpVerifyInput,
  PublicToken,
  PublicUser,
  SignUpInput,
  TokenPair,
  User,
  UserPatch,
} from "./client-types.js";

/** Accounts, password reset, devices and phone OTP. */
export function accountCalls(transport: Transport) {
  const { authed, call, forget, signIn, deviceId, storage, key } = transport;
  return {
    publicToken: async (device_id?: string) => {
      const t = await call<PublicToken>("POST", "/v1/tokens/public", { device_id: device_id ?? (await deviceId()) });
      await storage.set(key(DEVICE), t.device_id);
      return t;
    },
    signUp: (input: SignUpInput) => call<User>("POST", "/v1/users", input),
    /** Password login. With an authenticator app on it throws `RegistryError` `mfa_required` carrying `mfaToken`: finish with `mfaLogin`. */
    login: (input: LoginInput) => signIn<TokenPair>("/v1/tokens", input),
    logout: async (opts: { all?: boolean } = {}) => {
      try {
        await authed<void>("POST", "/v1/logout", opts);
      } finally {
        await forget();
      }
    },
    me: () => authed<User>("GET", "/v1/users/me"),
    getUser: (id: string) => authed<User | PublicUser>("GET", `/v1/users/${encodeURIComponent(id)}`),
    updateUser: (id: string, patch: UserPatch) => authed<User>("PATCH", `/v1/users/${encodeURIComponent(id)}`, patch),
    deleteUser: async (id: string) => authed<void>("DELETE", `/v1/users/${encodeURIComponent(id)}`),
    changeEmail: (input: { email: string; current_password?: string }) =>
      authed<User>("PUT", "/v1/users/me/email", input),
    changePassword: (input: { password: string; password_confirmation: string; current_password?: string }) =>
      authed<void>("PUT", "/v1/users/me/password", input),
    requestPasswordReset: (email: string) => call<Record<string, never>>("POST", "/v1/users/reset", { email }),
    resetPassword: (input: { email: string; code: string; password: string; password_confirmation: string }) =>
      call<void>("PUT", "/v1/users/reset", input),
    devices: () => authed<{ devices: Device[] }>("GET", "/v1/devices"),
    updateDevice: (input: { push_token?: string | null; description?: string | null }) =>
      authed<Device>("PUT", "/v1/devices/current", input),
    logoutDevice: (id: string) => authed<void>("DELETE", `/v1/devices/${encodeURIComponent(id)}`),
    sendOtp: (input: { phone_number: string; captcha_token?: string }) => call<OtpSent>("POST", "/v1/otp", input),
    verifyOtp: (input: OtpVerifyInput) => signIn<TokenPair & { created: boolean }>("/v1/otp/verify", input),
  };
}
