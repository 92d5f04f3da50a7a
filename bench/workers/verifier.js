// A consumer that verifies tokens in its own isolate with user-registry/verify (docs/api.md §14):
// keys from the JWKS over the AUTH service binding, cached; /revocation also asks AUTH whether
// the token was revoked (answers cached ≤ 5 s). Used by `npm run bench` and test/node/.
import { createVerifier } from "../../src/sdk/verify.ts";

let local;
let checked;

export default {
  async fetch(request, env) {
    const options = { issuer: env.ISSUER, audience: env.AUDIENCE ?? env.ISSUER, jwks: env.AUTH };
    local ??= createVerifier(options);
    checked ??= createVerifier({ ...options, auth: env.AUTH });
    const verifier = new URL(request.url).pathname === "/revocation" ? checked : local;
    const header = request.headers.get("authorization") ?? "";
    const result = await verifier.verify(header.startsWith("Bearer ") ? header.slice(7) : null);
    return Response.json(result, { status: result.ok ? 200 : 401 });
  },
};
