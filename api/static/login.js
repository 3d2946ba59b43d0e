/* Sign-in: posts JSON to the API (which sets the session cookie), then goes where the user was headed. */
"use strict";

(function () {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");

  function nextUrl() {
    // Only a page of this site may follow sign-in. Resolve `next` as the browser will and compare
    // origins: checking the string misses what the URL parser drops or rewrites ("/\t/evil.example"
    // passes a "starts with one slash" test and then goes to //evil.example).
    const next = new URLSearchParams(location.search).get("next") || "/";
    let url;
    try {
      url = new URL(next, location.origin);
    } catch (e) {
      return "/";
    }
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
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
