/**
 * `user-registry/client`: typed calls to user-registry's HTTP API (docs/api.md) and `authFetch`,
 * which attaches the access token and, when the registry answers `token_expired`, refreshes once
 * for all concurrent callers (one refresh in flight) and retries. The refresh token is kept in the
 * given storage (memory by default).
 *
 * Uses only the standard fetch API (browsers, React Native, Node ≥ 18, Workers, Deno, Bun); its
 * type declarations need no Workers types.
 */

import { accountCalls } from "./client-account.js";
import { identityCalls } from "./client-identity.js";
import { mfaCalls } from "./client-mfa.js";
import { ACCESS, type ClientOptions, createTransport, type Transport } from "./client-transport.js";

export {
  type ClientOptions,
  type FetchInit,
  type FetchLike,
  type FetchResponse,
  memoryStorage,
  RegistryError,
  type TokenStorage,
} from "./client-transport.js";
export type * from "./client-types.js";

/** The calls on the transport itself: authFetch, refresh and the stored tokens. */
function coreCalls(t: Transport) {
  const { authFetch, refresh, forget, storage, key } = t;
  return {
    authFetch,
    refresh,
    /** The stored access token, if any. */
    accessToken: async () => (await storage.get(key(ACCESS))) ?? null,
    /** Forgets the stored tokens without calling the registry. */
    clear: forget,
  };
}

export type Client = ReturnType<typeof coreCalls> &
  ReturnType<typeof accountCalls> &
  ReturnType<typeof mfaCalls> &
  ReturnType<typeof identityCalls>;

/** Builds a client. Nothing is fetched until the first call. */
export function createClient(options: ClientOptions): Client {
  const t = createTransport(options);
  return { ...coreCalls(t), ...accountCalls(t), ...mfaCalls(t), ...identityCalls(t) };
}
