// Tests of `npm run keys`: the steps of a signing-key rotation (docs/operations.md, "Signing keys").
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { newKey } from "./keys.mjs";

const dir = mkdtempSync(join(tmpdir(), "keys-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const keys = (...args) => {
  const r = spawnSync(process.execPath, [join(import.meta.dirname, "keys.mjs"), ...args], { encoding: "utf8" });
  return { status: r.status, out: r.stdout, err: r.stderr, json: r.status === 0 ? JSON.parse(r.stdout) : null };
};
const file = (name, value) => {
  const path = join(dir, name);
  writeFileSync(path, typeof value === "string" ? value : JSON.stringify(value));
  return path;
};

describe("npm run keys", () => {
  it("prints a one-key array of a private P-256 JWK with a kid", async () => {
    const r = keys();
    expect(r.status).toBe(0);
    expect(r.json).toHaveLength(1);
    expect(r.json[0]).toMatchObject({ kty: "EC", crv: "P-256" });
    for (const field of ["x", "y", "d", "kid"]) expect(typeof r.json[0][field]).toBe("string");
    // The key really signs and verifies.
    const { kid: _kid, ...jwk } = r.json[0];
    const priv = await crypto.subtle.importKey("jwk", jwk, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
    const pub = await crypto.subtle.importKey(
      "jwk",
      { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y },
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
    const data = new TextEncoder().encode("rotation");
    const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, priv, data);
    expect(await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, pub, sig, data)).toBe(true);
  });

  it("rotates: a new key in front, the old ones kept; drops one by kid; shows the public JWKS", async () => {
    const old = await newKey(new Date("2026-01-01T00:00:00Z"));
    const rotated = keys("--rotate", file("current.json", [old]));
    expect(rotated.status).toBe(0);
    expect(rotated.json).toHaveLength(2);
    expect(rotated.json[1]).toEqual(old);
    expect(rotated.json[0].kid).not.toBe(old.kid);

    const pub = keys("--public", file("both.json", rotated.json));
    expect(pub.json.keys.map((k) => k.kid)).toEqual([rotated.json[0].kid, old.kid]);
    for (const k of pub.json.keys) expect(k).not.toHaveProperty("d");

    const dropped = keys("--drop", old.kid, file("both2.json", rotated.json));
    expect(dropped.json).toEqual([rotated.json[0]]);
    // A .dev.vars line is read as well.
    const fromDevVars = keys("--rotate", file(".dev.vars", `JWT_PRIVATE_KEYS='${JSON.stringify([old])}'\n`));
    expect(fromDevVars.json[1]).toEqual(old);
  });

  it("refuses what would lock everybody out, with a message and no stack", async () => {
    const only = await newKey();
    const last = keys("--drop", only.kid, file("one.json", [only]));
    expect(last.status).toBe(2);
    expect(last.err).toContain("refusing to drop the last key");
    const unknown = keys("--drop", "nope", file("one2.json", [only]));
    expect(unknown.err).toContain("no key with kid nope");
    const bad = keys("--rotate", file("bad.json", "[{}]"));
    expect(bad.status).toBe(2);
    expect(bad.err).not.toContain("    at ");
  });
});
