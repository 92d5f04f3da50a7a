// The security page: the authenticator app (TOTP: enrol, QR code, confirm with a first code, the
// recovery codes shown once; new codes; removal) and passkeys (add with the browser's WebAuthn,
// list, remove). Every call goes to the site's /api/auth/* Function, which adds the session's
// token; these changes need a fresh login (403 fresh_token_required otherwise, docs/api.md §12).
import { api, bindLogout, busy, clearErrors, explain, formatDate, showError } from "/app.js";
import { browserSupportsWebAuthn, startRegistration } from "/vendor/simplewebauthn-browser/index.js";
import { renderSVG } from "/vendor/uqr.js";

bindLogout();

const $ = (id) => document.getElementById(id);

/** An error in one of the page's sections. */
function sectionError(id, error) {
  const el = $(id);
  if (!error) {
    el.hidden = true;
    el.textContent = "";
    return;
  }
  el.textContent = explain(error).message;
  el.hidden = false;
}

// ---- Authenticator app ---------------------------------------------------------------------

function totpState(on) {
  $("totp-off").hidden = on;
  $("totp-on").hidden = !on;
  $("totp-status").textContent = on
    ? "An authenticator app is on: logging in with your password also asks for its code."
    : "With an authenticator app, logging in with your password also asks for a 6-digit code from the app.";
}

function showRecoveryCodes(codes) {
  const list = $("recovery-codes");
  list.replaceChildren(
    ...codes.map((c) => {
      const li = document.createElement("li");
      li.textContent = c;
      return li;
    }),
  );
  $("recovery").hidden = false;
}

/**
 * An authenticator-app button: disabled while its API call runs; `then` gets the answer when it
 * succeeded, or when `handles` says it knows what to do with the failure.
 */
function appButton(id, call, then, handles = () => false) {
  $(id).addEventListener("click", async (event) => {
    const button = event.currentTarget;
    sectionError("totp-error", null);
    button.disabled = true;
    const r = await call();
    button.disabled = false;
    if (!r.ok && !handles(r.error)) return sectionError("totp-error", r.error);
    then(r);
  });
}

appButton(
  "totp-start",
  () => api("POST", "/api/auth/users/me/mfa/totp", {}),
  (r) => {
    if (!r.ok) return loadMfaStatus(); // 409 totp_already_enabled: on elsewhere meanwhile
    const { secret, otpauth_uri } = r.data;
    // The QR code is drawn here, from the otpauth:// URI; it never leaves the page.
    const svg = renderSVG(otpauth_uri, { border: 2 });
    $("totp-qr").src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
    $("totp-secret").textContent = secret.replace(/(.{4})/g, "$1 ").trim();
    $("totp-enrol").hidden = false;
    $("totp-off").hidden = true;
    $("totp-code").focus();
  },
  (error) => error.code === "totp_already_enabled",
);

const confirmForm = $("totp-confirm");
confirmForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(confirmForm);
  const code = confirmForm.code.value.replace(/\s/g, "");
  const r = await busy(confirmForm, () => api("PUT", "/api/auth/users/me/mfa/totp", { code }));
  if (!r.ok) return showError(confirmForm, r.error);
  $("totp-enrol").hidden = true;
  confirmForm.reset();
  totpState(true);
  showRecoveryCodes(r.data.recovery_codes);
  loadMfaStatus();
});

appButton(
  "recovery-new",
  () => api("POST", "/api/auth/users/me/mfa/recovery-codes", {}),
  (r) => {
    showRecoveryCodes(r.data.recovery_codes);
    loadMfaStatus();
  },
);

appButton(
  "totp-remove",
  () => api("DELETE", "/api/auth/users/me/mfa/totp"),
  () => {
    $("recovery").hidden = true;
    totpState(false);
    loadMfaStatus();
  },
);

// ---- Passkeys ------------------------------------------------------------------------------

async function loadPasskeys() {
  const r = await api("GET", "/api/auth/users/me/passkeys");
  if (!r.ok) return sectionError("passkey-error", r.error);
  const template = $("passkey");
  const items = r.data.passkeys.map((p) => {
    const li = template.content.firstElementChild.cloneNode(true);
    li.dataset.id = p.id;
    li.querySelector("[data-field=name]").textContent = p.name ?? "Passkey";
    li.querySelector("[data-field=created_at]").textContent = formatDate(p.created_at);
    li.querySelector("[data-field=last_used_at]").textContent = p.last_used_at ? formatDate(p.last_used_at) : "never";
    li.querySelector("button").addEventListener("click", async (event) => {
      // Kept now: event.currentTarget is null once the handler has awaited.
      const button = event.currentTarget;
      sectionError("passkey-error", null);
      button.disabled = true;
      const d = await api("DELETE", `/api/auth/users/me/passkeys/${encodeURIComponent(p.id)}`);
      if (!d.ok) {
        button.disabled = false;
        return sectionError("passkey-error", d.error);
      }
      loadPasskeys();
    });
    return li;
  });
  $("passkey-list").replaceChildren(...items);
  $("passkey-none").hidden = items.length > 0;
}

const addForm = $("passkey-add");
if (!browserSupportsWebAuthn()) {
  addForm.hidden = true;
  sectionError("passkey-error", { code: "webauthn_unsupported" });
}
addForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(addForm);
  sectionError("passkey-error", null);
  const r = await busy(addForm, async () => {
    const options = await api("POST", "/api/auth/users/me/passkeys/options", {});
    if (!options.ok) return options;
    let response;
    try {
      response = await startRegistration({ optionsJSON: options.data });
    } catch (e) {
      return { ok: false, error: { code: e?.name === "InvalidStateError" ? "passkey_exists" : "webauthn_cancelled" } };
    }
    const name = addForm.name.value.trim();
    return api("POST", "/api/auth/users/me/passkeys", name ? { response, name } : { response });
  });
  if (!r.ok) return showError(addForm, r.error);
  addForm.reset();
  loadPasskeys();
});

// Whether the app is on, from the registry (GET /v1/users/me/mfa), not guessed from how this
// session logged in.
async function loadMfaStatus() {
  const r = await api("GET", "/api/auth/users/me/mfa");
  if (!r.ok) return sectionError("totp-error", r.error);
  totpState(r.data.totp);
  $("recovery-left").textContent = r.data.totp ? `${r.data.recovery_codes_left} of 10 recovery codes left.` : "";
}

loadMfaStatus();
loadPasskeys();
