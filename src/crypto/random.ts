import { b64url, hex, utf8 } from "./encoding";

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** Random bytes from the CSPRNG. */
export function randomBytes(n: number): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(n));
}

/**
 * A string of `length` characters drawn uniformly from `alphabet` (at most 256 characters): one
 * CSPRNG draw of bytes, each kept only when below the largest multiple of the alphabet's size
 * (rejection sampling, so no modulo bias), topped up while too many were rejected.
 */
export function randomString(length: number, alphabet = ALNUM): string {
  const size = alphabet.length;
  if (size < 1 || size > 256) throw new RangeError("alphabet size out of range");
  const limit = 256 - (256 % size);
  let out = "";
  while (out.length < length) {
    for (const b of randomBytes(length - out.length + 8)) {
      if (b >= limit) continue;
      out += alphabet[b % size];
      if (out.length === length) break;
    }
  }
  return out;
}

/** A numeric code of `digits` digits, uniformly distributed (leading zeros kept). */
export const randomDigits = (digits: number): string => randomString(digits, "0123456789");

/** A device id: 32 characters of [A-Za-z0-9] (docs/api.md §1). */
export const newDeviceId = (): string => randomString(32);

/** A sortable, unique id: 12 hex digits of milliseconds, then 80 random bits. */
export function newId(now = Date.now()): string {
  return now.toString(16).padStart(12, "0") + hex(randomBytes(10));
}

/** An opaque secret with `bytes` bytes of entropy, base64url. */
export const newSecret = (bytes = 32): string => b64url(randomBytes(bytes));

/** SHA-256 of a string, hex; used to store tokens and codes only as hashes. */
export async function sha256Hex(s: string): Promise<string> {
  return hex(await crypto.subtle.digest("SHA-256", utf8(s)));
}

/** An HMAC-SHA-256 signing key, for signing several times under one secret. */
export const hmacKey = (key: string | Uint8Array<ArrayBuffer>): Promise<CryptoKey> =>
  crypto.subtle.importKey("raw", typeof key === "string" ? utf8(key) : key, { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);

/** HMAC-SHA-256 of `data` under an imported key. */
export const hmacSign = async (key: CryptoKey, data: string): Promise<Uint8Array<ArrayBuffer>> =>
  new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8(data)));

/** HMAC-SHA-256 of `data` under `key`. */
export const hmacSha256 = async (key: string | Uint8Array<ArrayBuffer>, data: string) =>
  hmacSign(await hmacKey(key), data);

/** Compares two byte strings in constant time for equal lengths (no early exit on the first difference). */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const subtle = crypto.subtle as SubtleCrypto & {
    timingSafeEqual?: (x: ArrayBufferView, y: ArrayBufferView) => boolean;
  };
  if (typeof subtle.timingSafeEqual === "function") return subtle.timingSafeEqual(a, b);
  let diff = 0;
  for (let i = 0; i < a.byteLength; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}
