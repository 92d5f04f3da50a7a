import type { D1Migration } from "cloudflare:test";
import type { Env as WorkerEnv } from "../src/env";

declare global {
  namespace Cloudflare {
    interface Env extends WorkerEnv {
      TEST_MIGRATIONS: D1Migration[];
      TEST_OTHER_KEY: string;
      CONSUMER: Fetcher;
      DOUBLE: Fetcher;
      TEST_NOTIFY_QUEUE: Queue<unknown>;
      FUZZ_SEED: string;
      FUZZ_RUNS: string;
      FUZZ_SHRINK: string;
    }
  }
}
