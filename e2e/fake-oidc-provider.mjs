// A small OpenID provider for the e2e test: a Node http server on 127.0.0.1 with its own ES256
// key pair. It serves a discovery document, its JWKS, an authorization endpoint that shows a
// consent page with one button (for a fixed test user), and a token endpoint that checks the
// client secret, the PKCE code_verifier and the redirect_uri before it answers an ID token
// carrying the nonce of the authorization request. Codes work once and for 60 seconds.
//
// The registry trusts it through OIDC_PROVIDERS (issuer = this server; its endpoints found by
// discovery), OIDC_CLIENT_SECRETS and OAUTH_REDIRECT_URIS (docs/identity-providers.md).
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:http";
import { exportJWK, generateKeyPair, SignJWT } from "jose";

const CODE_TTL_MS = 60_000;

const html = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const s256 = (verifier) => createHash("sha256").update(verifier).digest("base64url");

/**
 * Starts the provider. `redirectUri` is the one callback registered for `clientId` (the
 * registry's `<ISSUER>/v1/oauth/<provider>/callback`); it may be given later with `register()`.
 *
 * @param {{clientId: string, clientSecret: string, user: {sub: string, email: string, name: string}}} o
 */
export async function startFakeProvider({ clientId, clientSecret, user }) {
  const { publicKey, privateKey } = await generateKeyPair("ES256");
  const jwk = { ...(await exportJWK(publicKey)), kid: "e2e-1", alg: "ES256", use: "sig" };
  /** Pending authorization codes: code → {redirectUri, nonce, challenge, expires}. */
  const codes = new Map();
  /** What the token endpoint refused, and how many ID tokens it gave (for the test's assertions). */
  const seen = { refused: [], issued: 0, consents: 0 };
  let redirectUri = null;
  let issuer = "";

  const send = (res, status, body, headers = {}) => {
    const json = typeof body !== "string";
    res.writeHead(status, {
      "content-type": json ? "application/json" : "text/html; charset=utf-8",
      "cache-control": "no-store",
      ...headers,
    });
    res.end(json ? JSON.stringify(body) : body);
  };
  const tokenError = (res, status, error, why) => {
    seen.refused.push(why);
    send(res, status, { error, error_description: why });
  };

  const readBody = (req) =>
    new Promise((resolve, reject) => {
      let data = "";
      req.setEncoding("utf8");
      req.on("data", (chunk) => {
        data += chunk;
        if (data.length > 64 * 1024) reject(new Error("body too large"));
      });
      req.on("end", () => resolve(data));
      req.on("error", reject);
    });

  /** The authorization request, checked as a provider would before showing any page. */
  function checkAuthorization(q) {
    if (q.get("client_id") !== clientId) return "unknown client_id";
    if (q.get("redirect_uri") !== redirectUri) return "redirect_uri is not registered for this client";
    if (q.get("response_type") !== "code") return "response_type must be code";
    if (!(q.get("scope") ?? "").split(" ").includes("openid")) return "scope must include openid";
    if (q.get("code_challenge_method") !== "S256" || !q.get("code_challenge")) return "PKCE (S256) is required";
    if (!q.get("nonce")) return "nonce is required";
    return null;
  }

  async function handle(req, res) {
    const url = new URL(req.url, issuer);
    if (req.method === "GET" && url.pathname === "/.well-known/openid-configuration") {
      return send(res, 200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ["code"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["ES256"],
        code_challenge_methods_supported: ["S256"],
        token_endpoint_auth_methods_supported: ["client_secret_post", "client_secret_basic"],
        scopes_supported: ["openid", "email", "profile"],
      });
    }
    if (req.method === "GET" && url.pathname === "/jwks") return send(res, 200, { keys: [jwk] });

    if (req.method === "GET" && url.pathname === "/authorize") {
      const problem = checkAuthorization(url.searchParams);
      if (problem) return send(res, 400, `<!doctype html><title>Error</title><p id="error">${html(problem)}</p>`);
      const hidden = [...url.searchParams]
        .map(([k, v]) => `<input type="hidden" name="${html(k)}" value="${html(v)}">`)
        .join("");
      return send(
        res,
        200,
        `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test ID · Sign in</title>
<style>body{font-family:system-ui,sans-serif;background:#eef1f6;margin:0}main{max-width:26rem;margin:4rem auto;
background:#fff;padding:2rem;border-radius:12px;box-shadow:0 2px 10px #0002}h1{font-size:1.3rem}
button{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:8px;background:#0b7a55;color:#fff;cursor:pointer}
.who{background:#f4f6f9;padding:.8rem;border-radius:8px}</style></head><body><main>
<h1>Test ID</h1><p>The <strong>User Registry example</strong> wants to know who you are.</p>
<p class="who">Signed in as <strong id="name">${html(user.name)}</strong><br><span id="email">${html(user.email)}</span></p>
<form method="post" action="/authorize">${hidden}<button id="approve" type="submit">Continue as ${html(user.name)}</button></form>
</main></body></html>`,
      );
    }

    if (req.method === "POST" && url.pathname === "/authorize") {
      const q = new URLSearchParams(await readBody(req));
      const problem = checkAuthorization(q);
      if (problem) return send(res, 400, `<!doctype html><title>Error</title><p id="error">${html(problem)}</p>`);
      seen.consents++;
      const code = randomBytes(24).toString("base64url");
      codes.set(code, {
        redirectUri: q.get("redirect_uri"),
        nonce: q.get("nonce"),
        challenge: q.get("code_challenge"),
        expires: Date.now() + CODE_TTL_MS,
      });
      const back = new URL(q.get("redirect_uri"));
      back.searchParams.set("code", code);
      if (q.get("state") !== null) back.searchParams.set("state", q.get("state"));
      return send(res, 302, "", { location: back.href });
    }

    if (req.method === "POST" && url.pathname === "/token") {
      const form = new URLSearchParams(await readBody(req));
      // client_secret_post, or client_secret_basic.
      let id = form.get("client_id");
      let secret = form.get("client_secret");
      const basic = /^Basic (.+)$/i.exec(req.headers.authorization ?? "");
      if (basic) {
        const [u, p] = Buffer.from(basic[1], "base64").toString("utf8").split(":");
        id = decodeURIComponent(u ?? "");
        secret = decodeURIComponent(p ?? "");
      }
      if (id !== clientId || secret !== clientSecret) return tokenError(res, 401, "invalid_client", "client secret");
      if (form.get("grant_type") !== "authorization_code") {
        return tokenError(res, 400, "unsupported_grant_type", "grant_type");
      }
      const grant = codes.get(form.get("code") ?? "");
      codes.delete(form.get("code") ?? "");
      if (!grant || grant.expires < Date.now()) return tokenError(res, 400, "invalid_grant", "unknown or spent code");
      if (form.get("redirect_uri") !== grant.redirectUri) return tokenError(res, 400, "invalid_grant", "redirect_uri");
      if (s256(form.get("code_verifier") ?? "") !== grant.challenge) {
        return tokenError(res, 400, "invalid_grant", "code_verifier");
      }
      const now = Math.floor(Date.now() / 1000);
      const idToken = await new SignJWT({
        email: user.email,
        email_verified: true,
        name: user.name,
        nonce: grant.nonce,
        auth_time: now,
      })
        .setProtectedHeader({ alg: "ES256", kid: jwk.kid, typ: "JWT" })
        .setIssuer(issuer)
        .setSubject(user.sub)
        .setAudience(clientId)
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(privateKey);
      seen.issued++;
      return send(res, 200, {
        access_token: randomBytes(24).toString("base64url"),
        token_type: "Bearer",
        expires_in: 300,
        scope: "openid email profile",
        id_token: idToken,
      });
    }
    send(res, 404, { error: "not_found" });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((e) => send(res, 500, { error: "server_error", error_description: String(e) }));
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  issuer = `http://127.0.0.1:${server.address().port}`;
  return {
    issuer,
    seen,
    /** The callback this client may send browsers back to. */
    register: (uri) => {
      redirectUri = uri;
    },
    stop: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
