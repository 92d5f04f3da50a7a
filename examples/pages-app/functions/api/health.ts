// GET /api/health: is user-registry reachable over the AUTH binding? (Used by run.mjs and the e2e test.)
import { API_ORIGIN, type Env } from "../../lib/auth";

export const onRequestGet: PagesFunction<Env> = async ({ env }) => {
  try {
    const res = await env.AUTH.fetch(new Request(`${API_ORIGIN}/health`));
    return Response.json({ auth: res.status === 200 ? "ok" : `status ${res.status}` }, { status: res.status });
  } catch (e) {
    return Response.json({ auth: `unreachable: ${(e as Error).message}` }, { status: 503 });
  }
};
