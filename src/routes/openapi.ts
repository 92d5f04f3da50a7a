import type { OpenAPIHono } from "@hono/zod-openapi";
import { z } from "@hono/zod-openapi";
import { REALM_ID } from "../storage/realms";
import { errorResponse, HEADERS, responseHeaders } from "./define";

// The OpenAPI 3.1 document (api.md §9), from the route definitions, plus what they cannot say:
// the realm-prefixed copy of every /v1 path (api.md §1), the servers, and the notifier's posts.

type Doc = ReturnType<OpenAPIHono["getOpenAPI31Document"]>;
type Operation = Record<string, unknown> & {
  operationId?: string;
  parameters?: unknown[];
  responses?: Record<string, unknown>;
};

const METHODS = ["get", "put", "post", "delete", "patch"] as const;

const RealmParam = {
  name: "realm",
  in: "path",
  required: true,
  description: "A realm id (`default` is the same as the path without the prefix)",
  schema: { type: "string", pattern: REALM_ID.source },
};

const Webhook = z
  .object({
    type: z.enum(["otp", "reset", "welcome", "approval_needed"]),
    channel: z.enum(["sms", "email"]),
    to: z.string().openapi({ description: "An E.164 phone number (sms) or an email address (email)" }),
    realm: z.string(),
    code: z.string().optional().openapi({ description: "The code to deliver (otp, reset, welcome)" }),
    expires_at: z.string().optional().openapi({ format: "date-time" }),
    user_id: z.string().optional().openapi({ description: "approval_needed: the account waiting" }),
    user_email: z.string().nullable().optional().openapi({ format: "email" }),
  })
  .openapi("Notification");

/** Registers the response headers route() refers to, and the notifier's webhook (api.md §8). */
export function registerDocumentParts(app: Pick<OpenAPIHono, "openAPIRegistry">) {
  for (const [name, header] of Object.entries(HEADERS)) {
    app.openAPIRegistry.registerComponent("headers", name, header);
  }
  app.openAPIRegistry.registerWebhook({
    method: "post",
    path: "notification",
    operationId: "notification",
    security: [],
    summary: "A code or notice to deliver, posted to NOTIFY_WEBHOOK_URL",
    description:
      "Signed with NOTIFY_WEBHOOK_SECRET over its time and its exact body, with an id a receiver refuses to see twice (docs/identities.md shows the check). With a queue configured, a post that does not answer 2xx is retried with the same X-Webhook-Id, then dead-lettered.",
    request: {
      headers: z.object({
        "X-Signature": z.string().openapi({
          description: '`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`; refuse posts more than 5 minutes off',
        }),
        "X-Webhook-Id": z
          .string()
          .openapi({ description: "Unique per message (the same on its retries); refuse one seen before" }),
      }),
      body: { required: true, content: { "application/json": { schema: Webhook } } },
    },
    responses: {
      200: { description: "Delivered (any 2xx)" },
      400: {
        description: "Refused by the receiver: a failed delivery (502 delivery_failed, or retried from the queue)",
      },
    },
  });
}

/** The realm-prefixed copy of an operation: the `realm` path parameter and its 404 realm_not_found. */
function inRealm(op: Operation, path: string): Operation {
  const responses = { ...(op.responses ?? {}) };
  const notFound = responses["404"] as { description?: string } | undefined;
  const codes = new Set(
    (notFound?.description ?? "")
      .split(", ")
      .map((c) => c.replace(/`/g, ""))
      .filter(Boolean),
  );
  codes.add("realm_not_found");
  responses["404"] = { ...errorResponse([...codes]), headers: responseHeaders(path, 404) };
  return {
    ...op,
    operationId: `${op.operationId}InRealm`,
    parameters: [RealmParam, ...(op.parameters ?? [])],
    responses,
  };
}

/** Adds servers, the realm-prefixed paths and a sorted path list to the generated document. */
export function finishDocument(doc: Doc, issuer: string | undefined): Doc {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    paths[path] = item as Record<string, unknown>;
    if (!path.startsWith("/v1/") || path.startsWith("/v1/realms")) continue;
    const copy: Record<string, unknown> = {};
    for (const method of METHODS) {
      const op = (item as Record<string, Operation | undefined>)[method];
      if (op) copy[method] = inRealm(op, path);
    }
    paths[`/v1/realms/{realm}${path.slice(3)}`] = copy;
  }
  return {
    ...doc,
    servers: [
      issuer
        ? { url: issuer, description: "This deployment (its ISSUER)" }
        : { url: "/", description: "The server this document came from" },
    ],
    paths: paths as Doc["paths"],
  };
}
