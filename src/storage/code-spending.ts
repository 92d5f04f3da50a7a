// Spending a code and undoing a send: writes conditional on the hash a row holds, so each acts
// once however many callers race (split from codes.ts, which issues and checks codes).
import { and, eq, sql } from "drizzle-orm";
import { iso } from "../time";
import { type CodeRef, MAX_CODE_ATTEMPTS, refWhere } from "./codes";
import type { Db } from "./db";
import { verificationCodes } from "./schema";

/** What `issueCode` replaced, so a send that was never delivered can be undone (see `revertIssue`). */
export type IssuedOver = Pick<
  typeof verificationCodes.$inferSelect,
  "codeHash" | "attempts" | "expiresAt" | "sentAt"
> | null;

/** Stored in place of a hash once a code is spent or withdrawn; no HMAC hex string can equal it. */
const NO_CODE = "-";

/**
 * Uses up a code but keeps its row (unlike `consumeCode`), so the send throttle and the per-day
 * counter of the subject survive a successful use. Conditional on the hash still being the one
 * checked: true for exactly one of several concurrent callers.
 */
export async function spendCode(db: Db, ref: CodeRef, codeHash: string): Promise<boolean> {
  const t = verificationCodes;
  const rows = await db
    .update(t)
    .set({ codeHash: NO_CODE, attempts: MAX_CODE_ATTEMPTS })
    .where(and(refWhere(ref), eq(t.codeHash, codeHash)))
    .returning({ subject: t.subject });
  return rows.length > 0;
}

/**
 * Gives back a code `spendCode` used up when the step it was spent on failed to reach a store
 * (nothing was decided, and the client is told to try again): the code works again, with one try
 * left. Only acts while the row is still spent (a newer code wins).
 */
export async function unspendCode(db: Db, ref: CodeRef, codeHash: string): Promise<void> {
  const t = verificationCodes;
  await db
    .update(t)
    .set({ codeHash, attempts: MAX_CODE_ATTEMPTS - 1 })
    .where(and(refWhere(ref), eq(t.codeHash, NO_CODE)));
}

/**
 * Undoes an `issueCode` whose code was never delivered: the row gets back the code, expiry and
 * send time it had before (`previous`; none: no usable code and no send time), so the undelivered
 * code stops working and the resend throttle does not count a send that did not happen. Tries
 * spent meanwhile are added to the restored code's, and the per-day counter is kept. Only acts
 * while the row still holds `issuedHash` (a later send or a use wins).
 */
export async function revertIssue(db: Db, ref: CodeRef, issuedHash: string, previous: IssuedOver): Promise<boolean> {
  const t = verificationCodes;
  const epoch = iso(0);
  const rows = await db
    .update(t)
    .set({
      codeHash: previous?.codeHash ?? NO_CODE,
      attempts: previous ? sql`MIN(${MAX_CODE_ATTEMPTS}, ${previous.attempts} + ${t.attempts})` : MAX_CODE_ATTEMPTS,
      expiresAt: previous?.expiresAt ?? epoch,
      sentAt: previous?.sentAt ?? epoch,
    })
    .where(and(refWhere(ref), eq(t.codeHash, issuedHash)))
    .returning({ subject: t.subject });
  return rows.length > 0;
}
