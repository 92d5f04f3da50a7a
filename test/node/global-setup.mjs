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
  const { mf, url, db } = await startRegistry({
    script,
    bindings: {
      ISSUER: issuer,
      JWT_PRIVATE_KEYS: JSON.stringify([key]),
      // Passkey options (client.test.mjs); no authenticator signs anything here.
      WEBAUTHN_RP_ID: "localhost",
    },
    options: { port },
    extraWorkers: [verifier],
  });
  // The admin the tests mint authority tokens with. A bootstrap seat needs a proven email, whose
  // code only goes to the log here: the role is given in D1 instead.
  const signedUp = await fetch(`${url}/v1/users`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: "root@admin.test", password: "correct horse battery", full_name: "Root" }),
  });
  if (signedUp.status !== 201) throw new Error(`admin sign-up: ${signedUp.status} ${await signedUp.text()}`);
  await db.prepare(`UPDATE users SET roles = '["user","admin"]' WHERE email = 'root@admin.test'`).run();
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
