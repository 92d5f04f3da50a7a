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

/**
 * A follow-up of a change already written: retried in place, and when it still fails it is logged
 * (as `event`, with `fields`) and settles, so it never fails the answer.
 */
export async function followUp(
  event: string,
  fields: Record<string, unknown>,
  step: () => Promise<unknown>,
): Promise<void> {
  try {
    await retryInPlace(step);
  } catch (e) {
    console.error(JSON.stringify({ level: "error", event, ...fields, error: String(e) }));
  }
}
