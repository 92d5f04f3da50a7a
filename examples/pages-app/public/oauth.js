// The end of "Sign in with …". functions/oauth.ts handles the registry's return (?code=…&state=…:
// the state checked against its cookie, the one-time code swapped for a session on the server)
// and sends the browser here: ?signed_in=1 goes on to the profile (a navigation this page starts,
// so the SameSite=Strict session cookies go with it), ?error=<code> is explained.
const params = new URLSearchParams(location.search);
const form = document.getElementById("oauth");
// Nothing of the round trip stays in the address bar or the history.
history.replaceState(null, "", "/oauth");

const MESSAGES = {
  account_exists:
    "An account with this email already exists. Log in with your password, then link this provider from your profile.",
  access_denied: "The sign-in was cancelled.",
  invalid_state: "This sign-in was not started here. Please start again.",
  invalid_code: "This sign-in link has been used or has expired. Please start again.",
  provider_error: "The identity provider could not sign you in. Please try again.",
};

if (params.get("signed_in") === "1") {
  location.replace("/profile");
} else {
  // Not showError: its messages are the API's, by code, and would call invalid_code a wrong
  // authenticator-app code and everything else here "something went wrong on our side".
  const alert = form.querySelector("[role=alert]");
  alert.textContent = MESSAGES[params.get("error")] ?? MESSAGES.provider_error;
  alert.hidden = false;
  alert.focus();
}
