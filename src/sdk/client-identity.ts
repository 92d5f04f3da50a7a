// Typed calls of `user-registry/client`: identity providers (docs/api.md §13).
import type { Transport } from "./client-transport.js";
import type { FederatedTokenPair, Identity, OauthLoginInput, OidcLoginInput } from "./client-types.js";

/** 32 random bytes, base64url: an OAuth `state`. */
function randomState(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

/** Identity providers: ID-token and web sign-in, linked identities. */
export function identityCalls(t: Transport) {
  const { authed, signIn, url } = t;
  const enc = encodeURIComponent;
  return {
    // Identity providers (docs/api.md §13).
    /** Signs in with a provider's ID token (native apps). */
    oidcLogin: (input: OidcLoginInput) => signIn<FederatedTokenPair>("/v1/tokens/oidc", input),
    /**
     * Where to send the browser to start a web sign-in (`GET /v1/oauth/{provider}/authorize`); the
     * registry comes back to `redirectUri` (listed in its OAUTH_REDIRECT_URIS) with `?code&state`.
     * `state` is a new random value unless one is given. Keep it where only this browser or app
     * can read it (sessionStorage, an HttpOnly cookie) and, on the return, call `oauthLogin` only
     * when the returned `state` equals it: otherwise someone else's code could be swapped here,
     * signing this browser into their account (login CSRF).
     */
    oauthAuthorizeUrl: (provider: string, redirectUri: string, state: string = randomState()) => {
      const q = new URLSearchParams({ redirect_uri: redirectUri, state });
      return { url: url(`/v1/oauth/${enc(provider)}/authorize?${q}`), state };
    },
    /** Swaps the one-time code of the web flow for a session. */
    oauthLogin: (input: OauthLoginInput) => signIn<FederatedTokenPair>("/v1/tokens/oauth", input),
    identities: () => authed<{ identities: Identity[] }>("GET", "/v1/users/me/identities"),
    /** Links a provider's identity to this account (fresh access token). */
    linkIdentity: (input: { provider: string; id_token: string; nonce?: string }) =>
      authed<Identity>("POST", "/v1/users/me/identities", input),
    /** `409 last_credential` when it is the account's only way in. */
    unlinkIdentity: (provider: string) => authed<void>("DELETE", `/v1/users/me/identities/${enc(provider)}`),
  };
}
