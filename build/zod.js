// What the worker bundle gets for `import … from "zod"` (wrangler.toml: [alias] zod = "./build/zod.js").
//
// @hono/zod-openapi hands zod's whole `z` namespace to extendZodWithOpenApi, so a bundler must
// keep every export of zod, used or not. Three of them are most of zod's weight and of no use in
// a Worker: the ~50 message locales (≈260 KB; English is zod's default and stays), the JIT
// compiler (`z.compile`, which needs `new Function`, refused by the Workers runtime), and JSON
// Schema import (`z.fromJSONSchema`). This module is zod's own classic API (`zod/v4`, the same
// modules and classes as `zod`) with those names shadowed, which drops about 50 KiB of gzip.
//
// The bundle built by wrangler (deploy, dev) and the tests (an alias in vitest.config.ts) use
// this file; TypeScript sees the real package. Using a shadowed name fails loudly, never silently.
import en from "zod/v4/locales/en.js";
import * as z from "./zod.js";

export * from "zod/v4";
export { z };
export default z;

const missing = (name) => () => {
  throw new Error(`zod's ${name} is not part of this bundle (see build/zod.js)`);
};

export const locales = { en };
export const core = new Proxy(
  {},
  {
    get: (_target, key) => {
      if (typeof key === "symbol") return undefined;
      throw new Error(`zod's core namespace (z.core.${key}) is not part of this bundle (see build/zod.js)`);
    },
  },
);
export const compile = missing("compile");
export const withParser = missing("withParser");
export const fromJSONSchema = missing("fromJSONSchema");
export const ZodCompileAsyncError = undefined;
export const ZodCompileUnsupportedError = undefined;
export const INVALID = undefined;
