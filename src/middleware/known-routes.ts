import type { Limiter } from "./limits";

/** Every documented route's method and path pattern, so a known path with a wrong method answers 405. */
export const knownRoutes: { method: string; pattern: RegExp }[] = [];

/** The methods some route serves at `path` (a path with the realm prefix taken off). */
export const methodsFor = (path: string) => knownRoutes.filter((r) => r.pattern.test(path)).map((r) => r.method);

/** Whether a route serves `method` at `path` (stops at the first match). */
export const serves = (path: string, method: string) =>
  knownRoutes.some((r) => r.method === method && r.pattern.test(path));

/**
 * The routes a per-IP limiter guards (docs/api.md §10), as each route declared it (`limit` in
 * `route()`). Paths are as routed (realm prefix removed).
 */
export const limitedRoutes: { method: string; path: string; limiter: Limiter }[] = [];
