import { OpenAPIHono, z } from "@hono/zod-openapi";
import * as oauth from "oauth4webapi";
import type { ProviderIdentity } from "../auth-methods/oidc";
import { authorizationServer, fetchOptions, providerById, verifyIdToken } from "../auth-methods/oidc";
import { federatedLogin } from "../auth-methods/oidc-login";
import type { AppEnv } from "../context";
import { randomString } from "../crypto/random";
import { ApiError } from "../errors";
import { deps } from "../middleware/auth";
import { publicDevice } from "../middleware/device";
import { Description, DeviceIdInput, TokenPairSchema } from "../schemas";
import type { Deps } from "../services/deps";
import { putRecord, takeRecord } from "../storage/identities";
import { json, jsonBody, noAuth, optionalAuth, route } from "./define";

/** Identity providers (docs/api.md §13): the native and web sign-in flows and linked identities. */

const STATE_TTL_MS = 10 * 60 * 1000;

/** What both federated sign-ins may answer once the person is known (docs/api.md §12, §13). */
const SIGN_IN_ERRORS = [
  "mfa_required",
  "account_exists",
  "account_pending",
  "account_disabled",
  "email_unverified",
  "domain_not_allowed",
  "registration_closed",
  "realm_not_found",
  "user_not_found",
] as const;
const CODE_TTL_MS = 60 * 1000;

export const ProviderId = z.string().min(1).max(32).openapi({ description: "The id of a provider of OIDC_PROVIDERS" });
export const IdToken = z.string().min(1).max(16_384);
export const Nonce = z
  .string()
  .min(1)
  .max(512)
  .openapi({ description: "The nonce the app gave the provider: the token's nonce must equal it or its SHA-256 hex" });

const OidcLoginBody = z
  .object({
    provider: ProviderId,
    id_token: IdToken,
    nonce: Nonce.optional(),
    name: z
      .string()
      .trim()
      .min(1)
      .max(200)
      .optional()
      .openapi({ description: "For a new account (Apple sends the name to the app only)" }),
    device_id: DeviceIdInput,
    description: Description.optional(),
  })
  .openapi("OidcLogin");

const OauthCodeBody = z
  .object({ code: z.string().min(1).max(128), device_id: DeviceIdInput, description: Description.optional() })
  .openapi("OauthCode");

export const FederatedTokenPair = TokenPairSchema.extend({
  created: z.boolean().openapi({ description: "A new account was made by this sign-in" }),
}).openapi("FederatedTokenPair");

/** The callback this service registers with providers: `<ISSUER>[/v1/realms/{realm}]/v1/oauth/{provider}/callback`. */
function callbackUrl(d: Deps, realm: string, provider: string): string {
  const base = d.config.ISSUER.replace(/\/+$/, "");
  return `${base}/v1${realm === "default" ? "" : `/realms/${encodeURIComponent(realm)}`}/oauth/${provider}/callback`;
}

export const oauthRoutes = new OpenAPIHono<AppEnv>()
  .openapi(
    route({
      method: "post",
      path: "/v1/tokens/oidc",
      limit: "RL_LOGIN",
      operationId: "oidcLogin",
      errors: ["provider_unavailable", ...SIGN_IN_ERRORS],
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      tags: ["tokens"],
      summary: "Sign in with an identity provider's ID token (native apps)",
      description:
        "The ID token must be signed by a key of the provider's JWKS, with its iss, an aud among its client_ids and an unexpired exp; with `nonce`, its nonce claim equals it or its SHA-256 hex digest (used once). Otherwise 401 invalid_token. A known identity signs in; a provider-verified email equal to a verified account's links to it; an account whose address is unverified on either side is 409 account_exists (nothing linked); else a new account (`source: oidc`).",
      request: jsonBody(OidcLoginBody),
      responses: { 200: json("Tokens for this device", FederatedTokenPair) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const d = await deps(c);
      const realm = c.get("realm");
      const p = providerById(d, body.provider);
      const ident = await verifyIdToken(d, realm, p, body.id_token, body.nonce);
      return c.json(await federatedLogin(d, c.get("realm"), c.get("deviceId"), ident, body), 200);
    },
  )
  .openapi(
    route({
      method: "get",
      path: "/v1/oauth/{provider}/authorize",
      operationId: "oauthAuthorize",
      errors: ["provider_unavailable"],
      security: noAuth,
      tags: ["tokens"],
      summary: "Start a web sign-in with an identity provider",
      description:
        "Redirects to the provider (authorization code with PKCE; state and nonce kept here for 10 minutes). `redirect_uri` must be listed in OAUTH_REDIRECT_URIS; `state` is handed back to it unchanged.",
      request: {
        params: z.object({ provider: ProviderId }),
        query: z.object({ redirect_uri: z.string().min(1).max(2048), state: z.string().max(512).optional() }),
      },
      responses: { 302: { description: "To the provider's authorization endpoint" } },
    }),
    async (c) => {
      const { provider } = c.req.valid("param");
      const { redirect_uri, state: appState } = c.req.valid("query");
      const d = await deps(c);
      const realm = c.get("realm");
      const p = providerById(d, provider);
      if (!d.config.OAUTH_REDIRECT_URIS.includes(redirect_uri)) {
        throw new ApiError("validation_failed", "This redirect_uri is not allowed", {
          fields: { redirect_uri: "is not listed in OAUTH_REDIRECT_URIS" },
        });
      }
      const as = await authorizationServer(p);
      if (!as.authorization_endpoint) throw new ApiError("provider_unavailable");
      const state = oauth.generateRandomState();
      const nonce = oauth.generateRandomNonce();
      const verifier = oauth.generateRandomCodeVerifier();
      await putRecord(
        d.db,
        "state",
        state,
        realm,
        { provider, redirect_uri, app_state: appState ?? null, verifier, nonce },
        d.now + STATE_TTL_MS,
        d.now,
      );
      const url = new URL(as.authorization_endpoint);
      url.searchParams.set("client_id", p.client_ids[0] as string);
      url.searchParams.set("response_type", "code");
      url.searchParams.set("scope", "openid email profile");
      url.searchParams.set("redirect_uri", callbackUrl(d, realm, provider));
      url.searchParams.set("state", state);
      url.searchParams.set("nonce", nonce);
      url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(verifier));
      url.searchParams.set("code_challenge_method", "S256");
      c.header("Cache-Control", "no-store");
      return c.redirect(url.href, 302);
    },
  )
  .openapi(
    route({
      method: "get",
      path: "/v1/oauth/{provider}/callback",
      operationId: "oauthCallback",
      errors: ["invalid_state"],
      security: noAuth,
      tags: ["tokens"],
      summary: "The provider's redirect back (register this URL with the provider)",
      description:
        "Spends the state (unknown, spent, expired or of another provider: 400 invalid_state), exchanges the code at the provider's token endpoint with the PKCE verifier, checks the ID token, then redirects to the app's redirect_uri with `?code=<one-time code>&state=…` (60 s, single use; swap it with POST /v1/tokens/oauth), or `?error=access_denied|provider_error&state=…`.",
      request: {
        params: z.object({ provider: ProviderId }),
        query: z.object({
          state: z.string().max(512).optional(),
          code: z.string().max(4096).optional(),
          error: z.string().max(256).optional(),
        }),
      },
      responses: { 302: { description: "To the app's redirect_uri" } },
    }),
    async (c) => {
      const { provider } = c.req.valid("param");
      const q = c.req.valid("query");
      const d = await deps(c);
      const realm = c.get("realm");
      const p = providerById(d, provider);
      const rec = q.state ? await takeRecord(d.db, "state", q.state, realm, d.now) : null;
      if (!rec || rec.provider !== provider) throw new ApiError("invalid_state");
      const back = new URL(String(rec.redirect_uri));
      const finish = (params: Record<string, string>) => {
        for (const [k, v] of Object.entries(params)) back.searchParams.set(k, v);
        if (typeof rec.app_state === "string") back.searchParams.set("state", rec.app_state);
        c.header("Cache-Control", "no-store");
        return c.redirect(back.href, 302);
      };
      if (q.error !== undefined || q.code === undefined) {
        return finish({ error: q.error === "access_denied" ? "access_denied" : "provider_error" });
      }
      const redirectUri = callbackUrl(d, realm, provider);
      let idToken: string;
      try {
        const as = await authorizationServer(p);
        const client: oauth.Client = { client_id: p.client_ids[0] as string };
        const secret = d.config.OIDC_CLIENT_SECRETS[provider];
        const clientAuth = secret ? oauth.ClientSecretPost(secret) : oauth.None();
        const params = oauth.validateAuthResponse(as, client, new URL(c.req.url).searchParams, q.state as string);
        const res = await oauth.authorizationCodeGrantRequest(
          as,
          client,
          clientAuth,
          params,
          redirectUri,
          String(rec.verifier),
          fetchOptions(String(as.token_endpoint)),
        );
        const tokens = await oauth.processAuthorizationCodeResponse(as, client, res, {
          expectedNonce: String(rec.nonce),
          requireIdToken: true,
        });
        idToken = tokens.id_token as string;
      } catch (e) {
        console.error(JSON.stringify({ level: "error", provider, message: "code exchange failed", error: String(e) }));
        return finish({ error: "provider_error" });
      }
      let ident: ProviderIdentity;
      try {
        // The same checks as the native flow (signature, iss, aud, exp, nonce), with our nonce.
        ident = await verifyIdToken(d, realm, p, idToken, String(rec.nonce));
      } catch {
        return finish({ error: "provider_error" });
      }
      const code = randomString(32);
      await putRecord(d.db, "code", code, realm, { ident }, d.now + CODE_TTL_MS, d.now);
      return finish({ code });
    },
  )
  .openapi(
    route({
      method: "post",
      path: "/v1/tokens/oauth",
      limit: "RL_LOGIN",
      operationId: "oauthLogin",
      errors: ["invalid_code", ...SIGN_IN_ERRORS],
      security: optionalAuth,
      middleware: [publicDevice()] as const,
      tags: ["tokens"],
      summary: "Swap the one-time code of a web sign-in for tokens",
      description: "The code of the redirect (60 s, single use); unknown, spent or expired: 400 invalid_code.",
      request: jsonBody(OauthCodeBody),
      responses: { 200: json("Tokens for this device", FederatedTokenPair) },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const d = await deps(c);
      const rec = await takeRecord(d.db, "code", body.code, c.get("realm"), d.now);
      if (!rec) throw new ApiError("invalid_code");
      return c.json(
        await federatedLogin(d, c.get("realm"), c.get("deviceId"), rec.ident as ProviderIdentity, body),
        200,
      );
    },
  );
