import { describe, expect, it } from "vitest";
import type { z } from "zod";
import type { loginOptions, registrationOptions } from "../src/auth-methods/passkey";
import type { AccessClaims } from "../src/crypto/jwt";
import type { IdentitySchema } from "../src/routes/identities";
import type { FederatedTokenPair as FederatedTokenPairSchema } from "../src/routes/oauth";
import type {
  DeviceSchema,
  MfaLoginBody,
  MfaStatusSchema,
  OtpSentSchema,
  PasskeySchema,
  PublicUserSchema,
  RecoveryCodesSchema,
  TokenPairSchema,
  TotpEnrolmentSchema,
  UserSchema,
} from "../src/schemas";
import type {
  Device,
  FederatedTokenPair,
  Identity,
  MfaLoginInput,
  MfaStatus,
  OtpSent,
  Passkey,
  PasskeyCreationOptions,
  PasskeyDescriptor,
  PasskeyRequestOptions,
  PublicToken,
  PublicUser,
  RecoveryCodes,
  TokenPair,
  TotpEnrolment,
  User,
} from "../src/sdk/client";
import type { AccessClaims as SdkClaims } from "../src/sdk/verify";

// The package's hand-written wire types (src/sdk/, shipped without zod or Workers types) must
// describe what the API answers: each schema's output type is assignable to the package's type,
// and the package names no field the schema lacks. A change to a schema that the package does
// not follow fails typecheck here.
type Extends<A, B> = [A] extends [B] ? true : false;
type NoExtraKeys<Pkg, Api> =
  Exclude<keyof Pkg, keyof Api | string> extends never
    ? Exclude<Extract<keyof Pkg, string>, keyof Api> extends never
      ? true
      : false
    : false;

/** Both checks hold. (An intersection would not do: `true & false` is `never`, which satisfies anything.) */
type Both<A extends boolean, B extends boolean> = [A, B] extends [true, true] ? true : false;

type Creation = Awaited<ReturnType<typeof registrationOptions>>;
type Request = Awaited<ReturnType<typeof loginOptions>>;
type Descriptor<L> = NonNullable<L> extends (infer D)[] ? D : never;

const checks = {
  user: true as Extends<z.output<typeof UserSchema>, User>,
  publicUser: true as Both<
    Extends<z.output<typeof PublicUserSchema>, PublicUser>,
    NoExtraKeys<PublicUser, z.output<typeof PublicUserSchema>>
  >,
  tokenPair: true as Both<
    Extends<z.output<typeof TokenPairSchema>, TokenPair>,
    NoExtraKeys<TokenPair, z.output<typeof TokenPairSchema>>
  >,
  device: true as Both<
    Extends<z.output<typeof DeviceSchema>, Device>,
    NoExtraKeys<Device, z.output<typeof DeviceSchema>>
  >,
  otpSent: true as Extends<z.output<typeof OtpSentSchema>, OtpSent>,
  publicToken: true as Extends<{ token: string; device_id: string; expires_in: number }, PublicToken>,
  totpEnrolment: true as Both<
    Extends<z.output<typeof TotpEnrolmentSchema>, TotpEnrolment>,
    NoExtraKeys<TotpEnrolment, z.output<typeof TotpEnrolmentSchema>>
  >,
  recoveryCodes: true as Extends<z.output<typeof RecoveryCodesSchema>, RecoveryCodes>,
  passkey: true as Both<
    Extends<z.output<typeof PasskeySchema>, Passkey>,
    NoExtraKeys<Passkey, z.output<typeof PasskeySchema>>
  >,
  claims: true as Extends<Pick<AccessClaims, keyof AccessClaims>, SdkClaims>,
  identity: true as Both<
    Extends<z.output<typeof IdentitySchema>, Identity>,
    NoExtraKeys<Identity, z.output<typeof IdentitySchema>>
  >,
  federatedTokenPair: true as Both<
    Extends<z.output<typeof FederatedTokenPairSchema>, FederatedTokenPair>,
    NoExtraKeys<FederatedTokenPair, z.output<typeof FederatedTokenPairSchema>>
  >,
  mfaStatus: true as Both<
    Extends<z.output<typeof MfaStatusSchema>, MfaStatus>,
    NoExtraKeys<MfaStatus, z.output<typeof MfaStatusSchema>>
  >,
  // Input the other way round: what the package lets a caller send, the API accepts.
  mfaLoginInput: true as Both<
    Extends<MfaLoginInput, z.input<typeof MfaLoginBody>>,
    NoExtraKeys<MfaLoginInput, z.input<typeof MfaLoginBody>>
  >,
  // The WebAuthn options are what @simplewebauthn/server generates for the routes. Its credential
  // descriptors have `type` and `transports` as plain strings; the package narrows them to what
  // @simplewebauthn/browser takes (test/node/pack.test.mjs compiles that use), so descriptors are
  // compared by their members here.
  creationOptions: true as Both<
    Extends<Omit<Creation, "excludeCredentials">, Omit<PasskeyCreationOptions, "excludeCredentials">>,
    NoExtraKeys<PasskeyCreationOptions, Creation>
  >,
  requestOptions: true as Both<
    Extends<Omit<Request, "allowCredentials">, Omit<PasskeyRequestOptions, "allowCredentials">>,
    NoExtraKeys<PasskeyRequestOptions, Request>
  >,
  descriptor: true as Both<
    NoExtraKeys<PasskeyDescriptor, Descriptor<Creation["excludeCredentials"]>>,
    NoExtraKeys<PasskeyDescriptor, Descriptor<Request["allowCredentials"]>>
  >,
} satisfies Record<string, true>;

describe("the package's wire types follow the API's schemas", () => {
  it("typechecks (see above); nothing to run", () => {
    expect(Object.values(checks).every(Boolean)).toBe(true);
  });
});
