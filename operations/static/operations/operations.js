// The /operations page: refreshes itself from the snapshot API and toggles bursts through the
// burst API (the same endpoints scripts use). No build step, no dependencies.
// Times are shown in the operator's zone (data-zone, Asia/Jerusalem by default) whatever the
// browser's zone, on a 24-hour clock, with the zone's abbreviation, exactly as drains/clock.py
// says them: "Sat 18:00 IST" within six days of now, else "Sat 2026-12-05 18:00 IST". The picker
// (a date, an hour 00-23 and a minute) is read as that zone's wall time and sent as ISO 8601
// with that zone's offset on that date; a wall time that does not exist (the hour skipped when
// the clocks go forward) is refused here with a message, never moved silently.
"use strict";

(function () {
  const REFRESH_MS = 15000;
  const root = document.getElementById("operations");
  if (!root) return;
  const ZONE = root.dataset.zone || "Asia/Jerusalem";
  const ABBREVIATIONS = JSON.parse(root.dataset.zoneAbbreviations || "{}");
  const NEAR_MS = 6 * 24 * 3600 * 1000;
  const MESSAGE_CLIP = 300; // as operations/runs.py MESSAGE_CLIP: the event's page has it all
  const ACTOR_CLIP = 40;
  function clip(text, n) { return text.length > n ? text.slice(0, n - 1) + "…" : text; }
  const csrfToken = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const canChange = root.dataset.canChange === "true";
  let lastSnapshot = null;

  // --- time ---------------------------------------------------------------------------------
  const partsFormat = new Intl.DateTimeFormat("en-GB", {
    timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit", weekday: "short",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
  });

  function zoneParts(date) {
    const out = {};
    for (const p of partsFormat.formatToParts(date)) out[p.type] = p.value;
    return out;
  }
  function pad(n) { return String(n).padStart(2, "0"); }
  function abbreviation(date) {
    const offset = offsetMinutes(date.getTime());
    if (ABBREVIATIONS[offset]) return ABBREVIATIONS[offset];
    const sign = offset >= 0 ? "+" : "-";
    return `UTC${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  }
  function long(iso) { // "Sat 2026-12-05 18:00 IST" (drains/clock.py format_local)
    if (!iso) return "—";
    const d = new Date(iso);
    const p = zoneParts(d);
    return `${p.weekday} ${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute} ${abbreviation(d)}`;
  }
  function short(iso) { // "Sat 18:00 IST" within six days of now, else long (clock.short_time)
    if (!iso) return "—";
    const d = new Date(iso);
    if (Math.abs(d.getTime() - Date.now()) > NEAR_MS) return long(iso);
    const p = zoneParts(d);
    return `${p.weekday} ${p.hour}:${p.minute} ${abbreviation(d)}`;
  }
  function pickerValue(iso) { // the zone's wall time: {date: "2026-12-05", hour: "18", minute: "00"}
    const p = zoneParts(new Date(iso));
    return { date: `${p.year}-${p.month}-${p.day}`, hour: p.hour, minute: p.minute };
  }
  function offsetMinutes(utcMs) {
    const p = zoneParts(new Date(utcMs));
    const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
    return Math.round((asUtc - Math.floor(utcMs / 1000) * 1000) / 60000);
  }
  // "2026-12-05T18:00" (Asia/Jerusalem wall time) -> "2026-12-05T18:00:00+02:00"; null when
  // the text is not a wall time; {gap: true} when that wall time does not exist in the zone.
  function wallTimeToIso(value) {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})$/.exec(value);
    if (!m) return null;
    const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
    let offset = offsetMinutes(wall);
    offset = offsetMinutes(wall - offset * 60000); // once more: the offset at that instant
    const back = zoneParts(new Date(wall - offset * 60000));
    if (`${back.year}-${back.month}-${back.day}T${back.hour}:${back.minute}` !== value) {
      return { gap: true };
    }
    const sign = offset >= 0 ? "+" : "-";
    const abs = Math.abs(offset);
    return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:00${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
  }
  function age(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 90) return `${seconds} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${Math.round(seconds / 3600)} h`;
  }

  // --- rendering ----------------------------------------------------------------------------
  function setText(scope, field, text) {
    const el = scope.querySelector(`[data-f="${field}"]`);
    if (el && el.textContent !== text) el.textContent = text;
    return el;
  }
  function fillList(list, items, line, emptyText) {
    list.replaceChildren();
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = emptyText;
      list.appendChild(li);
      return;
    }
    for (const item of items) {
      const li = document.createElement("li");
      li.textContent = line(item);
      list.appendChild(li);
    }
  }
  function runLink(cell, r, text) { // "run 12" links to the run's page
    cell.replaceChildren();
    if (!r) { cell.textContent = text; return; }
    const a = document.createElement("a");
    a.href = r.url;
    a.textContent = `run ${r.id}`;
    cell.append(a, " ", text);
  }
  function runText(r) {
    if (!r) return "—";
    const of = r.backlog_at_start ? ` of ${r.backlog_at_start}` : "";
    const pct = r.progress !== null ? ` (${Math.round(r.progress * 100)}%)` : "";
    return `on ${r.host} · ${r.items_done}${of} done${pct}${modelText(r)} · checkpoint ${age(r.checkpoint_age_seconds)} ago`;
  }
  function modelText(r) {
    return r.models && r.models.length ? ` · model ${r.models.join(", ")}` : "";
  }
  function lastRunText(r) {
    if (!r) return "never";
    const kind = r.error_kind ? `${r.error_kind} error: ` : "";
    const error = r.error ? `: ${kind}${r.error.slice(0, 160)}` : "";
    return `${r.status} ${short(r.finished_at || r.started_at)}${modelText(r)}${error}`;
  }

  function renderService(s, weekBoundary) {
    const body = root.querySelector(`tbody[data-service="${CSS.escape(s.name)}"]`);
    if (!body) return false;
    const state = setText(body, "state", s.state);
    state.className = `state state-${s.state}`;
    const summary = root.querySelector(`[data-summary="${CSS.escape(s.name)}"]`);
    if (summary) { summary.textContent = s.state; summary.className = `state state-${s.state}`; }
    setText(body, "reason", s.reason);
    const burstCell = body.querySelector('[data-f="burst"]');
    if (burstCell) {
      burstCell.replaceChildren(s.kind !== "drain" ? "—" : s.burst_active ? `on until ${short(s.burst_until)}` : "off");
      if (s.burst_active && s.enabled === false) { // a burst on a disabled drain runs nothing
        const notice = document.createElement("span");
        notice.className = "burst-notice";
        notice.textContent = root.dataset.disabledBurstNotice;
        burstCell.append(" ", notice);
      }
    }
    runLink(body.querySelector('[data-f="run"]'), s.current_run, runText(s.current_run));
    const b = s.backlog;
    const oldest = b && b.oldest_pending_at ? ` · oldest pending since ${short(b.oldest_pending_at)}` : "";
    setText(body, "backlog", b ? `${b.pending} pending · ${b.staged} staged · ${b.done} done · ${b.failed} failed${oldest}` : "—");
    setText(body, "backoff", s.backoff
      ? `${s.backoff.kind_label ? s.backoff.kind_label + " · " : ""}until ${short(s.backoff.until)}: ${s.backoff.reason}`
      : "—");
    setText(body, "next", short(s.next_fire_at));
    runLink(body.querySelector('[data-f="last"]'), s.last_run, lastRunText(s.last_run));
    fillList(body.querySelector('[data-f="notes"]'), s.notes, (n) => `${short(n.at)} ${clip(n.message, MESSAGE_CLIP)}`, "none");
    if (s.projection) {
      setText(body, "projection", s.projection.text);
      setText(body, "rate", `(${s.projection.rate_text})`);
      const img = body.querySelector("img.chart");
      img.src = root.dataset.chartUrl.replace("__NAME__", encodeURIComponent(s.name)) + `?t=${Date.now()}`;
    }
    const actions = body.querySelector(".actions");
    if (actions && canChange) {
      // Each button is enabled only when its action can apply; the disabled one says why.
      const runNow = actions.querySelector("form.run-now button");
      const whyNot = s.why_not_run_now || ""; // the snapshot asks drains/operator.py's rule
      runNow.disabled = Boolean(whyNot);
      runNow.title = whyNot;
      if (whyNot) runNow.setAttribute("aria-describedby", `run-now-why-${s.name}`);
      else runNow.removeAttribute("aria-describedby");
      setText(actions, "run-now-why", whyNot);
      const retry = actions.querySelector("form.retry-now button");
      retry.disabled = !s.backoff;
      retry.title = s.backoff ? "" : "no backoff to clear";
      setText(actions, "retry-now-why", s.backoff ? "" : "no backoff to clear");
      const enabled = actions.querySelector("form.enabled");
      enabled.dataset.json = JSON.stringify({ enabled: s.enabled === false });
      enabled.querySelector("button").textContent = s.enabled === false ? "Enable" : "Disable";
      const stop = actions.querySelector("form.stop-run");
      const run = s.current_run;
      stop.dataset.url = run ? stop.dataset.urlTemplate.replace("/0/", `/${run.id}/`) : "";
      stop.querySelector("button").disabled = !run;
      stop.querySelector("button").title = run ? "" : "no run to stop";
      setText(actions, "stop-why", run ? "" : "no run to stop");
      if (s.backlog) setText(actions, "failed-link", `${s.backlog.failed} failed item${s.backlog.failed === 1 ? "" : "s"}`);
    }
    const form = body.querySelector("form.burst-form");
    if (form && canChange) {
      // Stop applies only to a burst that is on; the disabled button says why.
      const off = form.querySelector("button.off");
      off.disabled = !s.burst_active;
      off.title = s.burst_active ? "" : root.dataset.noBurstToStop;
      setText(form, "off-why", s.burst_active ? "" : root.dataset.noBurstToStop);
    }
    if (form) {
      const { date, hour, minute } = form.elements;
      if (!form.dataset.touched && !form.contains(document.activeElement)) {
        const value = pickerValue(s.burst_active ? s.burst_until : weekBoundary);
        date.value = value.date;
        hour.value = value.hour;
        minute.value = value.minute;
      }
      // The picker offers no day before today and none after the week boundary.
      date.min = pickerValue(new Date().toISOString()).date;
      date.max = pickerValue(weekBoundary).date;
    }
    return true;
  }

  function render(snapshot) {
    lastSnapshot = snapshot;
    const known = new Set([...root.querySelectorAll("tbody[data-service]")].map((b) => b.dataset.service));
    const names = new Set(snapshot.services.map((s) => s.name));
    if (known.size !== names.size || [...names].some((n) => !known.has(n))) {
      window.location.reload(); // the set of services changed (a deploy): re-render on the server
      return;
    }
    for (const s of snapshot.services) renderService(s, snapshot.week_boundary);
    const generated = document.getElementById("generated-at");
    generated.textContent = long(snapshot.generated_at);
    generated.dateTime = snapshot.generated_at;
    const boundary = document.getElementById("week-boundary");
    boundary.textContent = long(snapshot.week_boundary);
    boundary.dateTime = snapshot.week_boundary;
    root.dispatchEvent(new CustomEvent("snapshot", { detail: snapshot })); // quota.js listens
    fillList(document.getElementById("usage"), snapshot.usage,
      (u) => `${u.quota_key || "(no quota key)"}: ${u.text}`, "no extractor runs this week");
    fillList(document.getElementById("global-notes"), snapshot.notes, (n) => `${short(n.at)} ${n.drain}: ${clip(n.message, MESSAGE_CLIP)}`, "none");
    const timeline = document.getElementById("timeline");
    fillList(timeline, snapshot.timeline,
      (e) => `${long(e.at)} ${e.drain} ${e.kind} by ${clip(e.actor, ACTOR_CLIP)}: ${clip(e.message, MESSAGE_CLIP)}`, "no events yet");
    snapshot.timeline.forEach((e, i) => { // a clipped event links to its whole text
      if (e.message.length > MESSAGE_CLIP || e.actor.length > ACTOR_CLIP) {
        const a = document.createElement("a");
        a.href = e.url;
        a.textContent = "whole event";
        timeline.children[i].append(" ", a);
      }
    });
  }

  // --- talking to the API -------------------------------------------------------------------
  // Every failure becomes one sentence an operator can act on.
  async function explain(response) {
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    // Every API error is {"error": {"code", "message", "fields"}} (operations/errors.py).
    const error = body && typeof body === "object" && body.error ? body.error : null;
    if (response.status === 400 && error) {
      const fields = Object.entries(error.fields || {});
      if (!fields.length) return error.message;
      return fields.map(([field, msgs]) =>
        (field === "until" || field === "non_field_errors" || field === "body" ? "" : `${field}: `) + [].concat(msgs).join(" ")).join(" ");
    }
    if (response.status === 401) return "You are not logged in any more: reload the page and log in.";
    if (response.status === 403) return error ? `Not allowed: ${error.message}` : "Not allowed.";
    if (response.status === 404) return (error && error.message) || "No such drain.";
    if (response.status === 429) {
      const wait = response.headers.get("Retry-After");
      return `Too many requests; try again in ${wait || "a few"} seconds.`;
    }
    if (response.status >= 500) return `The server failed (HTTP ${response.status}); the error is in the server log. Try again in a minute.`;
    return (error && error.message) || `Unexpected answer from the server (HTTP ${response.status}).`;
  }

  function showPageError(text) {
    const box = document.getElementById("page-error");
    box.textContent = text || "";
    box.hidden = !text;
  }

  async function refresh() {
    const status = document.getElementById("refresh-status");
    try {
      const response = await fetch(root.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) {
        showPageError(`Could not refresh: ${await explain(response)}`);
        return;
      }
      render(await response.json());
      showPageError("");
      status.textContent = `refreshed ${short(new Date().toISOString())}, every 15 s`;
    } catch (err) {
      showPageError("Could not reach the server to refresh; it may be down or the network is out. Retrying in 15 s.");
    }
  }

  async function toggle(form, on) {
    const name = form.dataset.drain;
    const error = form.querySelector(".form-error");
    const status = form.querySelector(".form-status");
    error.hidden = true;
    const payload = { on };
    if (on) {
      const { date, hour, minute } = form.elements;
      if (!date.value) { error.textContent = "Pick a date (or leave the default: the week boundary)."; error.hidden = false; return; }
      const raw = `${date.value}T${hour.value}:${minute.value}`;
      const iso = wallTimeToIso(raw);
      if (!iso) { error.textContent = `"${raw}" is not a date and time.`; error.hidden = false; return; }
      if (iso.gap) {
        error.textContent = `${hour.value}:${minute.value} does not exist on ${date.value} in ${ZONE}: ` +
          "the clocks jump forward an hour that night. Pick a time outside the skipped hour.";
        error.hidden = false;
        return;
      }
      payload.until = iso;
    }
    status.textContent = on ? "starting…" : "stopping…";
    try {
      const response = await fetch(root.dataset.burstUrl.replace("__NAME__", encodeURIComponent(name)), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
        body: JSON.stringify(payload),
      });
      if (!response.ok) {
        status.textContent = "";
        error.textContent = await explain(response);
        error.hidden = false;
        return;
      }
      const entry = await response.json();
      delete form.dataset.touched;
      renderService(entry, lastSnapshot ? lastSnapshot.week_boundary : entry.projection.deadline);
      if (entry.changed === false) status.textContent = entry.notice; // "no burst to stop"
      else {
        status.textContent = on ? `burst on until ${short(entry.burst_until)}` : "burst stopped";
        if (entry.notice) status.textContent += ` (${entry.notice})`;
      }
      refresh(); // the timeline and the other rows
    } catch (err) {
      status.textContent = "";
      error.textContent = "Could not reach the server; nothing was changed. Try again.";
      error.hidden = false;
    }
  }

  for (const form of root.querySelectorAll("form.burst-form")) {
    form.addEventListener("input", () => { form.dataset.touched = "1"; });
    form.addEventListener("submit", (e) => { e.preventDefault(); if (canChange) toggle(form, true); });
    form.querySelector("button.off").addEventListener("click", () => { if (canChange) toggle(form, false); });
  }

  const initial = document.getElementById("snapshot-data");
  if (initial) render(JSON.parse(initial.textContent));
  setInterval(refresh, REFRESH_MS);
  window.operationsPage = { refresh, wallTimeToIso }; // for a console (and the browser test)
})();
