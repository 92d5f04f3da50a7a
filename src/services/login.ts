import { secondFactorDone } from "../auth-methods/amr";
import { randomString, sha256Hex } from "../crypto/random";
import { ApiError } from "../errors";
import { insertMfaToken } from "../storage/mfa";
import { findRealm } from "../storage/realms";
import { emailVerified, type UserRecord } from "../storage/users";
import { iso } from "../time";
import type { Actor, AuditEvent } from "./audit";
import type { Deps } from "./deps";
import { startSession } from "./sessions";
import { assertActive } from "./users";
import { emailUnverified, verificationRequired } from "./verification";

/** An `mfa_token` lives 5 minutes (docs/api.md §12). */
const MFA_TOKEN_TTL_MS = 5 * 60_000;
export const MFA_METHODS = ["totp", "recovery_code"];

/** A refused login, with the account it was for (null when none): for the audit trail only. */
export class LoginFailure extends ApiError {
  readonly userId: string | null;
  constructor(base: ApiError, userId: string | null) {
    super(base.code, base.message, { fields: base.fields, headers: base.headers });
    this.userId = userId;
  }
}

/** A device to sign in: its id, and what the client said about it. */
export interface LoginDevice {
  id: string;
  description?: string | null;
  pushToken?: string | null;
}

/** What a way of signing in hands the seam once its credential is checked. */
export interface LoginRequest {
  /** The account the credential proved, as it was read for the check. */
  user: UserRecord;
  device: LoginDevice;
  /** RFC 8176 references of what was checked (auth-methods/amr.ts). */
  amr: string[];
  /** The realm's email-verification setting applies to this way in (password logins). */
  verifiedEmail?: boolean;
  /** The login-throttle subject the credential was counted under: cleared with the login's writes. */
  throttleSubject?: string;
  /** The audit line's detail and actor (by default the request's). */
  audit?: { detail?: Record<string, unknown>; actor?: Actor };
  /** Events of this sign-in recorded before its `login` (a first sign-in's `signup`), in the same batch. */
  before?: AuditEvent[];
}

/**
 * The one way into a session after a credential check (docs/architecture.md, "Ways of signing
 * in"): the account's status, the realm's email verification where it applies, the second-factor
 * gate, then the session, whose index row, familiar device, throttle reset and audit row are one
 * D1 batch (docs/reliability.md, "Login writes"). The access token carries `amr` and `auth_time`.
 */
export async function completeLogin(deps: Deps, req: LoginRequest) {
  const { user, device } = req;
  // Status is revealed only to someone who proved the credential.
  try {
    assertActive(user);
  } catch (e) {
    throw new LoginFailure(e as ApiError, user.id);
  }
  // Only an unverified account reads its realm's setting: the common login costs no extra read.
  if (req.verifiedEmail && !emailVerified(user)) {
    const realm = await findRealm(deps.db, user.realm);
    if (realm && verificationRequired(realm)) throw new LoginFailure(emailUnverified(), user.id);
  }
  const opts = { description: device.description ?? null, pushToken: device.pushToken ?? null, amr: req.amr };
  await secondFactorGate(deps, user, device.id, opts);
  const entries = (req.before ?? []).map((e) => deps.auditEntry(e));
  const entry = deps.auditEntry({
    type: "login",
    realm: user.realm,
    userId: user.id,
    deviceId: device.id,
    actor: req.audit?.actor,
    detail: req.audit?.detail,
  });
  const pair = await startSession(deps, user, device.id, {
    ...opts,
    writes: {
      at: iso(deps.now),
      throttle: req.throttleSubject ? { realm: user.realm, subject: req.throttleSubject } : undefined,
      audit: [...entries.map((e) => e.row), entry.row],
    },
  });
  for (const e of [...entries, entry]) e.log();
  return pair;
}

/**
 * The second-factor gate (docs/api.md §12): an account with TOTP on gets no session from a first
 * factor alone. Instead, the first step is kept (device, description, push token, its `amr`)
 * under a new `mfa_token`, and the answer is 401 mfa_required carrying it. A passkey that
 * verified its user counts as both factors (its `amr` has `mfa`).
 */
async function secondFactorGate(
  deps: Deps,
  user: UserRecord,
  deviceId: string,
  opts: { description?: string | null; pushToken?: string | null; amr: string[] },
): Promise<void> {
  if (!user.totpOn || secondFactorDone(opts.amr)) return;
  const token = randomString(43);
  await insertMfaToken(deps.db, {
    tokenHash: await sha256Hex(token),
    realm: user.realm,
    userId: user.id,
    deviceId,
    description: opts.description ?? null,
    pushToken: opts.pushToken ?? null,
    amr: opts.amr,
    attempts: 0,
    expiresAt: iso(deps.now + MFA_TOKEN_TTL_MS),
  });
  throw new ApiError("mfa_required", undefined, { body: { mfa_token: token, mfa_methods: MFA_METHODS } });
}
