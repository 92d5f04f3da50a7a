#!/usr/bin/env node
// Prints signing keys for JWT_PRIVATE_KEYS (a JSON array of private P-256 JWKs; the first signs, all verify).
//
//   npm run keys                       a new one-key array, ready for `wrangler secret put JWT_PRIVATE_KEYS`
//   npm run keys -- --rotate FILE      FILE's array with a new key put first (old keys keep verifying)
//   npm run keys -- --drop KID FILE    FILE's array without the key KID (its tokens stop verifying)
//   npm run keys -- --public FILE      the public JWKS of FILE's keys (what /.well-known/jwks.json will show)
//
// FILE may be "-" for standard input. Output goes to standard output only, so it can be piped:
//   npm run keys --silent | npx wrangler secret put JWT_PRIVATE_KEYS
import { readFileSync } from "node:fs";

/** A new private P-256 JWK with a date-based kid. */
export async function newKey(now = new Date()) {
  const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
  const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
  const stamp = now.toISOString().slice(0, 19).replace(/[-:T]/g, "");
  const rand = Buffer.from(crypto.getRandomValues(new Uint8Array(3))).toString("hex");
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d, kid: `k${stamp}-${rand}` };
}

function readKeys(file) {
  const text = readFileSync(file === "-" ? 0 : file, "utf8").trim();
  // Accept both the array itself and a .dev.vars line JWT_PRIVATE_KEYS='[...]'.
  const m = /JWT_PRIVATE_KEYS\s*=\s*'?(\[.*\])'?/s.exec(text);
  const keys = JSON.parse(m ? m[1] : text);
  if (!Array.isArray(keys) || !keys.every((k) => k && typeof k.kid === "string" && k.d)) {
    throw new Error("expected a JSON array of private JWKs, each with a kid");
  }
  return keys;
}

async function main(argv) {
  const [cmd, a, b] = argv;
  if (!cmd) return [await newKey()];
  if (cmd === "--rotate" && a) return [await newKey(), ...readKeys(a)];
  if (cmd === "--drop" && a && b) {
    const keys = readKeys(b);
    const left = keys.filter((k) => k.kid !== a);
    if (left.length === keys.length) throw new Error(`no key with kid ${a}`);
    if (left.length === 0) throw new Error("refusing to drop the last key");
    return left;
  }
  if (cmd === "--public" && a) {
    return { keys: readKeys(a).map(({ kty, crv, x, y, kid }) => ({ kty, crv, x, y, kid, alg: "ES256", use: "sig" })) };
  }
  throw new Error("usage: keys [--rotate FILE | --drop KID FILE | --public FILE]");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (out) => process.stdout.write(`${JSON.stringify(out)}\n`),
    (e) => {
      process.stderr.write(`keys: ${e.message}\n`);
      process.exit(2);
    },
  );
}
