import { and, eq, sql } from "drizzle-orm";
import { iso } from "../time";
import type { Db } from "./db";
import { loginDevices, users } from "./schema";

/** Whether `deviceId` signed in to the account of `email` in `realm` before (the familiar-device lockout). */
export async function isFamiliarDevice(db: Db, realm: string, email: string, deviceId: string): Promise<boolean> {
  const rows = await db
    .select({ one: sql<number>`1` })
    .from(loginDevices)
    .innerJoin(users, eq(users.id, loginDevices.userId))
    .where(and(eq(users.realm, realm), eq(users.email, email), eq(loginDevices.deviceId, deviceId)))
    .limit(1);
  return rows.length > 0;
}

/** Records that a device signed in to an account (or when it last did). */
export function rememberLoginDevice(db: Db, userId: string, deviceId: string, now: number) {
  return db
    .insert(loginDevices)
    .values({ userId, deviceId, lastLoginAt: iso(now) })
    .onConflictDoUpdate({ target: [loginDevices.userId, loginDevices.deviceId], set: { lastLoginAt: iso(now) } });
}
