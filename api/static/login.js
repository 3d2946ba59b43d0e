/* Sign-in: posts JSON to the API (which sets the session cookie), then goes where the user was headed. */
"use strict";

(function () {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");

  function nextUrl() {
    const next = new URLSearchParams(location.search).get("next") || "/";
    // only paths of this site: never an absolute or protocol-relative URL
    return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    try {
      await api("/api/v1/auth/login", {
        method: "POST",
        body: { username: form.username.value.trim(), password: form.password.value },
      });
      location.href = nextUrl();
    } catch (e) {
      error.textContent = e.status === 429 ? t("login.limited") : t("login.failed");
      error.hidden = false;
      form.password.value = "";
      form.password.focus();
    }
  });
})();
