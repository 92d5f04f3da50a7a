// A second worker that reaches user-registry only through its service binding (docs/api.md §7).
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/verify") {
      const { token, options } = await request.json();
      return Response.json(await env.AUTH.verify(token, options));
    }
    if (url.pathname === "/user") {
      return Response.json(
        await env.AUTH.getUser(url.searchParams.get("id"), url.searchParams.get("realm") ?? undefined),
      );
    }
    if (url.pathname.startsWith("/api/auth/")) {
      const target = new URL(url.pathname.slice("/api/auth".length) + url.search, "https://user-registry.internal");
      return env.AUTH.fetch(new Request(target, request));
    }
    return new Response("not found", { status: 404 });
  },
};
