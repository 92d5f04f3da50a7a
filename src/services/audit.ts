import type { AppContext } from "../context";
import { clientIp } from "../context";
import { auditEvents } from "../storage/schema";
import { iso } from "../time";
import type { Deps } from "./deps";

export interface AuditEvent {
  type: string;
  realm: string;
  userId?: string | null;
  deviceId?: string | null;
  /** Reasons and flags only: never a password, token, code or hash. */
  detail?: Record<string, unknown>;
}

/** Records a security event in D1 after the response is sent; a failed write is logged, never fatal. */
export function audit(deps: Deps, c: AppContext | null, e: AuditEvent): void {
  const ip = c ? clientIp(c) : null;
  // The same event as a log line, for log-based alerting; holds what the audit row holds.
  console.log(
    JSON.stringify({
      level: "info",
      event: "security",
      type: e.type,
      request_id: c?.get("requestId") ?? null,
      realm: e.realm,
      user_id: e.userId ?? null,
      device_id: e.deviceId ?? null,
      ip,
      detail: e.detail ?? null,
    }),
  );
  deps.defer(
    deps.db.insert(auditEvents).values({
      at: iso(deps.now),
      realm: e.realm,
      type: e.type,
      userId: e.userId ?? null,
      deviceId: e.deviceId ?? null,
      ip,
      detail: e.detail ?? null,
    }),
  );
}
