import { api, bindLogout, formatDate, showPageError } from "/app.js";

bindLogout();

function fill(list, values) {
  for (const dd of list.querySelectorAll("[data-field]")) dd.textContent = values[dd.dataset.field] ?? "\u2014";
  list.hidden = false;
}

const [me, session] = await Promise.all([api("GET", "/api/auth/users/me"), api("GET", "/api/app/session")]);
document.getElementById("loading").hidden = true;
if (!me.ok) showPageError(me.error);
else {
  const u = me.data;
  fill(document.getElementById("profile"), {
    full_name: u.full_name,
    email: u.email,
    status: { active: "Active", pending: "Waiting for approval", disabled: "Disabled" }[u.status] ?? u.status,
    roles: (u.roles ?? []).join(", ") || "none",
    created_at: formatDate(u.created_at),
    id: u.id,
  });
}
if (session.ok) {
  const s = session.data;
  fill(document.getElementById("session"), {
    device_id: s.device_id,
    access_expires_at: formatDate(s.access_expires_at),
    fresh: s.fresh ? "Yes, just now" : "No, renewed automatically",
  });
}
