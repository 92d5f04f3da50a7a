import { and, eq } from "drizzle-orm";
import type { Db } from "./db";
import { kvKeys, kvTtl } from "./keys";
import { devices } from "./schema";

/** An access token to revoke: its jti and expiry (seconds since the epoch, as in the JWT). */
export interface LiveJti {
  jti: string;
  exp: number;
}

/** A device-index row that names an ended session. */
export interface EndedRow {
  userId: string;
  deviceId: string;
  sid: string;
}

/** Puts access tokens on the KV blacklist until each would have expired (idempotent). */
export async function putOnBlacklist(kv: KVNamespace, jtis: LiveJti[], nowMs: number): Promise<void> {
  const nowSec = Math.floor(nowMs / 1000);
  await Promise.all(jtis.map((j) => kv.put(kvKeys.blacklist(j.jti), "1", { expirationTtl: kvTtl(j.exp - nowSec) })));
}

/**
 * Deletes the index row of an ended session, by its session id: a re-login of the device may have
 * written its own row meanwhile, which must stay listed (idempotent).
 */
export async function deleteEndedRow(db: Db, row: EndedRow): Promise<void> {
  await db
    .delete(devices)
    .where(and(eq(devices.userId, row.userId), eq(devices.deviceId, row.deviceId), eq(devices.sessionId, row.sid)));
}
