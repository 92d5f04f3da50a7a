import { api, bindLogout, formatDate, showPageError } from "/app.js";

bindLogout();

const list = document.getElementById("devices");
const template = document.getElementById("device");
const errorBox = document.getElementById("page-error");

async function load() {
  const r = await api("GET", "/api/auth/devices");
  document.getElementById("loading").hidden = true;
  if (!r.ok) return showPageError(r.error);
  errorBox.hidden = true;
  const devices = [...r.data.devices].sort((a, b) => Number(b.current) - Number(a.current));
  list.replaceChildren(...devices.map(render));
}

function render(device) {
  const item = template.content.firstElementChild.cloneNode(true);
  item.dataset.deviceId = device.device_id;
  if (device.current) item.classList.add("current");
  item.querySelector("[data-field=description]").textContent = device.description || "Unnamed device";
  item.querySelector(".badge").hidden = !device.current;
  item.querySelector("[data-field=created_at]").textContent = formatDate(device.created_at);
  item.querySelector("[data-field=last_seen_at]").textContent = formatDate(device.last_seen_at);
  const button = item.querySelector("button");
  button.addEventListener("click", async () => {
    button.disabled = true;
    const r = await api("DELETE", `/api/auth/devices/${encodeURIComponent(device.device_id)}`);
    if (device.current && (r.ok || r.status === 404)) return location.assign("/login?reason=logged_out");
    if (!r.ok && r.error.code !== "not_found") {
      button.disabled = false;
      return showPageError(r.error);
    }
    await load();
  });
  return item;
}

document.getElementById("reload").addEventListener("click", load);
await load();
