// Test double for every outbound call of the worker under test (notifier webhook, siteverify).
// It records what it receives; tests read and reset it through /__double/*.
const received = [];
let mode = { webhook: 200, siteverify: "pass" };

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/__double/received") return Response.json(received);
    if (url.pathname === "/__double/reset") {
      received.length = 0;
      mode = { webhook: 200, siteverify: "pass" };
      return Response.json({ ok: true });
    }
    if (url.pathname === "/__double/mode") {
      mode = { ...mode, ...(await request.json()) };
      return Response.json(mode);
    }
    const body = await request.text();
    received.push({
      url: request.url,
      method: request.method,
      headers: Object.fromEntries(request.headers),
      body,
    });
    if (url.hostname === "challenges.cloudflare.com") {
      if (mode.siteverify === "down") return new Response("unavailable", { status: 503 });
      const params = new URLSearchParams(body);
      const ok = mode.siteverify === "pass" && params.get("response") !== "bad-token";
      return Response.json({ success: ok, "error-codes": ok ? [] : ["invalid-input-response"] });
    }
    return new Response(mode.webhook < 300 ? "ok" : "fail", { status: mode.webhook });
  },
};
