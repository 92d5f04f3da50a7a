import { describe, expect, it } from "vitest";
import type { z } from "zod";
import type { AccessClaims } from "../src/crypto/jwt";
import type {
  DeviceSchema,
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
  OtpSent,
  Passkey,
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

const checks = {
  user: true as Extends<z.output<typeof UserSchema>, User>,
  publicUser: true as Extends<z.output<typeof PublicUserSchema>, PublicUser> &
    NoExtraKeys<PublicUser, z.output<typeof PublicUserSchema>>,
  tokenPair: true as Extends<z.output<typeof TokenPairSchema>, TokenPair> &
    NoExtraKeys<TokenPair, z.output<typeof TokenPairSchema>>,
  device: true as Extends<z.output<typeof DeviceSchema>, Device> & NoExtraKeys<Device, z.output<typeof DeviceSchema>>,
  otpSent: true as Extends<z.output<typeof OtpSentSchema>, OtpSent>,
  publicToken: true as Extends<{ token: string; device_id: string; expires_in: number }, PublicToken>,
  totpEnrolment: true as Extends<z.output<typeof TotpEnrolmentSchema>, TotpEnrolment> &
    NoExtraKeys<TotpEnrolment, z.output<typeof TotpEnrolmentSchema>>,
  recoveryCodes: true as Extends<z.output<typeof RecoveryCodesSchema>, RecoveryCodes>,
  passkey: true as Extends<z.output<typeof PasskeySchema>, Passkey> &
    NoExtraKeys<Passkey, z.output<typeof PasskeySchema>>,
  claims: true as Extends<Pick<AccessClaims, keyof AccessClaims>, SdkClaims>,
} satisfies Record<string, true>;

describe("the package's wire types follow the API's schemas", () => {
  it("typechecks (see above); nothing to run", () => {
    expect(Object.values(checks).every(Boolean)).toBe(true);
  });
});
