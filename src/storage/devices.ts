import { and, eq, sql } from "drizzle-orm";
import { iso } from "../time";
import { changedRows, type Db } from "./db";
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
 * Writes the device's index row if the account is still active with the password `user` was read
 * with, and (unless the login checked two factors) still has no authenticator app: TOTP turned on
 * while a password-only login was on its way leaves that login without a session.
 */
export async function indexIfUnchanged(
  db: Db,
  user: IndexedAccount,
  d: DeviceView,
  twoFactors: boolean,
): Promise<boolean> {
  const row = indexRow(d);
  const noTotp = twoFactors
    ? sql``
    : sql`AND NOT EXISTS (SELECT 1 FROM totp_factors WHERE user_id = ${user.id} AND confirmed_at IS NOT NULL)`;
  const res = await db.run(sql`
    INSERT INTO devices (user_id, device_id, realm, session_id, description, push_token, push_token_updated_at, created_at, last_seen_at, expires_at)
    SELECT ${user.id}, ${row.deviceId}, ${user.realm}, ${row.sessionId}, ${row.description}, ${row.pushToken}, ${row.pushTokenUpdatedAt}, ${row.createdAt}, ${row.lastSeenAt}, ${row.expiresAt}
    WHERE EXISTS (SELECT 1 FROM users WHERE id = ${user.id} AND status = 'active' AND password_changed_at IS ${user.passwordChangedAt} AND sessions_valid_after IS ${user.sessionsValidAfter}) ${noTotp}
    ON CONFLICT (user_id, device_id) DO UPDATE SET session_id = excluded.session_id, description = excluded.description,
      push_token = excluded.push_token, push_token_updated_at = excluded.push_token_updated_at,
      created_at = excluded.created_at, last_seen_at = excluded.last_seen_at, expires_at = excluded.expires_at`);
  return changedRows(res) > 0;
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
