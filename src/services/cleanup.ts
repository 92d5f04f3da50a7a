import type { Config } from "../config";
import { type CleanupReport, runCleanup } from "../storage/cleanup";
import { getDb } from "../storage/db";

export { type CleanupReport, FAMILIAR_DEVICE_DAYS, runCleanup } from "../storage/cleanup";

/** The cron trigger's cleanup on the D1 binding (see runCleanup). */
export const cleanupNow = (d1: D1Database, config: Config, now: number): Promise<CleanupReport> =>
  runCleanup(getDb(d1), config, now);
