import { b64url, fromB64url } from "../crypto/encoding";
import { ApiError } from "../errors";

/**
 * Page cursors (GET /v1/users, GET /v1/audit): the position after a row, as base64url of a JSON
 * pair of strings. Anything else a client sends is 400 validation_failed on `cursor`.
 */
export const encodeCursor = (a: string, b: string) => b64url(new TextEncoder().encode(JSON.stringify([a, b])));

/** The pair of a cursor from a previous page; 400 validation_failed for anything else. */
export function decodeCursor(cursor: string): [string, string] {
  const bytes = fromB64url(cursor);
  try {
    const v = bytes ? JSON.parse(new TextDecoder().decode(bytes)) : null;
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === "string" && typeof v[1] === "string") return [v[0], v[1]];
  } catch {
    // fall through
  }
  throw badCursor();
}

export const badCursor = () =>
  new ApiError("validation_failed", undefined, { fields: { cursor: "is not a cursor from a previous page" } });
