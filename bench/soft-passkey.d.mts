// Types of bench/soft-passkey.mjs, for the tests that import it (test/webauthn-authenticator.ts).
export type Cbor = number | string | Uint8Array | Cbor[] | Map<Cbor, Cbor> | { [k: string]: Cbor };

export function b64u(input: string | Uint8Array): string;
export function cbor(v: Cbor): Uint8Array;

export interface Options {
  origin?: string;
  rpId?: string;
  userVerified?: boolean;
  counter?: number;
  /** Sign with this key instead of the credential's own. */
  signWith?: CryptoKey;
  userHandle?: string;
  type?: string;
  challenge?: string;
}

export interface RegistrationResponse {
  id: string;
  rawId: string;
  type: "public-key";
  response: { clientDataJSON: string; attestationObject: string; transports: string[] };
  clientExtensionResults: Record<string, never>;
}

export interface AuthenticationResponse {
  id: string;
  rawId: string;
  type: "public-key";
  response: { clientDataJSON: string; authenticatorData: string; signature: string; userHandle: string | undefined };
  clientExtensionResults: Record<string, never>;
}

/** One credential (a passkey) held by the software authenticator. */
export class SoftPasskey {
  readonly credentialId: Uint8Array;
  counter: number;
  userHandle: string | undefined;
  readonly rpId: string;
  readonly origin: string;
  private constructor(keys: CryptoKeyPair, rpId: string, origin: string);
  static create(rpId?: string, origin?: string): Promise<SoftPasskey>;
  static otherKey(): Promise<CryptoKey>;
  get id(): string;
  /** navigator.credentials.create() on these creation options, as a RegistrationResponseJSON. */
  register(options: { challenge: string; user: { id: string } }, o?: Options): Promise<RegistrationResponse>;
  /** navigator.credentials.get() on these request options, as an AuthenticationResponseJSON. */
  assert(options: { challenge: string }, o?: Options): Promise<AuthenticationResponse>;
}
