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

export default {
  async fetch(request) {
    const url = new URL(request.url);
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
