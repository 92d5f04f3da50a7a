import { createRoute, type RouteConfig, type z } from "@hono/zod-openapi";
import { ErrorSchema } from "../schemas";

/** Every documented route's method and path pattern, so a known path with a wrong method answers 405. */
export const knownRoutes: { method: string; pattern: RegExp }[] = [];

/** The methods some route serves at `path` (a path with the realm prefix taken off). */
export const methodsFor = (path: string) => knownRoutes.filter((r) => r.pattern.test(path)).map((r) => r.method);

/** Whether a route serves `method` at `path` (stops at the first match). */
export const serves = (path: string, method: string) =>
  knownRoutes.some((r) => r.method === method && r.pattern.test(path));

/** createRoute that also records the route for 405 answers. Adds the error shape as the default response. */
export function route<const R extends RouteConfig>(config: R) {
  knownRoutes.push({
    method: config.method.toUpperCase(),
    // Exactly the path the router serves (it is strict about a trailing slash), literal dots included.
    pattern: new RegExp(
      `^${config.path
        .split(/\{[^}]+\}/)
        .map((part) => part.replace(/[.*+?^$()|[\]\\]/g, "\\$&"))
        .join("[^/]+")}$`,
    ),
  });
  return createRoute({
    ...config,
    responses: {
      ...config.responses,
      default: { description: "An error (api.md §1)", content: { "application/json": { schema: ErrorSchema } } },
    },
  });
}

/** A required JSON request body. */
export const jsonBody = <T extends z.ZodType>(schema: T) => ({
  body: { required: true, content: { "application/json": { schema } } },
});

/** A JSON response. */
export const json = <T extends z.ZodType>(description: string, schema: T) => ({
  description,
  content: { "application/json": { schema } },
});

export const bearerAuth = [{ bearer: [] }];
