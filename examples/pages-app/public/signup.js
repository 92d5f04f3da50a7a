import { api, busy, clearErrors, showError } from "/app.js";

const form = document.getElementById("signup");
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearErrors(form);
  const body = {
    full_name: form.full_name.value.trim(),
    email: form.email.value.trim(),
    password: form.password.value,
    password_confirmation: form.password_confirmation.value,
  };
  const r = await busy(form, () => api("POST", "/api/auth/users", body, { auth: false }));
  if (!r.ok) return showError(form, r.error);
  sessionStorage.setItem("signup-email", body.email);
  location.assign("/login?reason=signed_up");
});
