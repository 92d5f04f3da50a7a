import { and, eq, sql } from "drizzle-orm";
import { iso } from "../time";
import type { AuditInsert } from "./audit";
import { batchRaw, changedRows, type Db } from "./db";
import type { DeviceView } from "./device-session";
import { devices } from "./schema";

/** The device-index row of a session object's device. */
export function indexRow(d: DeviceView) {
  return {
    deviceId: d.deviceId,
    sessionId: d.sid,
    description: d.description,
    pushToken: d.pushToken,
    pushTokenUpdatedAt: d.pushTokenUpdatedAt === null ? null : iso(d.pushTokenUpdatedAt),
    createdAt: iso(d.createdAt),
    lastSeenAt: iso(d.lastSeenAt),
    expiresAt: iso(d.expiresAt),
  };
}

/** What the account was read with at login: the conditions of the index write. */
export interface IndexedAccount {
  id: string;
  realm: string;
  passwordChangedAt: string | null;
  sessionsValidAfter: string | null;
}

/**
 * What a login writes along with its index row, in the same D1 batch and only if that row was
 * written (docs/reliability.md, "Login writes"): the device is remembered as familiar, the login
 * throttle's count of the subject the credential was checked under is cleared, and the audit row.
 */
export interface LoginWrites {
  at: string;
  throttle?: { realm: string; subject: string };
  /** Audit rows, in order (the login's last). */
  audit?: AuditInsert[];
}

/**
 * Writes the device's index row if the account is still active with the password `user` was read
 * with, and (unless the login checked two factors) still has no authenticator app: TOTP turned on
 * while a password-only login was on its way leaves that login without a session. With `writes`,
 * the login's other writes go in the same batch, each only if the row was written.
 */
export async function indexIfUnchanged(
  db: Db,
  user: IndexedAccount,
  d: DeviceView,
  twoFactors: boolean,
  writes?: LoginWrites,
): Promise<boolean> {
  const row = indexRow(d);
  const noTotp = twoFactors
    ? sql``
    : sql`AND NOT EXISTS (SELECT 1 FROM totp_factors WHERE user_id = ${user.id} AND confirmed_at IS NOT NULL)`;
  const insert = sql`
    INSERT INTO devices (user_id, device_id, realm, session_id, description, push_token, push_token_updated_at, created_at, last_seen_at, expires_at)
    SELECT ${user.id}, ${row.deviceId}, ${user.realm}, ${row.sessionId}, ${row.description}, ${row.pushToken}, ${row.pushTokenUpdatedAt}, ${row.createdAt}, ${row.lastSeenAt}, ${row.expiresAt}
    WHERE EXISTS (SELECT 1 FROM users WHERE id = ${user.id} AND status = 'active' AND password_changed_at IS ${user.passwordChangedAt} AND sessions_valid_after IS ${user.sessionsValidAfter}) ${noTotp}
    ON CONFLICT (user_id, device_id) DO UPDATE SET session_id = excluded.session_id, description = excluded.description,
      push_token = excluded.push_token, push_token_updated_at = excluded.push_token_updated_at,
      created_at = excluded.created_at, last_seen_at = excluded.last_seen_at, expires_at = excluded.expires_at`;
  if (!writes) return changedRows(await db.run(insert)) > 0;
  const [inserted] = await batchRaw(db, [insert, ...loginWrites(user.id, row, writes)]);
  return changedRows(inserted) > 0;
}

function loginWrites(userId: string, row: ReturnType<typeof indexRow>, w: LoginWrites) {
  // Each statement runs only when the batch's first one wrote this session's row.
  const indexed = sql`EXISTS (SELECT 1 FROM devices WHERE user_id = ${userId} AND device_id = ${row.deviceId} AND session_id = ${row.sessionId})`;
  const statements = [
    sql`INSERT INTO login_devices (user_id, device_id, last_login_at) SELECT ${userId}, ${row.deviceId}, ${w.at}
      WHERE ${indexed} ON CONFLICT (user_id, device_id) DO UPDATE SET last_login_at = excluded.last_login_at`,
  ];
  if (w.throttle) {
    statements.push(
      sql`DELETE FROM login_throttle WHERE realm = ${w.throttle.realm} AND subject = ${w.throttle.subject} AND ${indexed}`,
    );
  }
  for (const a of w.audit ?? []) {
    const detail = a.detail == null ? null : JSON.stringify(a.detail);
    statements.push(
      sql`INSERT INTO audit_events (at, realm, type, user_id, device_id, ip, detail, actor_kind, actor_id)
        SELECT ${a.at}, ${a.realm}, ${a.type}, ${a.userId ?? null}, ${a.deviceId ?? null}, ${a.ip ?? null}, ${detail}, ${a.actorKind ?? "system"}, ${a.actorId ?? null}
        WHERE ${indexed}`,
    );
  }
  return statements;
}

/**
 * An upsert of a refreshed session's row: it comes back if it was lost (a failed login write, or
 * purged as expired), but never over the row of a newer session of the device (a re-login that
 * raced this refresh).
 */
export function reindex(db: Db, userId: string, realm: string, d: DeviceView) {
  const row = indexRow(d);
  return db
    .insert(devices)
    .values({ ...row, userId, realm })
    .onConflictDoUpdate({
      target: [devices.userId, devices.deviceId],
      set: row,
      setWhere: eq(devices.sessionId, row.sessionId),
    });
}

/** The device ids of a user's sessions, as the D1 index lists them. */
export async function indexedDeviceIds(db: Db, userId: string): Promise<string[]> {
  const rows = await db.select({ deviceId: devices.deviceId }).from(devices).where(eq(devices.userId, userId));
  return rows.map((r) => r.deviceId);
}

/** Every index row of a user. */
export const indexRowsOf = (db: Db, userId: string) => db.select().from(devices).where(eq(devices.userId, userId));

/** Rewrites a device's row from the object's view of it (PUT /v1/devices/current). */
export async function updateIndexRow(db: Db, userId: string, deviceId: string, d: DeviceView): Promise<void> {
  await db
    .update(devices)
    .set(indexRow(d))
    .where(and(eq(devices.userId, userId), eq(devices.deviceId, deviceId)));
}
