// A consumer for `npm run bench`: each request verifies its bearer token over the AUTH service
// binding (user-registry's AuthService), as a Pages Function or another Worker would. On /floor
// it calls the baseline's Floor entrypoint instead, whose verify() does nothing.
export default {
  async fetch(request, env) {
    const header = request.headers.get("authorization") ?? "";
    const service = new URL(request.url).pathname === "/floor" ? env.FLOOR : env.AUTH;
    const result = await service.verify(header.slice(7));
    return Response.json(result, { status: result.ok ? 200 : 401 });
  },
};
