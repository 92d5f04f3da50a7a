// The software WebAuthn authenticator the passkey tests drive: bench/soft-passkey.mjs, shared with
// the benchmark's passkey login row.
export { cbor, type Options, SoftPasskey } from "../bench/soft-passkey.mjs";
