/**
 * `user-registry/verify`: checks user-registry access tokens in the caller's own isolate or
 * process (docs/api.md §14): the signature against the registry's JWKS (fetched once and cached,
 * fetched again for an unknown `kid` at most every 30 s), then `iss`, `aud`, `typ: at+jwt`, the
 * realm and the options. No call per token. With `auth` (the AuthService service binding) it also
 * learns of revocations (logout, a revoked session), each answer kept at most 5 seconds.
 *
 * Needs only the standard fetch and Web Crypto APIs (Workers, Node ≥ 20, browsers, Deno, Bun);
 * its type declarations need no Workers types.
 */
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTPayload, jwtVerify } from "jose";

/** Anything with a `fetch` method: a Workers service binding to user-registry, for example. */
export interface JwksFetcher {
  fetch(
    input: string,
    init?: { headers?: Record<string, string> },
  ): Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;
}

/** The part of user-registry's AuthService binding (docs/api.md §7) this module uses. */
export interface AuthBinding {
  verify(token: string, options?: { realm?: string }): Promise<VerifyResult>;
}

export interface VerifierOptions {
  /** The registry's ISSUER, exactly as in `iss`. */
  issuer: string;
  /** The audience this service expects in `aud` (one of the registry's TOKEN_AUDIENCE). */
  audience: string | string[];
  /** Where the keys are: the JWKS URL (`<issuer>/.well-known/jwks.json`), or a binding whose fetch reaches the registry. */
  jwks: URL | string | JwksFetcher;
  /** Tokens of this realm only (default `default`). */
  realm?: string;
  /** The AuthService binding: also refuse revoked tokens (answers cached ≤ 5 s). */
  auth?: AuthBinding;
  /** How long a fetched JWKS is used (ms; default 10 minutes). */
  jwksMaxAgeMs?: number;
  /** The clock (ms since the epoch); for tests. */
  now?: () => number;
}

export interface VerifyOptions {
  /** Require a token minted by a credential check, not by refresh (`fresh_token_required`). */
  fresh?: boolean;
  /** Require every one of these roles (`forbidden`). */
  roles?: string[];
  /** Require two checked factors: `mfa` in `amr` (`mfa_required`). */
  mfa?: boolean;
}

/** The claims of an access token (docs/api.md §2). */
export interface AccessClaims {
  iss: string;
  aud: string | string[];
  sub: string;
  realm: string;
  type: "access";
  did: string;
  sid: string;
  jti: string;
  iat: number;
  exp: number;
  auth_time: number;
  fresh: boolean;
  roles: string[];
  email: string | null;
  name: string | null;
  amr?: string[];
  email_verified?: boolean;
  [claim: string]: unknown;
}

/** The codes of docs/api.md §2 a verification can answer. */
export type VerifyErrorCode =
  | "missing_token"
  | "invalid_token"
  | "token_expired"
  | "token_revoked"
  | "session_revoked"
  | "fresh_token_required"
  | "mfa_required"
  | "forbidden"
  | "user_not_found"
  | "account_disabled"
  | "account_pending"
  | "jwks_unavailable";

export type VerifyResult<C = AccessClaims> =
  | { ok: true; claims: C }
  | { ok: false; code: VerifyErrorCode | (string & {}); message: string };

export interface Verifier {
  /** Verifies an access token (without the `Bearer ` prefix). Never throws for a bad token. */
  verify(token: string | null | undefined, options?: VerifyOptions): Promise<VerifyResult>;
}

const MESSAGES: Record<VerifyErrorCode, string> = {
  missing_token: "An access token is required",
  invalid_token: "The token is not valid",
  token_expired: "The token has expired",
  token_revoked: "The token has been revoked",
  session_revoked: "This session has ended. Please log in again",
  fresh_token_required: "This action needs a recent login. Please log in again",
  mfa_required: "This action needs a second factor",
  forbidden: "You are not allowed to do this",
  user_not_found: "The user of this token no longer exists",
  account_disabled: "This account is disabled",
  account_pending: "This account is waiting for approval",
  jwks_unavailable: "The registry's keys could not be fetched",
};

const fail = (code: VerifyErrorCode): VerifyResult => ({ ok: false, code, message: MESSAGES[code] });

/** Tokens whose signature and claims checked out, kept until their `exp` (at most this many). */
const VERIFIED_MAX = 2_000;
/** How long an answer of the revocation check is used. */
const REVOCATION_MS = 5_000;
const REFETCH_MIN_MS = 30_000;

/** Builds a verifier; it fetches the JWKS on first use. */
export function createVerifier(options: VerifierOptions): Verifier {
  if (!options.issuer) throw new TypeError("createVerifier: issuer is required");
  const audience = Array.isArray(options.audience) ? options.audience : [options.audience];
  if (!audience.length || audience.some((a) => !a)) throw new TypeError("createVerifier: audience is required");
  if (!options.jwks) throw new TypeError("createVerifier: jwks is required");
  const realm = options.realm ?? "default";
  const now = options.now ?? Date.now;
  const maxAge = options.jwksMaxAgeMs ?? 600_000;

  let keys: { set: ReturnType<typeof createLocalJWKSet>; kids: Set<string>; at: number } | null = null;
  let loading: Promise<void> | null = null;
  let lastFetch = -Infinity;

  async function fetchJwks(): Promise<void> {
    lastFetch = now();
    const source = options.jwks;
    const res =
      typeof source === "string" || source instanceof URL
        ? await fetch(source, { headers: { accept: "application/json" } })
        : await source.fetch("https://user-registry/.well-known/jwks.json", {
            headers: { accept: "application/json" },
          });
    if (!res.ok) throw new Error(`JWKS answered ${res.status}`);
    const body = (await res.json()) as JSONWebKeySet;
    if (!body || !Array.isArray(body.keys)) throw new Error("JWKS has no keys");
    keys = {
      set: createLocalJWKSet(body),
      kids: new Set(body.keys.map((k) => k.kid).filter((k): k is string => typeof k === "string")),
      at: now(),
    };
  }

  /** The key set, fetched when missing or old, or when `kid` is unknown (at most every 30 s). */
  async function keySet(kid: string | undefined) {
    const stale = !keys || now() - keys.at > maxAge;
    const unknownKid = keys && kid !== undefined && !keys.kids.has(kid) && now() - lastFetch > REFETCH_MIN_MS;
    if (stale || unknownKid) {
      loading ??= fetchJwks().finally(() => {
        loading = null;
      });
      try {
        await loading;
      } catch (e) {
        if (!keys) throw e; // no keys at all; otherwise the old ones serve until the registry answers
      }
    }
    return keys?.set ?? null;
  }

  const verified = new Map<string, Readonly<JWTPayload>>();
  const revocation = new Map<string, { at: number; answer: Promise<VerifyResult> }>();

  function timeChecks(payload: Readonly<JWTPayload>): VerifyResult | null {
    const sec = Math.floor(now() / 1000);
    if (typeof payload.exp !== "number" || payload.exp <= sec) return fail("token_expired");
    if (typeof payload.nbf === "number" && payload.nbf > sec) return fail("invalid_token");
    return null;
  }

  async function signatureAndClaims(token: string): Promise<VerifyResult<Readonly<JWTPayload>>> {
    const hit = verified.get(token);
    if (hit) {
      const late = timeChecks(hit);
      if (late) {
        if (late.ok === false && late.code === "token_expired") verified.delete(token);
        return late as VerifyResult<Readonly<JWTPayload>>;
      }
      return { ok: true, claims: hit };
    }
    let kid: string | undefined;
    try {
      const header = JSON.parse(atob((token.split(".")[0] ?? "").replace(/-/g, "+").replace(/_/g, "/")));
      kid = typeof header?.kid === "string" ? header.kid : undefined;
    } catch {
      return fail("invalid_token") as VerifyResult<Readonly<JWTPayload>>;
    }
    let set: Awaited<ReturnType<typeof keySet>>;
    try {
      set = await keySet(kid);
    } catch {
      return fail("jwks_unavailable") as VerifyResult<Readonly<JWTPayload>>;
    }
    if (!set) return fail("jwks_unavailable") as VerifyResult<Readonly<JWTPayload>>;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, set, {
        algorithms: ["ES256"],
        issuer: options.issuer,
        audience,
        typ: "at+jwt",
        currentDate: new Date(now()),
      }));
    } catch (e) {
      return fail(e instanceof errors.JWTExpired ? "token_expired" : "invalid_token") as VerifyResult<
        Readonly<JWTPayload>
      >;
    }
    const claims = payload as Partial<AccessClaims>;
    if (
      claims.type !== "access" ||
      claims.realm !== realm ||
      typeof claims.sub !== "string" ||
      typeof claims.jti !== "string" ||
      typeof claims.sid !== "string" ||
      typeof claims.did !== "string" ||
      typeof claims.exp !== "number" ||
      !Array.isArray(claims.roles)
    ) {
      return fail("invalid_token") as VerifyResult<Readonly<JWTPayload>>;
    }
    if (verified.size >= VERIFIED_MAX) verified.delete(verified.keys().next().value as string);
    const frozen = Object.freeze({ ...payload });
    verified.set(token, frozen);
    return { ok: true, claims: frozen };
  }

  /** The registry's word on revocation, one call per token per 5 s at most (concurrent callers share it). */
  function revocationCheck(auth: AuthBinding, token: string, jti: string): Promise<VerifyResult> {
    const t = now();
    const hit = revocation.get(jti);
    if (hit && t - hit.at < REVOCATION_MS) return hit.answer;
    const answer = auth.verify(token, { realm }).catch(() => fail("invalid_token"));
    if (revocation.size >= VERIFIED_MAX) {
      for (const [k, v] of revocation) if (t - v.at >= REVOCATION_MS) revocation.delete(k);
      if (revocation.size >= VERIFIED_MAX) revocation.delete(revocation.keys().next().value as string);
    }
    revocation.set(jti, { at: t, answer });
    return answer;
  }

  return {
    async verify(token, opts = {}) {
      if (!token) return fail("missing_token");
      if (typeof token !== "string" || token.length > 4096) return fail("invalid_token");
      const checked = await signatureAndClaims(token);
      if (!checked.ok) return checked;
      const claims = { ...checked.claims, roles: [...(checked.claims.roles as string[])] } as AccessClaims;
      if (options.auth) {
        const word = await revocationCheck(options.auth, token, claims.jti);
        if (!word.ok) return { ok: false, code: word.code, message: word.message };
      }
      if (opts.fresh && claims.fresh !== true) return fail("fresh_token_required");
      if (opts.mfa && !(Array.isArray(claims.amr) && claims.amr.includes("mfa"))) return fail("mfa_required");
      if (opts.roles?.some((r) => !claims.roles.includes(r))) return fail("forbidden");
      return { ok: true, claims };
    },
  };
}
