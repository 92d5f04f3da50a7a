import { getDb } from "../storage/db";
import { findRealm, listRealmRows, REALM_ID, type RealmSettings, upsertRealm } from "../storage/realms";
import type { Deps } from "./deps";

/** Whether a realm exists (the realm middleware's check, on the D1 binding). */
export async function realmExists(d1: D1Database, id: string): Promise<boolean> {
  return REALM_ID.test(id) && (await findRealm(getDb(d1), id)) !== null;
}

/** Every realm, by id (docs/api.md §6). */
export const listRealms = (deps: Deps) => listRealmRows(deps.db);

/** Creates a realm or changes its settings (docs/api.md §6). */
export const putRealm = (deps: Deps, id: string, settings: RealmSettings) => upsertRealm(deps.db, id, settings);
