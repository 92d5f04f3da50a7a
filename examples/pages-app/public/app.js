// Shared by every page: calls to the site's own /api (never to user-registry directly), the CSRF
// header, sending the user to the login page when the session is over, and API errors in plain words.

const CSRF_COOKIE = "__Host-ur_csrf";

/**
 * Codes after which the session in this browser is over: the user is sent to the login page.
 * The same list as SESSION_OVER in lib/session.ts: this file is served as it is, with no build
 * step, so it cannot import that module. Change both together.
 */
const SESSION_OVER = new Set([
  "missing_token",
  "invalid_token",
  "token_expired",
  "token_revoked",
  "session_revoked",
  "refresh_token_reused",
  "user_not_found",
  "account_disabled",
  "account_pending",
]);

const MESSAGES = {
  invalid_credentials: "That email and password don't match an account. Check them and try again.",
  user_exists: "There is already an account with this email. Log in instead.",
  validation_failed: "Some of the details need another look.",
  domain_not_allowed: "Accounts with this email domain can't be created here.",
  registration_closed: "New accounts can't be created at the moment.",
  account_pending: "Your account is waiting for approval. You can log in once it has been activated.",
  account_disabled: "This account has been disabled. Contact the administrator if you think this is a mistake.",
  user_not_found: "This account no longer exists.",
  too_many_attempts: "Too many attempts. Please wait a moment and try again.",
  captcha_failed: "The \u201cI'm not a robot\u201d check failed. Please try again.",
  captcha_unavailable: "Sign-up is temporarily unavailable. Please try again later.",
  missing_token: "Please log in to continue.",
  token_expired: "Your session has expired. Please log in again.",
  invalid_token: "Your session is no longer valid. Please log in again.",
  token_revoked: "You were logged out of this device. Please log in again.",
  session_revoked: "You were logged out of this device. Please log in again.",
  refresh_token_reused:
    "For your safety this session was ended, because its sign-in was used twice. Please log in again.",
  fresh_token_required: "For this, please log in again first.",
  forbidden: "You are not allowed to do this.",
  not_found: "That no longer exists. It may have been removed already.",
  csrf_failed: "This page has gone stale. Reload it and try again.",
  payload_too_large: "That is more text than we can take. Please shorten it.",
  network_error: "We can't reach the server. Check your connection and try again.",
  config_invalid: "The sign-in service isn't set up correctly yet. Please try again later.",
  invalid_otp: "That code didn't work. Check the app (or the recovery code) and try again.",
  invalid_code: "That code didn't work. Enter the code the app shows now.",
  totp_not_enabled: "Start setting up the authenticator app again.",
  passkeys_unavailable: "Passkeys aren't available on this site yet.",
  invalid_passkey: "That passkey couldn't be added. Please try again.",
  passkey_exists: "This device already holds a passkey for your account.",
  webauthn_cancelled: "The passkey request was cancelled or timed out.",
  webauthn_unsupported: "This browser doesn't support passkeys.",
  // The registry answers invalid_credentials both for a passkey it does not know and for one that
  // cannot sign in on its own (no user verification on an account with an authenticator app).
  invalid_passkey_login:
    "That passkey could not be used to sign in here. Log in with your password; you can add a passkey on the Security page.",
};
const FALLBACK = "Something went wrong on our side. Please try again.";

/** Field problems, by field, in plain words (the API's own field messages are for developers). */
const FIELD_MESSAGES = {
  email: "Enter a valid email address, like name@example.com.",
  password: "Use a password of 8 to 128 characters.",
  password_confirmation: "The two passwords don't match.",
  full_name: "Enter your name.",
  phone_number: "Enter the phone number in international format, like +14155550123.",
  description: "Use a shorter device name.",
  code: "Enter the 6-digit code from your app.",
  recovery_code: "Enter one of your recovery codes.",
  name: "Use a shorter name.",
};
const FIELD_LABELS = {
  full_name: "name",
  password_confirmation: "password confirmation",
  phone_number: "phone number",
};

/** Notices shown on the login page for ?reason=... */
export const REASONS = {
  signed_up: "Your account is ready. Log in to continue.",
  logged_out: "You have logged out.",
  ...Object.fromEntries([...SESSION_OVER].filter((c) => c !== "missing_token").map((c) => [c, MESSAGES[c]])),
};

function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

/** Sends the browser to the login page, coming back to this page afterwards. */
export function toLogin(reason) {
  const q = new URLSearchParams({ next: location.pathname });
  if (reason && reason !== "missing_token") q.set("reason", reason);
  location.assign(`/login?${q}`);
}

/**
 * Calls the site's API. Resolves to {ok: true, data} or {ok: false, error}; when the session
 * turns out to be over (and `auth` is true) it sends the browser to the login page instead.
 */
export async function api(method, path, body, { auth = true } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") headers["x-csrf-token"] = readCookie(CSRF_COOKIE);
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    return { ok: false, error: { code: "network_error" } };
  }
  let data = null;
  if (res.status !== 204) {
    try {
      data = await res.json();
    } catch {
      data = null;
    }
  }
  if (res.ok) return { ok: true, status: res.status, data };
  const error = { code: "internal_error", ...(data?.error ?? {}), retryAfter: res.headers.get("retry-after") };
  if (auth && SESSION_OVER.has(error.code)) {
    toLogin(error.code);
    return new Promise(() => {}); // the page is going away
  }
  return { ok: false, status: res.status, error };
}

/** An API error as a sentence, plus one sentence per field it names. */
export function explain(error) {
  let message = MESSAGES[error.code] ?? FALLBACK;
  if (error.code === "too_many_attempts" && Number(error.retryAfter) > 0) {
    const s = Number(error.retryAfter);
    const wait = s < 90 ? `${s} seconds` : `${Math.ceil(s / 60)} minutes`;
    message = `Too many attempts. Please wait ${wait} and try again.`;
  }
  const fields = {};
  for (const name of Object.keys(error.fields ?? {})) {
    fields[name] = FIELD_MESSAGES[name] ?? `Check the ${FIELD_LABELS[name] ?? name.replaceAll("_", " ")}.`;
  }
  return { message, fields };
}

/** Shows an API error on a form: a summary at the top, and each field's problem under it. */
export function showError(form, error) {
  clearErrors(form);
  const { message, fields } = explain(error);
  const alert = form.querySelector("[role=alert]");
  const unplaced = [];
  for (const [name, text] of Object.entries(fields)) {
    const input = form.elements.namedItem(name);
    const slot = form.querySelector(`[data-error-for="${name}"]`);
    if (input && slot) {
      input.setAttribute("aria-invalid", "true");
      slot.textContent = text;
    } else {
      unplaced.push(text);
    }
  }
  alert.textContent = [message, ...unplaced].join(" ");
  alert.hidden = false;
  (form.querySelector("[aria-invalid=true]") ?? alert).focus?.();
}

export function clearErrors(form) {
  const alert = form.querySelector("[role=alert]");
  alert.hidden = true;
  alert.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll("[data-error-for]")) el.textContent = "";
}

/** Disables a form's button while `work` runs. */
export async function busy(form, work) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    return await work();
  } finally {
    button.disabled = false;
  }
}

/** An error that belongs to no form, in the page's notice area. */
export function showPageError(error) {
  const el = document.getElementById("page-error");
  el.textContent = explain(error).message;
  el.hidden = false;
}

export function formatDate(iso) {
  if (!iso) return "\u2014";
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
}

/** The "Log out" button of the signed-in pages. */
export function bindLogout() {
  const button = document.getElementById("logout");
  button?.addEventListener("click", async () => {
    button.disabled = true;
    const r = await api("POST", "/api/auth/logout", {}, { auth: false });
    if (r.ok || r.status === 401) location.assign("/login?reason=logged_out");
    else {
      button.disabled = false;
      showPageError(r.error);
    }
  });
}
