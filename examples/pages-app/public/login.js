import { api, busy, clearErrors, REASONS, showError } from "/app.js";
import { browserSupportsWebAuthn, startAuthentication } from "/vendor/simplewebauthn-browser/index.js";

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
  if (!r.ok && r.error.code === "mfa_required") return askSecondFactor();
  if (!r.ok) return showError(form, r.error);
  location.assign(nextPage());
});

// The second step (docs/api.md §12): the password was right and the account has an authenticator
// app. The Function keeps the first step's mfa_token in an HttpOnly cookie and adds it to
// POST /api/auth/tokens/mfa; the page sends only the code (or a recovery code).
const mfa = document.getElementById("mfa");
let useRecovery = false;

function askSecondFactor() {
  form.hidden = true;
  mfa.hidden = false;
  mfa.code.focus();
}

// After "Sign in with …" for an account with an authenticator app (public/oauth.js).
if (params.get("step") === "mfa") askSecondFactor();

document.getElementById("mfa-switch").addEventListener("click", (event) => {
  useRecovery = !useRecovery;
  clearErrors(mfa);
  document.getElementById("mfa-app").hidden = useRecovery;
  document.getElementById("mfa-recovery").hidden = !useRecovery;
  document.getElementById("mfa-hint").textContent = useRecovery
    ? "Enter one of the recovery codes you saved when you set up the app. Each works once."
    : "Enter the 6-digit code from your authenticator app.";
  event.currentTarget.textContent = useRecovery ? "Use the app's code instead" : "Use a recovery code instead";
  (useRecovery ? mfa.recovery_code : mfa.code).focus();
});

mfa.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(mfa);
  const body = useRecovery
    ? { recovery_code: mfa.recovery_code.value.trim() }
    : { code: mfa.code.value.replace(/\s/g, "") };
  const r = await busy(mfa, () => api("POST", "/api/auth/tokens/mfa", body, { auth: false }));
  if (r.ok) return location.assign(nextPage());
  if (r.error.code === "invalid_token") {
    // The first step expired (5 minutes) or ran out of tries: start again with the password.
    mfa.hidden = true;
    form.hidden = false;
    form.password.value = "";
    return showError(form, { code: "token_expired" });
  }
  showError(mfa, r.error);
});

// "Sign in with a passkey": a discoverable credential, so no email is asked for.
const passkeyButton = document.getElementById("passkey-login");
if (!browserSupportsWebAuthn()) document.getElementById("passkey-box").hidden = true;
passkeyButton.addEventListener("click", async () => {
  clearErrors(form);
  notice.hidden = true;
  passkeyButton.disabled = true;
  try {
    const options = await api("POST", "/api/auth/tokens/passkey/options", {}, { auth: false });
    if (!options.ok) return showError(form, options.error);
    let response;
    try {
      response = await startAuthentication({ optionsJSON: options.data });
    } catch {
      return showError(form, { code: "webauthn_cancelled" });
    }
    const body = { response };
    const description = form.description.value.trim();
    if (description) body.description = description;
    const r = await api("POST", "/api/auth/tokens/passkey", body, { auth: false });
    if (r.ok) return location.assign(nextPage());
    showError(form, r.error.code === "invalid_credentials" ? { code: "invalid_passkey_login" } : r.error);
  } finally {
    passkeyButton.disabled = false;
  }
});

// "Sign in with …" for each provider the site offers (GET /api/providers). The registry sends the
// browser to the provider and back to /oauth with a one-time code; the state (in a cookie of
// this browser) proves the round trip started here.
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
      // The site's Function adds the state (and its cookie); functions/oauth.ts checks it on the way back.
      const q = new URLSearchParams({ redirect_uri: `${location.origin}/oauth` });
      location.assign(`/api/auth/oauth/${encodeURIComponent(p.id)}/authorize?${q}`);
    });
    box.append(link);
  }
  box.hidden = providers.length === 0;
}
showProviders();
