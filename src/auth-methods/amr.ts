/**
 * RFC 8176 authentication method references as api.md §12 uses them: `pwd` password, `sms` phone
 * code, `otp` authenticator app, `kba` recovery code, `hwk` passkey, and `mfa` when two
 * independent factors were checked (a passkey with user verification counts as two).
 */
export type Amr = "pwd" | "sms" | "otp" | "kba" | "hwk" | "fed" | "mfa";

/** Whether the checks behind `amr` satisfy an account with a second factor. */
export const secondFactorDone = (amr: readonly string[] | undefined) => !!amr?.includes("mfa");
