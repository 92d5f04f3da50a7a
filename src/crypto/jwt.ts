import { errors, importJWK, type JWTPayload, jwtVerify } from "jose";
import type { PrivateJwk } from "../config";
import { ApiError } from "../errors";
import { b64url, utf8 } from "./encoding";

const JWT_ALG = "ES256";

export type TokenType = "access" | "public" | "authority";

/**
 * The JWS `typ` of each kind (api.md §2): RFC 9068's `at+jwt` for access tokens and a type of
 * their own for the others, so a resource server that checks `typ` (or `aud`) the standard way
 * never takes a public or authority token for a login.
 */
export const TOKEN_TYP = { access: "at+jwt", public: "public+jwt", authority: "authority+jwt" } as const;

/** The audience of authority tokens: never one a resource server accepts as a login. */
export const authorityAudience = (issuer: string) => `${issuer}/authority`;

/** Claims common to every token this service signs (api.md §2). */
export interface BaseClaims {
  iss: string;
  realm: string;
  type: TokenType;
  jti: string;
  iat: number;
  exp: number;
  did?: string;
  sub?: string;
  sid?: string;
}

export interface AccessClaims extends BaseClaims {
  type: "access";
  /** TOKEN_AUDIENCE: one audience, or several (RFC 9068 §2.2). */
  aud: string | string[];
  /** When the credential was checked (seconds); a refresh keeps it. */
  auth_time: number;
  sub: string;
  did: string;
  sid: string;
  fresh: boolean;
  roles: string[];
  email: string | null;
  /** Whether `email` was proven (api.md §11). */
  email_verified: boolean;
  name: string | null;
  /** RFC 8176 methods of the login behind this token (api.md §12). */
  amr?: string[];
}

export interface PublicClaims extends BaseClaims {
  type: "public";
  did: string;
}

export interface AuthorityClaims extends BaseClaims {
  type: "authority";
  aud: string;
  sub: string;
  domain: string;
}

export type Claims = AccessClaims | PublicClaims | AuthorityClaims;

export interface PublicJwk {
  kty: "EC";
  crv: "P-256";
  x: string;
  y: string;
  kid: string;
  alg: typeof JWT_ALG;
  use: "sig";
}

/** The imported keys: the first signs, every one verifies (so keys can rotate). */
export interface KeySet {
  signingKey: CryptoKey;
  /** The signing key's JWS protected header per kind of token, encoded: `{alg, kid, typ}`. */
  signingHeaders: Record<TokenType, string>;
  verifyKeys: Map<string, CryptoKey>;
  jwks: { keys: PublicJwk[] };
}

const keySets = new Map<string, Promise<KeySet>>();

/** Imports the configured keys once per isolate (keyed by the secret's text, so a rotation takes effect). */
export function loadKeySet(raw: string, keys: PrivateJwk[]): Promise<KeySet> {
  let hit = keySets.get(raw);
  if (!hit) {
    hit = importKeySet(keys);
    hit.catch(() => keySets.delete(raw));
    keySets.clear();
    keySets.set(raw, hit);
  }
  return hit;
}

async function importKeySet(keys: PrivateJwk[]): Promise<KeySet> {
  const verifyKeys = new Map<string, CryptoKey>();
  const publicJwks: PublicJwk[] = [];
  for (const k of keys) {
    const pub: PublicJwk = { kty: "EC", crv: "P-256", x: k.x, y: k.y, kid: k.kid, alg: JWT_ALG, use: "sig" };
    verifyKeys.set(k.kid, (await importJWK(pub, JWT_ALG)) as CryptoKey);
    publicJwks.push(pub);
  }
  const first = keys[0] as PrivateJwk;
  const signingKey = (await importJWK(
    { kty: "EC", crv: "P-256", x: first.x, y: first.y, d: first.d },
    JWT_ALG,
  )) as CryptoKey;
  const header = (typ: string) => b64url(utf8(JSON.stringify({ alg: JWT_ALG, kid: first.kid, typ })));
  const signingHeaders = {
    access: header(TOKEN_TYP.access),
    public: header(TOKEN_TYP.public),
    authority: header(TOKEN_TYP.authority),
  };
  return { signingKey, signingHeaders, verifyKeys, jwks: { keys: publicJwks } };
}

/**
 * Signs claims with the current key; `kid` goes in the header. A compact JWS (RFC 7515) made with
 * WebCrypto directly: its ECDSA signature is already the r‖s form ES256 uses (RFC 7518 §3.4), and
 * jose's builder cost more than the signature itself. Verification stays with jose.
 */
export async function signToken(keys: KeySet, claims: Claims): Promise<string> {
  const input = `${keys.signingHeaders[claims.type]}.${b64url(utf8(JSON.stringify(claims)))}`;
  const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, keys.signingKey, utf8(input));
  return `${input}.${b64url(signature)}`;
}

export interface VerifyOptions {
  issuer: string;
  realm: string;
  type: TokenType;
  now: number;
  /** For access tokens: the audiences this registry accepts (TOKEN_AUDIENCE); one must be in `aud`. */
  audience?: string[];
}

/** What `aud` must hold for a kind of token; null: no `aud` at all. */
function audienceFor(opts: VerifyOptions): string[] | null {
  if (opts.type === "access") return opts.audience?.length ? opts.audience : [opts.issuer];
  if (opts.type === "authority") return [authorityAudience(opts.issuer)];
  return null;
}

/**
 * Signatures already checked in this isolate: token string → its payload, per key set (a new
 * key set, i.e. a changed JWT_PRIVATE_KEYS, starts empty). A token that verified once verifies
 * forever as far as its signature goes, so this only saves the ECDSA check and the parsing; the
 * time claims (`exp`, `nbf`) and every other check below run on each use. Only tokens that
 * passed are kept, each until its `exp`; at most VERIFIED_MAX of them (the oldest go first).
 */
const verified = new WeakMap<KeySet, Map<string, { payload: Readonly<JWTPayload>; checked: string }>>();
const VERIFIED_MAX = 2_000;

function cachedPayload(keys: KeySet, token: string, checked: string, nowMs: number): JWTPayload | null {
  const hit = verified.get(keys)?.get(token);
  if (!hit || hit.checked !== checked) return null;
  // The checks jose makes on the time claims, with its rules (whole seconds, no tolerance).
  const now = Math.floor(nowMs / 1000);
  const { exp, nbf } = hit.payload;
  if (typeof exp === "number" && exp <= now) {
    verified.get(keys)?.delete(token);
    throw new ApiError("token_expired");
  }
  if (typeof nbf === "number" && nbf > now) throw new ApiError("invalid_token");
  // A copy: the caller may not change what the next request reads.
  return { ...hit.payload, ...(Array.isArray(hit.payload.roles) ? { roles: [...hit.payload.roles] } : {}) };
}

function rememberPayload(keys: KeySet, token: string, checked: string, payload: JWTPayload): void {
  if (typeof payload.exp !== "number") return;
  let map = verified.get(keys);
  if (!map) {
    map = new Map();
    verified.set(keys, map);
  }
  if (map.size >= VERIFIED_MAX) map.delete(map.keys().next().value as string);
  map.set(token, { payload: Object.freeze({ ...payload }), checked });
}

/**
 * Verifies a token: the algorithm is pinned to ES256 (so `none` and HS256-with-the-public-key
 * fail), the key is chosen by `kid` among ours only, then the header's `typ`, issuer, audience,
 * realm and type are checked. Throws ApiError invalid_token or token_expired.
 */
export async function verifyToken(keys: KeySet, token: string, opts: VerifyOptions): Promise<Claims> {
  if (token.length > 4096) throw new ApiError("invalid_token");
  const audience = audienceFor(opts);
  // What the cached verdict was checked against: a token checked for one kind or audience is checked again for another.
  const checked = `${opts.type} ${opts.issuer} ${audience?.join(" ") ?? ""}`;
  let payload = cachedPayload(keys, token, checked, opts.now);
  if (!payload) {
    try {
      const result = await jwtVerify(
        token,
        (header) => {
          const key = header.kid ? keys.verifyKeys.get(header.kid) : undefined;
          if (!key) throw new errors.JWKSNoMatchingKey();
          return key;
        },
        {
          algorithms: [JWT_ALG],
          issuer: opts.issuer,
          typ: TOKEN_TYP[opts.type],
          ...(audience ? { audience } : {}),
          currentDate: new Date(opts.now),
        },
      );
      payload = result.payload;
      // A public token names no audience: one that does was not made here.
      if (!audience && payload.aud !== undefined) throw new ApiError("invalid_token");
    } catch (e) {
      if (e instanceof errors.JWTExpired) throw new ApiError("token_expired");
      throw new ApiError("invalid_token");
    }
    rememberPayload(keys, token, checked, payload);
  }
  if (payload.type !== opts.type || payload.realm !== opts.realm) throw new ApiError("invalid_token");
  if (typeof payload.jti !== "string" || typeof payload.exp !== "number") throw new ApiError("invalid_token");
  if (opts.type !== "public" && typeof payload.sub !== "string") throw new ApiError("invalid_token");
  if (
    opts.type === "access" &&
    (typeof payload.sid !== "string" || typeof payload.did !== "string" || typeof payload.auth_time !== "number")
  ) {
    throw new ApiError("invalid_token");
  }
  return payload as unknown as Claims;
}

/**
 * The unverified `type` claim, only to choose which verification to run (the chosen
 * verification then checks everything, including that type).
 */
export function peekType(token: string): string | null {
  try {
    const part = token.split(".")[1] ?? "";
    const payload = JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/")));
    return typeof payload?.type === "string" ? payload.type : null;
  } catch {
    return null;
  }
}
