import { createRemoteJWKSet, type JWTPayload, errors as joseErrors, jwtVerify } from "jose";
import * as oauth from "oauth4webapi";
import { hex } from "../crypto/encoding";
import { ApiError } from "../errors";
import type { Deps } from "../services/deps";
import { putRecord } from "../storage/identities";
import type { OidcProvider } from "./oidc-config";

/**
 * ID tokens of identity providers (docs/api.md §13), checked with jose against the provider's
 * JWKS, and the provider side of the code flow (oauth4webapi). Discovery documents and key sets
 * are cached per isolate: a discovery document for an hour, a key set for at most ten minutes,
 * refetched at once (at most every 30 s) when a token names a kid the cached set lacks.
 */

const DISCOVERY_TTL_MS = 60 * 60 * 1000;
const JWKS_MAX_AGE_MS = 10 * 60 * 1000;
const JWKS_COOLDOWN_MS = 30 * 1000;
const FETCH_TIMEOUT_MS = 5000;
/** Asymmetric algorithms only: `none` and HMAC (keyed with a public key) never verify. */
const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];
/** Clock skew allowed on exp/iat/nbf, in seconds. */
const CLOCK_TOLERANCE_S = 30;

const discovered = new Map<string, { as: oauth.AuthorizationServer; until: number }>();
const keySets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();

/** Drops this isolate's discovery documents and key sets (tests measure a cold cache with it). */
export function forgetProviderCaches(): void {
  discovered.clear();
  keySets.clear();
}

/** The provider of `id`, or 400 validation_failed naming the field. */
export function providerById(deps: Deps, id: string, field = "provider"): OidcProvider {
  const p = deps.config.OIDC_PROVIDERS.find((x) => x.id === id);
  if (!p)
    throw new ApiError("validation_failed", "Unknown identity provider", {
      fields: { [field]: "is not a configured provider" },
    });
  return p;
}

/** Plain http is allowed only for a provider on this machine (local development and tests). */
const insecureOk = (url: string) => /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:|\/|$)/.test(url);

export const fetchOptions = (url: string) => ({
  [oauth.allowInsecureRequests]: insecureOk(url),
  signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
});

/** The provider's metadata: the configured endpoints, the rest from its discovery document. */
export async function authorizationServer(p: OidcProvider, now = Date.now()): Promise<oauth.AuthorizationServer> {
  const configured = {
    issuer: p.issuer,
    ...(p.authorization_endpoint && { authorization_endpoint: p.authorization_endpoint }),
    ...(p.token_endpoint && { token_endpoint: p.token_endpoint }),
    ...(p.jwks_uri && { jwks_uri: p.jwks_uri }),
  };
  if (p.authorization_endpoint && p.token_endpoint && p.jwks_uri) return configured;
  const hit = discovered.get(p.issuer);
  if (hit && hit.until > now) return { ...hit.as, ...configured };
  let as: oauth.AuthorizationServer;
  try {
    const issuer = new URL(p.issuer);
    as = await oauth.processDiscoveryResponse(
      issuer,
      await oauth.discoveryRequest(issuer, { algorithm: "oidc", ...fetchOptions(p.issuer) }),
    );
  } catch (e) {
    console.error(JSON.stringify({ level: "error", provider: p.id, message: "discovery failed", error: String(e) }));
    throw new ApiError("provider_unavailable");
  }
  discovered.set(p.issuer, { as, until: now + DISCOVERY_TTL_MS });
  return { ...as, ...configured };
}

function keySet(uri: string) {
  let set = keySets.get(uri);
  if (!set) {
    set = createRemoteJWKSet(new URL(uri), {
      cacheMaxAge: JWKS_MAX_AGE_MS,
      cooldownDuration: JWKS_COOLDOWN_MS,
      timeoutDuration: FETCH_TIMEOUT_MS,
    });
    keySets.set(uri, set);
  }
  return set;
}

/** What a verified ID token says about the person. */
export interface ProviderIdentity {
  provider: string;
  subject: string;
  email: string | null;
  emailVerified: boolean;
  name: string | null;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

async function sha256Hex(s: string): Promise<string> {
  return hex(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s))));
}

/** A key-set fetch that failed is the provider's fault (502); anything about the token itself is 401. */
function unavailable(e: unknown): boolean {
  if (!(e instanceof joseErrors.JOSEError)) return true;
  return e.code === "ERR_JWKS_TIMEOUT" || e.code === "ERR_JWKS_INVALID" || e.code === "ERR_JOSE_GENERIC";
}

/**
 * Checks an ID token (docs/api.md §13): a signature by a key of the provider's JWKS, its `iss`, an
 * `aud` (and `azp`, when present) among `client_ids`, an unexpired `exp`, and, when `nonce` is given,
 * a `nonce` claim equal to it or to its SHA-256 hex digest, seen for the first time (a replayed
 * token is refused until it expires). Anything else: 401 invalid_token.
 */
export async function verifyIdToken(
  deps: Deps,
  realm: string,
  p: OidcProvider,
  idToken: string,
  nonce?: string,
): Promise<ProviderIdentity> {
  const as = await authorizationServer(p);
  if (!as.jwks_uri) throw new ApiError("provider_unavailable");
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(idToken, keySet(as.jwks_uri), {
      issuer: p.issuer,
      audience: p.client_ids,
      algorithms: ALGORITHMS,
      requiredClaims: ["sub", "exp"],
      currentDate: new Date(deps.now),
      clockTolerance: CLOCK_TOLERANCE_S,
    }));
  } catch (e) {
    if (unavailable(e)) {
      console.error(JSON.stringify({ level: "error", provider: p.id, message: "JWKS fetch failed", error: String(e) }));
      throw new ApiError("provider_unavailable");
    }
    throw new ApiError("invalid_token", "The ID token is not valid");
  }
  const bad = (why: string) => new ApiError("invalid_token", `The ID token is not valid: ${why}`);
  if (payload.azp !== undefined && !p.client_ids.includes(String(payload.azp))) throw bad("azp");
  const sub = payload.sub;
  if (typeof sub !== "string" || !sub || sub.length > 255) throw bad("sub");
  if (nonce !== undefined) {
    const claim = payload.nonce;
    if (typeof claim !== "string" || (claim !== nonce && claim !== (await sha256Hex(nonce)))) throw bad("nonce");
    const fresh = await putRecord(
      deps.db,
      "nonce",
      `${p.id}\n${claim}`,
      realm,
      {},
      (payload.exp as number) * 1000 + CLOCK_TOLERANCE_S * 1000,
      deps.now,
    );
    if (!fresh) throw bad("nonce already used");
  }
  const rawEmail = typeof payload.email === "string" ? payload.email.trim().toLowerCase() : "";
  const email = rawEmail.length <= 254 && EMAIL.test(rawEmail) ? rawEmail : null;
  // Apple sends the booleans as strings.
  const verified = payload.email_verified === true || payload.email_verified === "true";
  const name = typeof payload.name === "string" ? payload.name.trim().slice(0, 200) || null : null;
  return { provider: p.id, subject: sub, email, emailVerified: email !== null && verified, name };
}
