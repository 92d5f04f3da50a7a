/** Who acts: an admin of the realm, or the holder of an authority token for one email domain. */
export type Principal = { kind: "admin"; userId: string } | { kind: "authority"; domain: string; tokenId: string };
