// The View panel: each member's own view of the dashboard (hidden cards,
// their order, default range, chart style), saved with the JSON endpoint of
// server/preferences.py. dashboard.js applies what the server answers, and
// the `preferences` message brings the same to the user's other pages.
// Server text is set as text only.
"use strict";

(function () {
  const root = document.getElementById("dashboard");
  const panel = document.getElementById("view-panel");
  if (!root || !panel) return;
  const errorEl = panel.querySelector(".view-error");
  const list = document.getElementById("pref-cards");
  const rangeSelect = document.getElementById("pref-range");
  const styleSelect = document.getElementById("pref-style");
  const summary = document.getElementById("view-summary");
  let prefs = null;
  let metrics = []; // as shown: the user's order

  function showError(message) {
    errorEl.hidden = !message;
    errorEl.textContent = message || "";
  }

  function describe(answer) {
    const parts = [];
    for (const [field, reasons] of Object.entries(answer.errors || {})) {
      parts.push(field + ": " + (Array.isArray(reasons) ? reasons.join(" ") : JSON.stringify(reasons)));
    }
    return parts.length ? parts.join("; ") : answer.error || "Not saved.";
  }

  async function change(body) {
    let response;
    try {
      response = await fetch(panel.dataset.url, {
        method: "PATCH",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": panel.dataset.csrf },
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
    } catch (e) {
      showError("Not saved: the server did not answer. Check your connection, then try again.");
      return;
    }
    let answer = {};
    try {
      answer = await response.json();
    } catch (e) {
      answer = { error: response.status + " " + response.statusText };
    }
    if (!response.ok) {
      showError(describe(answer));
      return;
    }
    showError(null);
    root.dispatchEvent(new CustomEvent("preferences:set", { detail: answer }));
  }

  function setHidden(metricId, hidden) {
    const ids = new Set(prefs.hidden_metric_ids);
    if (hidden) ids.add(metricId);
    else ids.delete(metricId);
    change({ hidden_metric_ids: Array.from(ids) });
  }

  function move(index, step) {
    const ids = metrics.map((m) => m.id);
    const [id] = ids.splice(index, 1);
    ids.splice(index + step, 0, id);
    change({ card_order: ids });
  }

  // Rebuilding a list loses the keyboard focus: keep it on the same control of
  // the same metric (an arrow that is now disabled hands it to the other one).
  function focusedControl(list) {
    const el = document.activeElement;
    const item = el && list.contains(el) ? el.closest("li") : null;
    return item ? { id: item.dataset.metricId, role: el.dataset.role } : null;
  }

  function restoreFocus(list, held) {
    if (!held) return;
    const item = Array.from(list.children).find((li) => li.dataset.metricId === held.id);
    if (!item) return;
    const controls = Array.from(item.querySelectorAll("[data-role]")).filter((c) => !c.disabled);
    const target =
      controls.find((c) => c.dataset.role === held.role) ||
      controls.find((c) => c.dataset.role === "up" || c.dataset.role === "down");
    if (target) target.focus();
  }

  function button(text, label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "secondary small";
    b.textContent = text;
    b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }

  function render() {
    const hidden = new Set(prefs.hidden_metric_ids);
    rangeSelect.value = prefs.default_range;
    styleSelect.value = prefs.chart_style;
    const count = metrics.filter((m) => hidden.has(m.id)).length;
    summary.textContent = count ? "· " + count + " hidden" : "";
    const held = focusedControl(list);
    list.replaceChildren();
    metrics.forEach((metric, i) => {
      const item = document.createElement("li");
      item.dataset.metricId = String(metric.id);
      const label = document.createElement("label");
      const shown = document.createElement("input");
      shown.type = "checkbox";
      shown.checked = !hidden.has(metric.id);
      shown.setAttribute("aria-label", "Show " + metric.name);
      shown.dataset.role = "shown";
      shown.addEventListener("change", () => setHidden(metric.id, !shown.checked));
      const name = document.createElement("span");
      name.textContent = metric.name;
      label.append(shown, " ", name);
      const up = button("↑", "Move " + metric.name + " up", () => move(i, -1));
      const down = button("↓", "Move " + metric.name + " down", () => move(i, 1));
      up.dataset.role = "up";
      down.dataset.role = "down";
      up.disabled = i === 0;
      down.disabled = i === metrics.length - 1;
      item.append(label, up, down);
      list.append(item);
    });
    restoreFocus(list, held);
  }

  root.addEventListener("dashboard:arranged", (event) => {
    prefs = event.detail.preferences;
    metrics = event.detail.metrics;
    render();
  });
  rangeSelect.addEventListener("change", () => change({ default_range: rangeSelect.value }));
  styleSelect.addEventListener("change", () => change({ chart_style: styleSelect.value }));
  document.getElementById("pref-reset-order").addEventListener("click", () => change({ card_order: [] }));
  // Each card's own Hide button.
  document.getElementById("metrics").addEventListener("click", (event) => {
    const hide = event.target.closest(".metric-hide");
    if (hide && prefs) setHidden(Number(hide.closest("article").dataset.metricId), true);
  });
})();
