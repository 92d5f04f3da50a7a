import { api, busy, clearErrors, REASONS, showError } from "/app.js";

const params = new URLSearchParams(location.search);
const notice = document.getElementById("notice");
const reason = REASONS[params.get("reason")];
if (reason) {
  notice.textContent = reason;
  notice.hidden = false;
}

const form = document.getElementById("login");
const email = sessionStorage.getItem("signup-email");
if (email) {
  form.email.value = email;
  sessionStorage.removeItem("signup-email");
  form.password.focus();
}

/** Only a path of this site, never another origin ("//evil.example"). */
function nextPage() {
  const next = params.get("next") ?? "";
  return /^\/[A-Za-z0-9/_-]*$/.test(next) && !next.startsWith("//") ? next : "/profile";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  notice.hidden = true;
  const body = { email: form.email.value.trim(), password: form.password.value };
  const description = form.description.value.trim();
  if (description) body.description = description;
  const r = await busy(form, () => api("POST", "/api/auth/tokens", body, { auth: false }));
  if (!r.ok) return showError(form, r.error);
  location.assign(nextPage());
});

// "Sign in with …" for each provider the site offers (GET /api/providers). The registry sends the
// browser to the provider and back to /oauth with a one-time code; the state proves the round
// trip started in this browser.
async function showProviders() {
  const res = await fetch("/api/providers");
  if (!res.ok) return;
  const { providers } = await res.json();
  const box = document.getElementById("providers");
  for (const p of providers) {
    const link = document.createElement("button");
    link.type = "button";
    link.className = "secondary";
    link.textContent = `Sign in with ${p.label}`;
    link.dataset.provider = p.id;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      const state = crypto.randomUUID();
      sessionStorage.setItem("oauth-state", state);
      const q = new URLSearchParams({ redirect_uri: `${location.origin}/oauth`, state });
      location.assign(`/api/auth/oauth/${encodeURIComponent(p.id)}/authorize?${q}`);
    });
    box.append(link);
  }
  box.hidden = providers.length === 0;
}
showProviders();
