// Global setup of the "registry-node" test project: builds the worker and the package entry
// points, serves the worker in Miniflare on a free loopback port (its ISSUER is that URL, so
// discovery works as against `npm run dev`), with a bootstrap admin and a known signing key, and
// a consumer worker that verifies with user-registry/verify. Tests reach both over HTTP.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { benchKey, buildBundle, root, startRegistry, verifierWorker } from "../../bench/lib.mjs";

const freePort = () =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });

export default async function setup({ provide }) {
  execFileSync(process.execPath, [join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.sdk.json"], {
    cwd: root,
    stdio: "inherit",
  });
  mkdirSync(join(root, ".wrangler"), { recursive: true });
  const dir = mkdtempSync(join(root, ".wrangler", "node-tests-"));
  const { script } = buildBundle(join(dir, "registry"));
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const key = { ...(await benchKey()), kid: "node-test" };
  const verifier = {
    ...verifierWorker(join(dir, "verifier"), { issuer }),
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
  };
  const { mf, url } = await startRegistry({
    script,
    bindings: {
      ISSUER: issuer,
      JWT_PRIVATE_KEYS: JSON.stringify([key]),
      BOOTSTRAP_ADMIN_EMAILS: "root@admin.test",
    },
    options: { port },
    extraWorkers: [verifier],
  });
  provide("registry", {
    url,
    issuer,
    key: JSON.stringify(key),
    verifierUrl: String(await mf.unsafeGetDirectURL("verifier")),
  });
  return async () => {
    await mf.dispose();
    rmSync(dir, { recursive: true, force: true });
  };
}
