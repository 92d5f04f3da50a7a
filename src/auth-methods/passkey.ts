import type {
  AuthenticationResponseJSON,
  RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from "@simplewebauthn/server";
import type { WebAuthnConfig } from "../config";
import { b64url, fromB64url, utf8 } from "../crypto/encoding";
import type { AccessClaims } from "../crypto/jwt";
import { ApiError } from "../errors";
import type { Deps } from "../services/deps";
import { requireUser } from "../services/users";
import {
  CHALLENGE_TTL_MS,
  deletePasskey,
  findPasskey,
  insertPasskey,
  listPasskeys,
  type PasskeyRow,
  putChallenge,
  recordPasskeyUse,
  spendChallenge,
} from "../storage/passkeys";
import { findUserById, type UserRecord } from "../storage/users";
import { iso } from "../time";

/**
 * @simplewebauthn/server and its ASN.1/X.509 stack are set up on the first passkey request, not
 * at the isolate's start, which they slowed by about a third (docs/performance.md, the bundle).
 */
const webauthn = () => import("@simplewebauthn/server");

/** The Passkey of docs/api.md §12. */
export const toPasskey = (p: PasskeyRow) => ({
  id: p.id,
  name: p.name,
  created_at: p.createdAt,
  last_used_at: p.lastUsedAt,
  backed_up: p.backedUp,
  transports: p.transports,
});

function settings(deps: Deps): WebAuthnConfig {
  if (!deps.config.webauthn) throw new ApiError("passkeys_unavailable");
  return deps.config.webauthn;
}

/** The WebAuthn user handle of an account: its id, as bytes (never an email or phone number). */
export const userHandle = (userId: string) => b64url(utf8(userId));

/** POST /v1/users/me/passkeys/options: creation options; the challenge is kept for this user. */
export async function registrationOptions(deps: Deps, claims: AccessClaims) {
  const rp = settings(deps);
  const user = await requireUser(deps, claims.realm, claims.sub);
  const existing = await listPasskeys(deps.db, user.id);
  const options = await (await webauthn()).generateRegistrationOptions({
    rpName: rp.rpName,
    rpID: rp.rpId,
    userID: utf8(user.id),
    userName: user.email ?? user.phoneNumber ?? user.id,
    userDisplayName: user.fullName ?? "",
    attestationType: "none",
    timeout: CHALLENGE_TTL_MS,
    excludeCredentials: existing.map((p) => ({ id: p.id, transports: p.transports })),
    authenticatorSelection: { residentKey: "required", requireResidentKey: true, userVerification: "preferred" },
  });
  await putChallenge(deps.db, {
    challenge: options.challenge,
    realm: user.realm,
    purpose: "register",
    userId: user.id,
    now: deps.now,
  });
  return options;
}

/** POST /v1/users/me/passkeys: verifies the registration (its challenge spent) and stores the passkey. */
export async function registerPasskey(
  deps: Deps,
  claims: AccessClaims,
  input: { response: RegistrationResponseJSON; name?: string },
) {
  const rp = settings(deps);
  const user = await requireUser(deps, claims.realm, claims.sub);
  let info: Awaited<ReturnType<typeof verifyRegistrationResponse>>["registrationInfo"];
  try {
    const result = await (await webauthn()).verifyRegistrationResponse({
      response: input.response,
      expectedChallenge: (challenge) =>
        spendChallenge(deps.db, { challenge, realm: user.realm, purpose: "register", userId: user.id, now: deps.now }),
      expectedOrigin: rp.origins,
      expectedRPID: rp.rpId,
      requireUserVerification: false,
    });
    info = result.verified ? result.registrationInfo : undefined;
  } catch (e) {
    // What the library found wrong (origin, RP ID, challenge, signature...) is told: it is about the caller's own request.
    throw new ApiError("invalid_passkey", undefined, { fields: { response: reason(e) } });
  }
  if (!info) throw new ApiError("invalid_passkey");
  const row: PasskeyRow = {
    id: info.credential.id,
    realm: user.realm,
    userId: user.id,
    name: input.name ?? null,
    publicKey: b64url(info.credential.publicKey),
    counter: info.credential.counter,
    transports: info.credential.transports ?? [],
    backedUp: info.credentialBackedUp,
    createdAt: iso(deps.now),
    lastUsedAt: null,
  };
  if (!(await insertPasskey(deps.db, row))) {
    throw new ApiError("invalid_passkey", "This passkey is registered already");
  }
  return toPasskey(row);
}

export async function passkeysOf(deps: Deps, claims: AccessClaims) {
  return (await listPasskeys(deps.db, claims.sub)).map(toPasskey);
}

export async function removePasskey(deps: Deps, claims: AccessClaims, id: string) {
  if (!(await deletePasskey(deps.db, claims.sub, id))) throw new ApiError("not_found", "No such passkey");
}

/** POST /v1/tokens/passkey/options: request options for a discoverable credential (no user named). */
export async function loginOptions(deps: Deps, realm: string) {
  const rp = settings(deps);
  const options = await (await webauthn()).generateAuthenticationOptions({
    rpID: rp.rpId,
    userVerification: "preferred",
    timeout: CHALLENGE_TTL_MS,
  });
  await putChallenge(deps.db, { challenge: options.challenge, realm, purpose: "login", userId: null, now: deps.now });
  return options;
}

export type PasskeyLoginFailure =
  | "unknown_credential"
  | "other_user"
  | "verification_failed"
  | "user_verification_missing"
  | "counter_regression";

export type PasskeyLogin =
  | { ok: true; user: UserRecord; amr: string[]; passkeyId: string }
  | { ok: false; reason: PasskeyLoginFailure; userId: string | null; passkeyId: string | null; detail?: string };

/**
 * Checks a discoverable-credential assertion (docs/api.md §12): the credential must be known in this
 * realm and its user handle that credential's user; the library checks the challenge (spent here
 * on first use), origin, RP ID and signature. User verification is required when the account has
 * TOTP on, since the passkey then stands in for both factors. A signature counter that did not
 * move forward is refused (a possibly cloned key). Every failure is the same on the wire.
 */
export async function checkPasskeyLogin(
  deps: Deps,
  realm: string,
  response: AuthenticationResponseJSON,
): Promise<PasskeyLogin> {
  const rp = settings(deps);
  const stored = typeof response?.id === "string" ? await findPasskey(deps.db, realm, response.id) : null;
  if (!stored) return { ok: false, reason: "unknown_credential", userId: null, passkeyId: null };
  const fail = (reason: PasskeyLoginFailure, detail?: string): PasskeyLogin => ({
    ok: false,
    reason,
    userId: stored.userId,
    passkeyId: stored.id,
    detail,
  });
  const handle = response.response?.userHandle;
  if (handle !== undefined && handle !== userHandle(stored.userId)) return fail("other_user");
  const user = await findUserById(deps.db, realm, stored.userId);
  if (!user) return fail("unknown_credential");
  const publicKey = fromB64url(stored.publicKey);
  if (!publicKey) return fail("verification_failed");
  let info: Awaited<ReturnType<typeof verifyAuthenticationResponse>>["authenticationInfo"];
  try {
    const result = await (await webauthn()).verifyAuthenticationResponse({
      response,
      expectedChallenge: (challenge) =>
        spendChallenge(deps.db, { challenge, realm, purpose: "login", userId: null, now: deps.now }),
      expectedOrigin: rp.origins,
      expectedRPID: rp.rpId,
      // The counter is judged below, so that a regression can be told apart and audited.
      credential: { id: stored.id, publicKey, counter: 0, transports: stored.transports },
      requireUserVerification: user.totpOn,
    });
    if (!result.verified) return fail("verification_failed");
    info = result.authenticationInfo;
  } catch (e) {
    const why = reason(e);
    return fail(/user verification/i.test(why) ? "user_verification_missing" : "verification_failed", why);
  }
  const moved = info.newCounter > stored.counter || (info.newCounter === 0 && stored.counter === 0);
  if (
    !moved ||
    !(await recordPasskeyUse(deps.db, stored.id, {
      counter: info.newCounter,
      backedUp: info.credentialBackedUp,
      now: deps.now,
    }))
  ) {
    return fail("counter_regression", `counter ${info.newCounter}, stored ${stored.counter}`);
  }
  return { ok: true, user, amr: info.userVerified ? ["hwk", "mfa"] : ["hwk"], passkeyId: stored.id };
}

const reason = (e: unknown) => (e instanceof Error ? e.message : String(e)).slice(0, 200);
