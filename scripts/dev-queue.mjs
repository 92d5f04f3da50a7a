#!/usr/bin/env node
// `npm run dev:queue [-- --port N]`: the notifier's queue path (docs/api.md §8) on this machine.
// Serves the built worker in Miniflare with a local NOTIFY_QUEUE (producer and consumer: this
// worker's queue handler, dead-letter queue included) and NOTIFY_WEBHOOK_URL pointing at a small
// receiver here that prints each signed post and whether its signature checks out. Answer 500
// from the receiver with RECEIVER_FAIL=1 to watch the retries. Ctrl-C stops both.
import { createHmac, timingSafeEqual } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { buildBundle, root, startRegistry } from "../bench/lib.mjs";
import { devArgs } from "./dev.mjs";

const args = devArgs(process.argv.slice(2));
const port = Number(args[args.indexOf("--port") + 1]);
const secret = "dev-queue-webhook-secret";

const receiver = createServer((req, res) => {
  let body = "";
  req.on("data", (c) => {
    body += c;
  });
  req.on("end", () => {
    const given = String(req.headers["x-signature"] ?? "");
    const expected = `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
    const signed = given.length === expected.length && timingSafeEqual(Buffer.from(given), Buffer.from(expected));
    const fail = process.env.RECEIVER_FAIL === "1";
    console.log(`webhook ${fail ? "500 (RECEIVER_FAIL)" : "200"} signature ${signed ? "ok" : "BAD"}: ${body}`);
    res.writeHead(fail ? 500 : 200).end();
  });
});
await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
const hook = `http://127.0.0.1:${receiver.address().port}/hook`;

mkdirSync(join(root, ".wrangler"), { recursive: true });
const dir = mkdtempSync(join(root, ".wrangler", "dev-queue-"));
const { script } = buildBundle(dir);
const issuer = `http://127.0.0.1:${port}`;
const queue = "user-registry-dev-notify";
const { mf } = await startRegistry({
  script,
  bindings: { ISSUER: issuer, NOTIFY_WEBHOOK_URL: hook, NOTIFY_WEBHOOK_SECRET: secret },
  options: {
    port,
    // The worker's log lines (requests, queue deliveries, errors) go to this terminal.
    handleRuntimeStdio: (stdout, stderr) => {
      stdout.pipe(process.stdout);
      stderr.pipe(process.stderr);
    },
  },
  // The worker is both producer and consumer, as in wrangler.toml's staging and production.
  registry: {
    queueProducers: { NOTIFY_QUEUE: { queueName: queue } },
    queueConsumers: {
      [queue]: { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 3, deadLetterQueue: `${queue}-dlq` },
    },
  },
});
console.log(`dev:queue: serving ${issuer} (notifications through ${queue}, posted to ${hook}); Ctrl-C stops`);
const stop = async () => {
  await mf.dispose();
  receiver.close();
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
