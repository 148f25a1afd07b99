// The time range controls of the dashboard page: presets, earlier/later, zoom out, the
// from–to picker, and drag to zoom on any chart. The range itself is dashboard.js's:
// it starts these controls, announces each view with `dashboard:view`, and these
// controls ask for another with `range:set` (detail: a view, timerange.js). Texts are
// set with textContent.

import * as TimeRange from "./timerange.js";

// `chartScale(metricId)`: the x scale of that card's chart, {xMin, xMax} in seconds, or null.
export function startRangeControls(chartScale) {
  const root = document.getElementById("dashboard");
  const grid = document.getElementById("metrics");
  const form = document.getElementById("range-form");
  if (!root || !grid || !form) return;
  const picker = document.getElementById("range-picker");
  const label = document.getElementById("range-label");
  const zone = document.getElementById("range-zone");
  const error = form.querySelector(".range-error");
  const presets = Array.from(document.querySelectorAll("[data-range]"));
  const MIN_DRAG_PX = 5;

  let view = null; // the page's, from its last `dashboard:view`

  function ask(next) {
    root.dispatchEvent(new CustomEvent("range:set", { detail: next }));
  }

  function showView(next) {
    view = next;
    const now = Date.now();
    label.textContent = TimeRange.describe(view, now);
    zone.textContent = TimeRange.zoneName(now);
    presets.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.range === view.range)));
    picker.classList.toggle("active", !view.range);
    // The picker shows the view as typed: relative stays relative, absolute in local time.
    const r = TimeRange.resolve(view, now);
    const from = view.range ? "now-" + view.range : view.from;
    const to = view.range ? "now" : view.to;
    form.elements.from.value = TimeRange.isRelative(from) ? from : TimeRange.formatLocal(r.from);
    form.elements.to.value = TimeRange.isRelative(to) ? to : TimeRange.formatLocal(r.to);
    error.hidden = true;
  }

  root.addEventListener("dashboard:view", (event) => showView(event.detail));

  presets.forEach((b) => b.addEventListener("click", () => ask({ range: b.dataset.range })));
  document.getElementById("range-earlier").addEventListener("click", () => {
    if (view) ask(TimeRange.shift(view, -1, Date.now()));
  });
  document.getElementById("range-later").addEventListener("click", () => {
    if (view) ask(TimeRange.shift(view, 1, Date.now()));
  });
  document.getElementById("range-zoom-out").addEventListener("click", () => {
    if (view) ask(TimeRange.zoomOut(view, Date.now()));
  });
  // Quick picks (`data-from`, `data-to`): filled in, then applied.
  form.addEventListener("click", (event) => {
    const quick = event.target.closest("[data-from]");
    if (!quick) return;
    form.elements.from.value = quick.dataset.from;
    form.elements.to.value = quick.dataset.to;
    form.requestSubmit();
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const now = Date.now();
    const typed = { from: form.elements.from.value.trim(), to: form.elements.to.value.trim() || "now" };
    const why = TimeRange.problem(typed, now);
    if (why) {
      error.textContent = why;
      error.hidden = false;
      return;
    }
    // Relative expressions are kept (the link moves with the clock); others are stored in UTC.
    const next = {
      from: TimeRange.isRelative(typed.from) ? typed.from.replace(/\s+/g, "") : new Date(TimeRange.parseTime(typed.from, now)).toISOString(),
      to: TimeRange.isRelative(typed.to) ? typed.to.replace(/\s+/g, "") : new Date(TimeRange.parseTime(typed.to, now)).toISOString(),
    };
    picker.open = false;
    ask(next);
  });

  // ---- drag to zoom: on any time chart, every card follows ----------------------

  let drag = null;

  grid.addEventListener("pointerdown", (event) => {
    // A finger on a chart shows its value (charttools.js); zooming there is the picker's.
    if (event.button !== 0 || event.pointerType === "touch") return;
    const over = event.target.closest(".u-over");
    const card = over && over.closest("[data-metric-id]");
    if (!card || card.dataset.type === "histogram") return;
    const box = over.getBoundingClientRect();
    const mark = document.createElement("div");
    mark.className = "zoom-select";
    over.appendChild(mark);
    drag = { over: over, card: card, box: box, start: event.clientX - box.left, mark: mark, pointer: event.pointerId };
    over.setPointerCapture(event.pointerId);
    moveDrag(event);
    event.preventDefault();
  });

  function dragEdges(event) {
    const x = Math.max(0, Math.min(drag.box.width, event.clientX - drag.box.left));
    return [Math.min(drag.start, x), Math.max(drag.start, x)];
  }

  function moveDrag(event) {
    if (!drag || event.pointerId !== drag.pointer) return;
    const [left, right] = dragEdges(event);
    drag.mark.style.left = left + "px";
    drag.mark.style.width = right - left + "px";
  }

  function endDrag(event, apply) {
    if (!drag || event.pointerId !== drag.pointer) return;
    const [left, right] = dragEdges(event);
    const done = drag;
    drag = null;
    done.mark.remove();
    if (!apply || right - left < MIN_DRAG_PX) return;
    const scale = chartScale(Number(done.card.dataset.metricId));
    if (!scale || scale.xMin == null || scale.xMax == null) return;
    const toTime = (px) => (scale.xMin + (px / done.box.width) * (scale.xMax - scale.xMin)) * 1000;
    ask(TimeRange.zoomTo(toTime(left), toTime(right), Date.now()));
  }

  grid.addEventListener("pointermove", moveDrag);
  grid.addEventListener("pointerup", (event) => endDrag(event, true));
  grid.addEventListener("pointercancel", (event) => endDrag(event, false));
  // A double click on a chart zooms out, as in Grafana.
  grid.addEventListener("dblclick", (event) => {
    if (view && event.target.closest(".u-over")) ask(TimeRange.zoomOut(view, Date.now()));
  });
}
