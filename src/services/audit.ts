import type { AppContext } from "../context";
import { clientIp } from "../context";
import { auditEvents } from "../storage/schema";
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
  deps.defer(
    deps.db.insert(auditEvents).values({
      at: new Date(deps.now).toISOString(),
      realm: e.realm,
      type: e.type,
      userId: e.userId ?? null,
      deviceId: e.deviceId ?? null,
      ip: c ? clientIp(c) : null,
      detail: e.detail ?? null,
    }),
  );
}
