import { ApiError } from "../errors";

const RETRY_WAITS_MS = [0, 50, 250];

/** Runs an idempotent step again when it fails, up to three times in all (waiting 50 ms, then 250 ms). */
export async function retryInPlace<T>(step: () => Promise<T>): Promise<T> {
  let last: unknown;
  for (const wait of RETRY_WAITS_MS) {
    if (wait) await new Promise((r) => setTimeout(r, wait));
    try {
      return await step();
    } catch (e) {
      if (e instanceof ApiError) throw e;
      last = e;
    }
  }
  throw last;
}
