// The end of "Sign in with …": the registry sent the browser here with ?code=<one-time code>&state=…
// (docs/api.md §13). The state must be the one this browser started with; the code is swapped
// once for a session (the Function keeps the tokens in HttpOnly cookies).
import { api, showError } from "/app.js";

const params = new URLSearchParams(location.search);
const form = document.getElementById("oauth");
const expected = sessionStorage.getItem("oauth-state");
sessionStorage.removeItem("oauth-state");

const MESSAGES = {
  account_exists:
    "An account with this email already exists. Log in with your password, then link this provider from your profile.",
  access_denied: "The sign-in was cancelled.",
  provider_error: "The identity provider could not sign you in. Please try again.",
};

async function finish() {
  const error = params.get("error");
  if (error) return showError(form, { code: error, message: MESSAGES[error] ?? MESSAGES.provider_error });
  if (!expected || params.get("state") !== expected) {
    return showError(form, {
      code: "invalid_state",
      message: "This sign-in was not started here. Please start again.",
    });
  }
  const r = await api("POST", "/api/auth/tokens/oauth", { code: params.get("code") ?? "" }, { auth: false });
  // The account has an authenticator app: the provider was the first step; the login page asks
  // for the code (the Function holds the mfa_token in its cookie).
  if (!r.ok && r.error.code === "mfa_required") return location.replace("/login?step=mfa");
  if (!r.ok) {
    return showError(form, { ...r.error, message: MESSAGES[r.error?.code] ?? r.error?.message });
  }
  location.replace("/profile");
}

finish();
