import { type AuditInsert, type AuditRow, insertAuditEvent, listAuditEvents } from "../storage/audit";
import { badCursor, decodeCursor, encodeCursor } from "../storage/cursor";
import { iso } from "../time";
import type { Deps } from "./deps";
import { retryInPlace } from "./retry";

/**
 * Who acted (docs/api.md §15): a signed-in user (`id` their user id), an admin of the realm, an
 * authority token's holder (`id` the token's id), or the service itself. A request without any
 * token is a `user` whose `id` is the account only once a credential proved it (a login, a
 * completed reset), else null: a failed login names the account in `user_id`, never as its actor.
 */
export type Actor = { kind: "user" | "admin" | "authority" | "system"; id: string | null };

export interface AuditEvent {
  type: string;
  realm: string;
  userId?: string | null;
  deviceId?: string | null;
  /** Reasons and flags only: never a password, token, code or hash. */
  detail?: Record<string, unknown>;
  /** Who acted; by default the request's principal (admin route), else its token's user, else an anonymous user. */
  actor?: Actor;
}

/** Where an event comes from: the request's IP and id, and who acted (the service itself outside a request). */
export interface AuditOrigin {
  ip: string | null;
  requestId: string | null;
  actor: Actor;
}

/** The origin of events recorded outside a request (RPC, the scheduled cleanup, tests). */
export const SYSTEM_ORIGIN: AuditOrigin = { ip: null, requestId: null, actor: { kind: "system", id: null } };

/** The actor of a request whose credential (password, code) just proved the account. */
export const selfActor = (userId: string): Actor => ({ kind: "user", id: userId });

/** An event made ready: its D1 row, and its log line (written once the change it records is). */
export interface AuditEntry {
  row: AuditInsert;
  log: () => void;
}

/** The row and log line of an event, from the origin of the request that records it. */
export function auditEntry(now: number, origin: AuditOrigin, e: AuditEvent): AuditEntry {
  const ip = origin.ip;
  const actor = e.actor ?? origin.actor;
  return {
    row: {
      at: iso(now),
      realm: e.realm,
      type: e.type,
      userId: e.userId ?? null,
      deviceId: e.deviceId ?? null,
      ip,
      detail: e.detail ?? null,
      actorKind: actor.kind,
      actorId: actor.id,
    },
    // The same event as a log line, for log-based alerting; holds what the audit row holds.
    log: () =>
      console.log(
        JSON.stringify({
          level: "info",
          event: "security",
          type: e.type,
          request_id: origin.requestId,
          realm: e.realm,
          user_id: e.userId ?? null,
          actor,
          device_id: e.deviceId ?? null,
          ip,
          detail: e.detail ?? null,
        }),
      ),
  };
}

/**
 * Records a security event whose change has no batch to join (docs/reliability.md, "Audit
 * rows"): written after the response, retried in place, and logged as lost if it still fails.
 * Called through `deps.audit(event)`, which knows the request's origin. A change written in one
 * D1 batch takes its row into that batch instead (`deps.auditEntry`).
 */
export function recordAudit(deps: Deps, origin: AuditOrigin, e: AuditEvent): void {
  const entry = auditEntry(deps.now, origin, e);
  entry.log();
  deps.defer(
    retryInPlace(() => insertAuditEvent(deps.db, entry.row)).catch((err) => {
      console.error(JSON.stringify({ level: "error", event: "audit_row_lost", type: e.type, error: String(err) }));
    }),
  );
}

/** An audit event as GET /v1/audit returns it. */
export function toAuditEvent(r: AuditRow) {
  return {
    id: String(r.id),
    at: r.at,
    type: r.type,
    realm: r.realm,
    user_id: r.userId,
    actor: { kind: r.actorKind, id: r.actorId },
    device_id: r.deviceId,
    ip: r.ip,
    detail: r.detail ?? null,
  };
}

export interface AuditQuery {
  limit: number;
  cursor?: string;
  user_id?: string;
  type?: string;
  since?: string;
}

/** GET /v1/audit: a page of the realm's events, newest first, and the next page's cursor (null at the end). */
export async function listAudit(deps: Deps, realm: string, q: AuditQuery) {
  let after: { at: string; id: number } | undefined;
  if (q.cursor) {
    const [at, id] = decodeCursor(q.cursor);
    if (!/^[1-9]\d{0,15}$/.test(id)) throw badCursor();
    after = { at, id: Number(id) };
  }
  const rows = await listAuditEvents(deps.db, {
    realm,
    userId: q.user_id,
    type: q.type,
    since: q.since,
    after,
    limit: q.limit + 1,
  });
  const page = rows.slice(0, q.limit);
  const last = page[page.length - 1];
  return {
    events: page.map(toAuditEvent),
    next_cursor: rows.length > q.limit && last ? encodeCursor(last.at, String(last.id)) : null,
  };
}
