// Tests of `npm run dev`'s argument handling (scripts/dev.mjs).
import { describe, expect, it } from "vitest";
import { devArgs } from "./dev.mjs";

describe("npm run dev -- …", () => {
  it("defaults to 127.0.0.1:8787 with ISSUER its URL", () => {
    expect(devArgs([])).toEqual([
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      "8787",
      "--var",
      "ISSUER:http://127.0.0.1:8787",
    ]);
  });

  it("--port N (or --port=N) replaces the port, once, and the ISSUER follows", () => {
    for (const argv of [["--port", "8803"], ["--port=8803"]]) {
      const args = devArgs(argv);
      expect(args.filter((a) => a === "--port")).toHaveLength(1);
      expect(args).toEqual(["dev", "--ip", "127.0.0.1", "--port", "8803", "--var", "ISSUER:http://127.0.0.1:8803"]);
    }
  });

  it("passes other arguments on, and keeps an ISSUER set in .dev.vars", () => {
    expect(devArgs(["--ip", "0.0.0.0", "--log-level", "debug"], "ISSUER=https://me.test\n")).toEqual([
      "dev",
      "--ip",
      "0.0.0.0",
      "--port",
      "8787",
      "--log-level",
      "debug",
    ]);
  });

  it("refuses a missing or bad port", () => {
    expect(() => devArgs(["--port"])).toThrow(/needs a value/);
    expect(() => devArgs(["--port", "abc"])).toThrow(/not a port/);
  });
});
