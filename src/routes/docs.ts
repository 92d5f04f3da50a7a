/** Renders a browsable API reference from the OpenAPI document, with no script or CDN. */
export function renderDocs(doc: {
  info: { title: string; version: string; description?: string };
  paths?: Record<
    string,
    Record<
      string,
      {
        summary?: string;
        description?: string;
        tags?: string[];
        security?: unknown[];
        requestBody?: unknown;
        responses?: Record<string, { description?: string }>;
      }
    >
  >;
}): string {
  const esc = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
  const rows: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(ops)) {
      const responses = Object.entries(op.responses ?? {})
        .filter(([s]) => s !== "default")
        .map(([s, r]) => `<li><code>${esc(s)}</code> ${esc(r.description ?? "")}</li>`)
        .join("");
      const body = op.requestBody
        ? `<details><summary>Request body schema</summary><pre>${esc(JSON.stringify((op.requestBody as { content?: Record<string, { schema?: unknown }> }).content?.["application/json"]?.schema ?? {}, null, 2))}</pre></details>`
        : "";
      rows.push(
        `<section id="${esc(`${method}-${path}`)}"><h3><span class="m ${esc(method)}">${esc(method.toUpperCase())}</span> <code>${esc(path)}</code>${op.security?.length ? ' <span class="lock">bearer</span>' : ""}</h3><p>${esc(op.summary ?? "")}</p>${op.description ? `<p>${esc(op.description)}</p>` : ""}${body}<ul>${responses}</ul></section>`,
      );
    }
  }
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${esc(doc.info.title)} — API reference</title><style>body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#222}section{border-top:1px solid #ddd;padding:.5rem 0}h3{font-size:1rem;margin:.5rem 0}.m{display:inline-block;min-width:4.5em;font-weight:700}.get{color:#0a7}.post{color:#27c}.put{color:#c80}.patch{color:#a5c}.delete{color:#c33}.lock{font-size:.75rem;background:#eee;border-radius:4px;padding:0 .4em}pre{background:#f6f6f6;padding:.5rem;overflow:auto}</style></head><body><h1>${esc(doc.info.title)} <small>${esc(doc.info.version)}</small></h1><p>${esc(doc.info.description ?? "")}</p><p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>${rows.join("")}</body></html>`;
}
