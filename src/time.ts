/** Milliseconds in a day. */
export const DAY_MS = 86_400_000;

/** A time in milliseconds as the ISO-8601 UTC text every stored timestamp uses (it sorts as text). */
export const iso = (ms: number) => new Date(ms).toISOString();
