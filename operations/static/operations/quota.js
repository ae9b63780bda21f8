// The /operations page's quota section: redrawn from every snapshot operations.js fetches (it
// sends a "snapshot" event on #operations). The words come from the server (each window's and
// each key's "text"); this only places them and sizes the SVG bars (attributes, not inline
// styles: the CSP allows none). No build step, no dependencies.
"use strict";

(function () {
  const root = document.getElementById("operations");
  const box = document.getElementById("quotas");
  if (!root || !box) return;
  const SVG = "http://www.w3.org/2000/svg";

  function pct(fraction) { return String(Math.max(0, Math.min(100, Math.round(fraction * 100)))); }
  function rect(cls, x, y, width, height) {
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("class", cls);
    for (const [k, v] of Object.entries({ x, y, width, height })) r.setAttribute(k, v);
    return r;
  }
  function bar(w) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "quota-bar");
    svg.setAttribute("viewBox", "0 0 100 10");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    svg.append(
      rect("track", "0", "0", "100", "10"),
      rect("reserve", pct(w.ceiling), "0", pct(w.reserve), "10"),
      rect("used", "0", "1", pct(w.utilization), "8"),
      rect("ceiling", pct(w.ceiling), "0", "0.8", "10"),
    );
    return svg;
  }
  function windowItem(w) {
    const li = document.createElement("li");
    li.className = "quota-window" + (w.stale ? " stale" : "") + (w.utilization >= w.ceiling ? " full" : "");
    li.dataset.window = w.window;
    const text = document.createElement("span");
    text.className = "quota-text";
    text.textContent = w.text;
    li.append(text, bar(w));
    return li;
  }
  function quotaBlock(q) {
    const div = document.createElement("div");
    div.className = "quota";
    div.dataset.quota = q.key;
    const h3 = document.createElement("h3");
    h3.textContent = q.key;
    if (q.drains.length) {
      const small = document.createElement("small");
      small.textContent = `(${q.drains.join(", ")})`;
      h3.append(" ", small);
    }
    div.append(h3);
    if (q.windows.length) {
      const ul = document.createElement("ul");
      ul.className = "quota-windows";
      ul.append(...q.windows.map(windowItem));
      div.append(ul);
    }
    const line = document.createElement("p");
    line.className = "quota-forecast" + (q.signal_seen ? "" : " none");
    line.textContent = q.text;
    div.append(line);
    return div;
  }

  function render(quotas) {
    if (!quotas.length) {
      const p = document.createElement("p");
      p.className = "none quota-none";
      p.textContent = box.dataset.noQuota;
      box.replaceChildren(p);
      return;
    }
    box.replaceChildren(...quotas.map(quotaBlock));
  }

  root.addEventListener("snapshot", (e) => { if (e.detail && e.detail.quotas) render(e.detail.quotas); });
  window.operationsQuota = { render }; // for a console (and the browser test)
})();
