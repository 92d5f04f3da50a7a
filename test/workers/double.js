// Test double for every outbound call of the worker under test (notifier webhook, siteverify).
// Test files run in parallel against this one instance, so its behaviour depends only on each
// request, never on shared switches:
// - a webhook host starting with "fail." answers 500, any other webhook host 200;
// - siteverify rejects the captcha token "bad-token", answers 503 for "down-token", passes others.
// It records what it receives; tests read it through /__double/received and pick their own
// requests by something unique in them.
const received = [];
// Messages of the test notification queue: this worker is that queue's consumer in the tests.
const queued = [];

// A fake OpenID provider at https://idp.test (docs/api.md §13): its own RSA key pair, discovery,
// JWKS, an authorization endpoint that consents at once (the test, acting as the browser, picks the
// account with ?sub=&email=&email_verified=), a token endpoint that checks the client secret,
// redirect URI and PKCE verifier, and /__idp/sign, which signs any claims with the provider's key.
const IDP = "https://idp.test";
let idpKeys;
const idpCodes = new Map();
const b64url = (bytes) =>
  btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
const b64json = (v) => b64url(new TextEncoder().encode(JSON.stringify(v)));

function keys() {
  idpKeys ??= (async () => {
    const pair = await crypto.subtle.generateKey(
      { name: "RSASSA-PKCS1-v1_5", modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      true,
      ["sign", "verify"],
    );
    const { kty, n, e } = await crypto.subtle.exportKey("jwk", pair.publicKey);
    return { pair, jwk: { kty, n, e, kid: "idp-1", alg: "RS256", use: "sig" } };
  })();
  return idpKeys;
}

async function idpSign(claims, header = {}) {
  const { pair } = await keys();
  const input = `${b64json({ alg: "RS256", kid: "idp-1", typ: "JWT", ...header })}.${b64json(claims)}`;
  const sig = await crypto.subtle.sign("RSASSA-PKCS1-v1_5", pair.privateKey, new TextEncoder().encode(input));
  return `${input}.${b64url(sig)}`;
}

async function idp(request, url, body) {
  const now = Math.floor(Date.now() / 1000);
  switch (url.pathname) {
    case "/.well-known/openid-configuration":
      return Response.json({
        issuer: IDP,
        authorization_endpoint: `${IDP}/authorize`,
        token_endpoint: `${IDP}/token`,
        jwks_uri: `${IDP}/jwks`,
        response_types_supported: ["code"],
        subject_types_supported: ["public"],
        id_token_signing_alg_values_supported: ["RS256"],
        code_challenge_methods_supported: ["S256"],
      });
    case "/jwks":
      return Response.json({ keys: [(await keys()).jwk] });
    case "/__idp/sign": {
      const { claims, header } = JSON.parse(body);
      return Response.json({ token: await idpSign(claims, header) });
    }
    case "/authorize": {
      const q = url.searchParams;
      const code = crypto.randomUUID();
      idpCodes.set(code, {
        client_id: q.get("client_id"),
        redirect_uri: q.get("redirect_uri"),
        challenge: q.get("code_challenge"),
        nonce: q.get("nonce"),
        iss: q.get("iss") ?? IDP,
        sub: q.get("sub") ?? crypto.randomUUID(),
        email: q.get("email"),
        email_verified: q.get("email_verified") !== "false",
      });
      const back = new URL(q.get("redirect_uri"));
      back.searchParams.set("code", code);
      if (q.get("state") !== null) back.searchParams.set("state", q.get("state"));
      return new Response(null, { status: 302, headers: { Location: back.href } });
    }
    case "/token": {
      const form = new URLSearchParams(body);
      const grant = idpCodes.get(form.get("code"));
      idpCodes.delete(form.get("code"));
      const basic = (request.headers.get("authorization") ?? "").replace(/^Basic /, "");
      const [id, secret] = basic
        ? atob(basic).split(":").map(decodeURIComponent)
        : [form.get("client_id"), form.get("client_secret")];
      const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(form.get("code_verifier") ?? ""));
      const bad = (error) => Response.json({ error }, { status: 400 });
      if (!grant) return bad("invalid_grant");
      if (id !== grant.client_id || secret !== "fake-client-secret")
        return Response.json({ error: "invalid_client" }, { status: 401 });
      if (form.get("redirect_uri") !== grant.redirect_uri) return bad("invalid_grant");
      if (b64url(digest) !== grant.challenge) return bad("invalid_grant");
      const claims = {
        iss: grant.iss,
        aud: grant.client_id,
        sub: grant.sub,
        iat: now,
        exp: now + 300,
        nonce: grant.nonce ?? undefined,
      };
      if (grant.email) Object.assign(claims, { email: grant.email, email_verified: grant.email_verified });
      return Response.json({
        access_token: crypto.randomUUID(),
        token_type: "Bearer",
        expires_in: 300,
        id_token: await idpSign(claims),
      });
    }
  }
  return new Response("not found", { status: 404 });
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.hostname === "idp.test") {
      const body = request.method === "GET" ? "" : await request.text();
      received.push({
        url: request.url,
        method: request.method,
        headers: Object.fromEntries(request.headers),
        body: "",
      });
      return idp(request, url, body);
    }
    if (url.pathname === "/__double/received") return Response.json(received);
    if (url.pathname === "/__double/queued") return Response.json(queued);
    const body = await request.text();
    received.push({ url: request.url, method: request.method, headers: Object.fromEntries(request.headers), body });
    if (received.length > 5000) received.splice(0, 1000);
    if (url.hostname === "challenges.cloudflare.com") {
      const token = new URLSearchParams(body).get("response");
      if (token === "down-token") return new Response("unavailable", { status: 503 });
      const ok = token !== "bad-token";
      return Response.json({ success: ok, "error-codes": ok ? [] : ["invalid-input-response"] });
    }
    if (url.hostname.startsWith("fail.")) return new Response("fail", { status: 500 });
    return new Response("ok", { status: 200 });
  },
  async queue(batch) {
    for (const msg of batch.messages) {
      queued.push({ queue: batch.queue, id: msg.id, attempts: msg.attempts, body: msg.body });
      msg.ack();
    }
  },
};
