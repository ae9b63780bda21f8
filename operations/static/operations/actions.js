// The operator's buttons (run now, retry now, stop a run, enable/disable, retry failed items):
// each is a form.action-form that posts JSON to its data-url (the API, with the CSRF token), its
// body from data-json plus a "reason" field when the form has one. The answer's message goes in
// the form's status; an error in its alert. data-reload: reload the page after it worked (the
// message is kept across the reload). No build step, no dependencies.
"use strict";

(function () {
  const FLASH = "operations-flash";
  const token = () => (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";

  async function explain(response) {
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    const error = body && body.error ? body.error : null;
    if (response.status === 400 && error) {
      const fields = Object.entries(error.fields || {});
      return fields.length ? fields.map(([f, m]) => `${f === "body" ? "" : f + ": "}${[].concat(m).join(" ")}`).join(" ") : error.message;
    }
    if (response.status === 401) return "You are not logged in any more: reload the page and log in.";
    if (response.status === 403) return error ? `Not allowed: ${error.message}` : "Not allowed.";
    if (response.status === 429) return `Too many requests; try again in ${response.headers.get("Retry-After") || "a few"} seconds.`;
    if (response.status >= 500) return `The server failed (HTTP ${response.status}); the error is in the server log.`;
    return (error && error.message) || `Unexpected answer (HTTP ${response.status}).`;
  }

  async function submit(form) {
    const status = form.querySelector(".form-status");
    const alert = form.querySelector(".form-error");
    alert.hidden = true;
    const body = JSON.parse(form.dataset.json || "{}");
    const reason = form.querySelector("[name=reason]");
    if (reason && reason.value.trim()) body.reason = reason.value.trim();
    status.textContent = "…";
    let response;
    try {
      response = await fetch(form.dataset.url, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token() },
        body: JSON.stringify(body),
      });
    } catch (err) {
      status.textContent = "";
      alert.textContent = "Could not reach the server; nothing was changed. Try again.";
      alert.hidden = false;
      return;
    }
    if (!response.ok) {
      status.textContent = "";
      alert.textContent = await explain(response);
      alert.hidden = false;
      return;
    }
    const answer = await response.json();
    status.textContent = answer.message;
    if (form.dataset.reload) {
      sessionStorage.setItem(FLASH, answer.message);
      window.location.reload();
    } else if (window.operationsPage) {
      window.operationsPage.refresh();
    }
  }

  for (const form of document.querySelectorAll("form.action-form")) {
    form.addEventListener("submit", (e) => { e.preventDefault(); submit(form); });
  }
  const flash = sessionStorage.getItem(FLASH);
  if (flash) {
    sessionStorage.removeItem(FLASH);
    const box = document.createElement("p");
    box.className = "flash";
    box.setAttribute("role", "status");
    box.textContent = flash;
    const main = document.querySelector("main");
    if (main) main.prepend(box);
  }
  window.operationsActions = { submit };
})();
