import { b64url, fromB64url, utf8 } from "./encoding";
import { hmacSha256, randomBytes, timingSafeEqual } from "./random";

/**
 * PBKDF2-HMAC-SHA-256 through Web Crypto. The Workers runtime refuses more than 100,000
 * iterations in production (local workerd does not), so this is the ceiling; a test pins it.
 */
export const PBKDF2_ITERATIONS = 100_000;
const SALT_BYTES = 16;
const HASH_BYTES = 32;

/**
 * Stored format, self-describing so parameters can change later:
 * `pbkdf2-sha256$<iterations>$<salt b64url>$<hash b64url>$<p0|p1>` where p1 means the
 * password was first HMAC'd with PASSWORD_PEPPER.
 */
interface Parsed {
  iterations: number;
  salt: Uint8Array<ArrayBuffer>;
  hash: Uint8Array<ArrayBuffer>;
  peppered: boolean;
}

function parse(stored: string): Parsed | null {
  const parts = stored.split("$");
  if (parts.length !== 5 || parts[0] !== "pbkdf2-sha256") return null;
  const iterations = Number(parts[1]);
  const salt = fromB64url(parts[2] ?? "");
  const hash = fromB64url(parts[3] ?? "");
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > PBKDF2_ITERATIONS) return null;
  if (!salt || !hash || hash.byteLength !== HASH_BYTES) return null;
  if (parts[4] !== "p0" && parts[4] !== "p1") return null;
  return { iterations, salt, hash, peppered: parts[4] === "p1" };
}

async function derive(
  password: string,
  salt: Uint8Array<ArrayBuffer>,
  iterations: number,
  pepper: string | undefined,
): Promise<Uint8Array<ArrayBuffer>> {
  const input = pepper ? await hmacSha256(pepper, password) : utf8(password);
  const key = await crypto.subtle.importKey("raw", input, "PBKDF2", false, ["deriveBits"]);
  const bits = await crypto.subtle.deriveBits(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    key,
    HASH_BYTES * 8,
  );
  return new Uint8Array(bits);
}

/** Hashes a password with a fresh random salt and the current parameters. */
export async function hashPassword(password: string, pepper?: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, PBKDF2_ITERATIONS, pepper);
  return ["pbkdf2-sha256", PBKDF2_ITERATIONS, b64url(salt), b64url(hash), pepper ? "p1" : "p0"].join("$");
}

export interface VerifyResult {
  ok: boolean;
  /** True when the stored hash uses older parameters and should be replaced after a successful login. */
  needsRehash: boolean;
}

/** Checks a password against a stored hash in constant time. A malformed stored hash never matches. */
export async function verifyPassword(password: string, stored: string, pepper?: string): Promise<VerifyResult> {
  const parsed = parse(stored);
  if (!parsed) {
    // Still spend the time of a real check, so a broken row does not answer faster.
    await dummyVerify(password);
    return { ok: false, needsRehash: false };
  }
  if (parsed.peppered && !pepper) return { ok: false, needsRehash: false };
  const candidate = await derive(password, parsed.salt, parsed.iterations, parsed.peppered ? pepper : undefined);
  const ok = timingSafeEqual(candidate, parsed.hash);
  const needsRehash = ok && (parsed.iterations !== PBKDF2_ITERATIONS || parsed.peppered !== Boolean(pepper));
  return { ok, needsRehash };
}

const DUMMY_SALT = new Uint8Array(SALT_BYTES);

/** Spends the same time as a real verification; used for unknown accounts so timing reveals nothing. */
export async function dummyVerify(password: string): Promise<void> {
  await derive(password, DUMMY_SALT, PBKDF2_ITERATIONS, undefined);
}
