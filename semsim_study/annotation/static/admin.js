"use strict";
// The status page's sign-in: the admin token goes to /api/admin/session (an HttpOnly cookie
// comes back), then the page reloads and the server renders the tables. A link /admin#token=...
// signs in once; the fragment never reaches the server's logs.

async function adminSignIn(token) {
  const resp = await fetch("/api/admin/session", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({token}),
    credentials: "same-origin",
  });
  if (resp.ok) {
    window.location.replace("/admin");
    return;
  }
  const body = await resp.json().catch(() => ({}));
  document.getElementById("admin-error").textContent = body.error || `refused (${resp.status})`;
}

document.addEventListener("DOMContentLoaded", () => {
  const match = /^#token=([A-Za-z0-9_-]{16,128})$/.exec(window.location.hash);
  if (match) history.replaceState(null, "", window.location.pathname);
  const form = document.getElementById("admin-form");
  if (!form) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    adminSignIn(document.getElementById("admin-token").value);
  });
  if (match) adminSignIn(match[1]);
});
