// /v1/oauth/{provider}/callback: the identity provider sends the browser back here when the
// registry's ISSUER is this site's origin (as in local runs, where the registry has no address
// of its own). The request goes to the registry over the AUTH binding as it is; its redirect (to
// this site's /oauth page, with a one-time code) goes back to the browser.
import { API_ORIGIN, type Env, errorResponse } from "../../../lib/auth";

export const onRequestGet: PagesFunction<Env> = async ({ request, env }) => {
  const url = new URL(request.url);
  if (!/^\/v1\/oauth\/[a-z0-9][a-z0-9_-]{0,31}\/callback$/.test(url.pathname)) {
    return errorResponse(404, "not_found", "Not found");
  }
  const res = await env.AUTH.fetch(new Request(`${API_ORIGIN}${url.pathname}${url.search}`, { redirect: "manual" }));
  const headers = new Headers({ "cache-control": "no-store" });
  for (const name of ["content-type", "location", "x-request-id"]) {
    const v = res.headers.get(name);
    if (v) headers.set(name, v);
  }
  return new Response(res.body, { status: res.status, headers });
};
