import { endAllSessions } from "../sessions/gateway";
import { indexedDeviceIds, indexRowsOf } from "../storage/devices";
import { setSessionsValidAfter } from "../storage/users";
import { iso } from "../time";
import type { Deps } from "./deps";

/** The user's devices, newest first. */
export async function listDevices(deps: Deps, userId: string, currentDeviceId: string) {
  const rows = await indexRowsOf(deps.db, userId);
  const nowIso = iso(deps.now);
  return rows
    .filter((r) => r.expiresAt > nowIso)
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1))
    .map((r) => ({
      device_id: r.deviceId,
      description: r.description,
      current: r.deviceId === currentDeviceId,
      created_at: r.createdAt,
      last_seen_at: r.lastSeenAt,
      push_token: r.pushToken,
      push_token_updated_at: r.pushTokenUpdatedAt,
    }));
}

/** The device ids of a user's sessions, as the D1 index lists them. */
export async function sessionsOf(deps: Deps, userId: string): Promise<string[]> {
  return indexedDeviceIds(deps.db, userId);
}

/**
 * "Log out everywhere": every session of the user begun before now ends (docs/api.md §16).
 * sessions_valid_after is written first, so a session the index does not list is refused by its
 * next refresh or strict check; then the sessions the index lists end at once.
 */
export async function endSessionsBefore(deps: Deps, realm: string, userId: string): Promise<void> {
  await setSessionsValidAfter(deps.db, userId, deps.now);
  await endAllSessions(deps, realm, userId);
}
