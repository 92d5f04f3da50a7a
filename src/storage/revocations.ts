// Revocation in one place: the KV blacklist and index-row primitives, and the isolate's cache of
// "not revoked" answers read from that blacklist.
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

/**
 * "Not revoked" answers of the KV blacklist, remembered in the isolate for NOT_REVOKED_MS so a
 * client making many calls with one access token costs one KV read every few seconds instead of
 * one per call. The price: a token revoked in *another* isolate may still pass here for up to
 * NOT_REVOKED_MS longer than KV alone would allow (KV itself takes up to ~60 s between
 * locations). A token blacklisted by *this* isolate is forgotten here at once, strict checks
 * never read this cache, and `revoked` answers are never cached (they are read from KV each time).
 * At most NOT_REVOKED_MAX entries (the oldest go first; each is a jti and a time).
 */
const NOT_REVOKED_MS = 5_000;
const NOT_REVOKED_MAX = 10_000;

const notRevoked = new Map<string, number>();
/** Counts blacklistings by this isolate: an answer read from KV before one of them is not kept. */
let epoch = 0;

export const revocationEpoch = () => epoch;

/** True when KV said "not revoked" for this jti less than NOT_REVOKED_MS ago (by the request's clock). */
export function knownNotRevoked(jti: string, now: number): boolean {
  const at = notRevoked.get(jti);
  if (at === undefined) return false;
  if (now >= at && now - at < NOT_REVOKED_MS) return true;
  notRevoked.delete(jti);
  return false;
}

/** Keeps a "not revoked" answer read from KV, unless this isolate blacklisted something since `readAt` (an epoch). */
export function rememberNotRevoked(jti: string, now: number, readAt: number): void {
  if (readAt !== epoch) return;
  notRevoked.delete(jti);
  if (notRevoked.size >= NOT_REVOKED_MAX) notRevoked.delete(notRevoked.keys().next().value as string);
  notRevoked.set(jti, now);
}

/** Called with every jti this isolate puts on the blacklist. */
export function forgetNotRevoked(jtis: Iterable<string>): void {
  epoch++;
  for (const jti of jtis) notRevoked.delete(jti);
}
