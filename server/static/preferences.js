// The View panel: each member's own view of the dashboard (hidden cards,
// their order, default range, chart style), saved with the JSON endpoint of
// server/preferences.py. dashboard.js applies what the server answers, and
// the `preferences` message brings the same to the user's other pages.
// Server text is set as text only.

import { button, client, focusedControl, restoreFocus } from "./panels.js";

function startViewPanel() {
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

  const api = client(panel.dataset.url, panel.dataset.csrf, errorEl);

  async function change(body) {
    const answer = await api.call("PATCH", "", body);
    if (answer) root.dispatchEvent(new CustomEvent("preferences:set", { detail: answer }));
  }

  function setHidden(metricId, hidden) {
    const ids = new Set(prefs.hidden_metric_ids);
    if (hidden) ids.add(metricId);
    else ids.delete(metricId);
    // Counted at once: a second click before the answer comes keeps the first one's card hidden.
    prefs = Object.assign({}, prefs, { hidden_metric_ids: Array.from(ids) });
    change({ hidden_metric_ids: prefs.hidden_metric_ids });
  }

  function move(index, step) {
    const ids = metrics.map((m) => m.id);
    const [id] = ids.splice(index, 1);
    ids.splice(index + step, 0, id);
    change({ card_order: ids });
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
}

startViewPanel();
