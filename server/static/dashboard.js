// The dashboard page: one card per metric, fed only by the WebSocket
// (docs/protocol.md). This module is the page's glue: socket.js keeps the connection,
// series.js the cards' points, chart.js draws them, format.js writes numbers and times,
// timerange.js and rangecontrols.js hold the range in view. The page's other modules
// (alerts, View and Edit panels) listen to the events it dispatches on #dashboard.
// Every text from the server is set with textContent, never as HTML.

import { alertColors, chartHeight, chartWidth, makeChart, showsRate } from "./chart.js";
import { heatCells, setFaviconCount } from "./charttools.js";
import { clockTime, formatAge, statText, withUnit } from "./format.js";
import { startRangeControls } from "./rangecontrols.js";
import {
  addPoint,
  average,
  counterRate,
  counterRates,
  emptyBuffers,
  extent,
  lastValue,
  parseTime,
  replacePoints,
  trim,
} from "./series.js";
import { LiveSocket } from "./socket.js";
import * as RangeStats from "./stats.js";
import * as TimeRange from "./timerange.js";
import { VOCABULARY } from "./vocabulary.js";

const RANGES = VOCABULARY.ranges; // name -> seconds
const TICK_MS = 1000; // the page's clock: staleness, "last update … ago", the charts' time axes
const HISTOGRAM_BINS = 24;
const HEAT_ROWS = 20; // value bands of a histogram's heatmap
const LABEL_EVERY_MS = 15000; // a chart's text alternative changes at most this often
// A histogram's sketch holds the range as loaded plus the values since: past this
// share of the range in extra values, the range is loaded again.
const SKETCH_DRIFT = 0.05;

const root = document.getElementById("dashboard");
const grid = document.getElementById("metrics");
const statusEl = document.getElementById("connection");
const statusText = statusEl.querySelector(".status-text");
const ageEl = document.getElementById("connection-age");
const stateEl = document.getElementById("state");
const template = document.getElementById("card-template");
const exportEl = document.getElementById("export");
const exportLinks = Array.from(exportEl.querySelectorAll("a[data-format]"));
const lastUpdatedEl = document.getElementById("last-updated");
const lastUpdatedTime = lastUpdatedEl.querySelector("time");
const html = document.documentElement;

// The user's own preferences (docs/protocol.md, `preferences`): rendered
// into the page, then kept current by the View panel and the socket.
let prefs = JSON.parse(document.getElementById("preferences-data").textContent);
let configOrder = []; // metric ids in the dashboard's order, from the last config

const cards = new Map(); // metric id -> card
const dirty = new Set(); // cards to redraw at the next animation frame
// The time range in view (timerange.js): a link's #range= or #from=&to= wins; otherwise
// the user's default range.
let view = TimeRange.viewFromHash(window.location.hash, Date.now()) || {
  range: RANGES[prefs.default_range] ? prefs.default_range : VOCABULARY.default_range,
};
// A range that ended in the past, resolved once when chosen ({from, to, live, span} in ms):
// "now-2d to now-1d" then stays the same day while it is in view. Null for a live range.
let pastWindow = pastWindowOf(view);
let frameRequested = false;
let configSeen = false; // on this connection: later configs are live edits
let valuesAt = 0; // Date.now() when values last arrived (history or live)
let shownValuesAt = 0; // the arrival shown as "Updated …"
let focusedId = panelFromHash(); // the card shown full screen (#panel=), once it exists
let dashboardName = root.querySelector("#dashboard-name").textContent;
let alertRules = []; // as alerts.js holds them (`alerts:changed`): thresholds on the charts
let alertEvents = [];
let shownFiring = 0;

// The socket (socket.js). subscribe=none: this page asks for exactly the history it needs
// (range or resume). updates=batch: live values come as one metric_updates message per
// server turn, not one message each (fewer bytes and parses when values come fast).
const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
const connection = new LiveSocket(scheme + window.location.host + root.dataset.socket + "?subscribe=none&updates=batch", {
  status: showStatus,
  opening: () => {
    configSeen = false;
  },
  message: onMessage,
  closed: (code) => hook.closes.push(code),
  ended: ended,
});

// What the charts (chart.js) ask of the page.
const chartPage = {
  style: () => prefs.chart_style,
  timeWindow: timeWindow,
  thresholds: chartThresholds,
  marks: alertMarks,
};

// For tests and curious people: read-only views of what the page holds.
const hook = { connections: 0, closes: [], status: "connecting", range: view.range || null, view: view, rtt: null, resumed: 0, reloaded: 0 };
hook.points = (metricId) => {
  const card = cards.get(metricId);
  if (!card) return [];
  return card.xs.map((x, i) => ({ id: card.ids[i], t: x, v: card.ys[i] }));
};
hook.metricIds = () => Array.from(cards.keys());
// What a chart shows: its x scale and the colour of its values.
hook.chart = (metricId) => {
  const card = cards.get(metricId);
  if (!card) return null;
  const u = card.chart;
  return { xMin: u.scales.x.min, xMax: u.scales.x.max, stroke: u.series[1].stroke(u, 1), width: u.width };
};
// What a chart draws besides its values: time ticks, alert lines and shading, a heatmap.
hook.chartMarks = (metricId) => {
  const card = cards.get(metricId);
  if (!card) return null;
  const marks = alertMarks(card);
  return {
    timeTicks: card.chart.axes[0]._splits ? card.chart.axes[0]._splits.length : 0,
    yMin: card.chart.scales.y.min,
    yMax: card.chart.scales.y.max,
    thresholds: marks ? marks.thresholds : [],
    periods: marks ? marks.periods.length : 0,
    events: marks ? marks.events.length : 0,
    heatmap: card.heatmap ? { buckets: card.heat ? card.heat.xs.length : 0, max: card.heat ? card.heat.max : 0 } : null,
    showsRate: showsRate(card),
    height: card.chart.height,
    // The time under the (synced) crosshair, or null when it is off the chart.
    cursorTime: card.chart.cursor.left >= 0 ? card.chart.posToVal(card.chart.cursor.left, "x") : null,
  };
};
hook.configs = 0;
hook.preferences = prefs;
root.addEventListener("dashboard:config", () => { hook.configs += 1; });
// Drop the connection as a network failure would (for tests and diagnosis).
hook.dropConnection = () => connection.abandon("dropped on request");
window.__dashboard = hook;

// ---- states --------------------------------------------------------------

// The connection's state (socket.js), as the badge says it.
function showStatus(kind, text, title) {
  hook.status = kind;
  statusEl.dataset.state = kind;
  statusText.textContent = text;
  if (title !== undefined) statusEl.title = title;
  // Values once live but no longer: dimmed, and how old they are is said.
  grid.classList.toggle("stale", hook.connections > 0 && kind !== "connected");
  showAge();
}

function showAge() {
  const old = !connection.stopped && connection.heardAt > 0 && connection.status !== "connected" && connection.status !== "connecting";
  ageEl.hidden = !old;
  if (old) ageEl.textContent = "last update " + formatAge(Date.now() - connection.heardAt) + " ago";
}

// A page-wide state (empty, signed out, no access) replaces the grid's message.
function showState(kind, title, body, link) {
  stateEl.hidden = !kind;
  stateEl.dataset.state = kind || "";
  stateEl.replaceChildren();
  if (!kind) return;
  const heading = document.createElement("h2");
  heading.textContent = title;
  const text = document.createElement("p");
  text.textContent = body;
  stateEl.append(heading, text);
  if (link) {
    const a = document.createElement("a");
    a.className = "button";
    a.href = link.href;
    a.textContent = link.text;
    stateEl.append(a);
  }
}

// ---- cards ---------------------------------------------------------------

function addCard(metric) {
  const node = template.content.firstElementChild.cloneNode(true);
  node.dataset.metricId = String(metric.id);
  node.dataset.type = metric.type;
  const card = {
    metric: metric,
    node: node,
    lastId: null,
    chart: null,
    valueEl: node.querySelector(".value"),
    unitEl: node.querySelector(".unit"),
    statsEl: node.querySelector(".stats"),
    chartEl: node.querySelector(".chart"),
  };
  emptyBuffers(card, 0);
  card.showTotal = false; // a counter's chart: its rate per second unless asked for its total
  card.chartEl.setAttribute("role", "img");
  node.querySelector(".metric-total").hidden = metric.type !== "counter";
  describeCard(card, metric);
  grid.appendChild(node);
  card.chart = makeChart(card, chartPage);
  cards.set(metric.id, card);
  if (metric.id === focusedId) focusCard(metric.id); // a shared link to one card
  markDirty(card);
}

function describeCard(card, metric) {
  card.metric = metric;
  card.node.classList.toggle("pushed", metric.source === root.dataset.pushSource);
  const command = card.node.querySelector(".feed-command");
  if (command) command.textContent = pushCommand(metric.id);
  card.node.querySelector(".metric-name").textContent = metric.name;
  card.node.querySelector(".metric-type").textContent = metric.type;
  card.node.querySelector(".metric-description").textContent = metric.description;
  card.unitEl.textContent = metric.unit;
  card.node.querySelector(".metric-export").href = exportUrl("csv", metric.id);
  markDirty(card); // the unit may change how the value reads
}

// How an editor feeds a pushed metric: the exact request, with a placeholder for the token.
function pushCommand(metricId) {
  const url = new URL(root.dataset.pushUrl.replace(/\/0\//, "/" + metricId + "/"), location.href);
  return (
    "curl -X POST " + url.href + ' -H "Authorization: Bearer $TOKEN"' +
    " -H \"Content-Type: application/json\" -d '{\"value\": 1}'"
  );
}

// "Make a token": the Edit panel's token form, opened and ready to type in.
// (The link's own jump would take the focus away again: done here instead.)
grid.addEventListener("click", (event) => {
  const panel = document.getElementById("edit-panel");
  if (!event.target.closest(".feed-token") || !panel) return;
  event.preventDefault();
  panel.open = true;
  const form = document.getElementById("edit-add-token");
  form.scrollIntoView({ block: "center" });
  form.elements.name.focus();
});

// ---- export ----------------------------------------------------------------

// The range names (5m, 1h, 24h, 7d) are spans the export endpoint understands; other
// ranges go as their UTC times (an export states its times in UTC).
function exportUrl(format, metricId) {
  const params = new URLSearchParams({ format: format });
  if (view.range) params.set("since", view.range);
  else {
    const r = currentWindow();
    params.set("since", new Date(r.from).toISOString());
    if (!r.live) params.set("until", new Date(r.to).toISOString());
  }
  if (metricId !== undefined) params.set("metric", String(metricId));
  return exportEl.dataset.url + "?" + params.toString();
}

function updateExportLinks() {
  exportLinks.forEach((a) => { a.href = exportUrl(a.dataset.format); });
  cards.forEach((card) => { card.node.querySelector(".metric-export").href = exportUrl("csv", card.metric.id); });
}

// The whole range in view, ending now (or at the newest value, if the clocks
// disagree): a range with few values still reads as that range. A past range stays put.
function timeWindow(card) {
  const r = currentWindow();
  if (!r.live) return [r.from / 1000, r.to / 1000];
  const newest = card.xs.length ? card.xs[card.xs.length - 1] : 0;
  const end = Math.max(Date.now() / 1000, newest);
  return [end - r.span / 1000, end];
}

// The span in view, in seconds.
function viewSeconds() {
  return currentWindow().span / 1000;
}

function pastWindowOf(next) {
  const r = TimeRange.resolve(next, Date.now());
  return r.live ? null : r;
}

function currentWindow() {
  return pastWindow || TimeRange.resolve(view, Date.now());
}

// The `history` request of the range in view (docs/protocol.md, "Ranges").
function requestHistory(metricIds) {
  const fields = pastWindow
    ? { from: new Date(pastWindow.from).toISOString(), to: new Date(pastWindow.to).toISOString() }
    : TimeRange.historyFields(view, Date.now());
  send("history", Object.assign({ metric_ids: metricIds }, fields));
}

// Styles are fixed when a uPlot is made: a new style or theme makes new charts (the data stays).
function rebuildCharts() {
  for (const card of cards.values()) {
    card.chart.destroy();
    card.chart = makeChart(card, chartPage);
    markDirty(card);
  }
}

function markDirty(card) {
  dirty.add(card);
  if (!frameRequested) {
    frameRequested = true;
    // One redraw per frame however many values arrived: smooth with 30+ charts.
    requestAnimationFrame(redrawDirty);
  }
}

function redrawDirty() {
  frameRequested = false;
  for (const card of dirty) redraw(card);
  dirty.clear();
}

function redraw(card) {
  const n = card.ys.length;
  card.node.classList.toggle("no-data", n === 0);
  const [number, shownUnit] = n ? withUnit(card.latest, card.metric.unit) : ["–", card.metric.unit];
  card.valueEl.textContent = number;
  card.unitEl.textContent = shownUnit;
  if (card.metric.type === "histogram") redrawHistogram(card);
  else redrawTimeChart(card);
  describeChart(card);
}

// Gauges, and counters as a rate per second (or their total, as the card's toggle says).
function redrawTimeChart(card) {
  const unit = card.metric.unit;
  if (card.metric.type === "counter" && !card.showTotal) {
    const rates = counterRates(card, viewSeconds());
    card.chart.setData([card.xs, rates, rates, rates]);
    if (!card.xs.length) return setStats(card, []);
    const [low, high] = extent(rates);
    setStats(card, [
      ["last", statText(rates[rates.length - 1], unit, true)],
      ["min", statText(low, unit, true)],
      ["rate", statText(counterRate(card), unit, true)],
      ["max", statText(high, unit, true)],
    ]);
    return;
  }
  card.chart.setData([card.xs, card.ys, card.mins, card.maxs]);
  if (!card.xs.length) return setStats(card, []);
  const stats = [
    ["last", statText(card.latest, unit)],
    ["min", statText(Math.min(...card.mins), unit)],
    ["avg", statText(average(card), unit)],
    ["max", statText(Math.max(...card.maxs), unit)],
  ];
  if (card.metric.type === "counter") stats.splice(2, 1, ["rate", statText(counterRate(card), unit, true)]);
  setStats(card, stats);
}

// The legend: [stat, text] pairs, updated in place (it changes with every value).
function setStats(card, stats) {
  const items = card.statsEl.children;
  for (let i = 0; i < stats.length; i++) {
    const [label, text] = stats[i];
    let item = items[i];
    if (!item || item.dataset.stat !== label) {
      item = statItem(label);
      if (items[i]) card.statsEl.replaceChild(item, items[i]);
      else card.statsEl.append(item);
    }
    const number = item.lastChild;
    if (number.textContent !== text) number.textContent = text;
  }
  while (items.length > stats.length) card.statsEl.lastChild.remove();
}

function statItem(label) {
  const item = document.createElement("span");
  item.className = "stat";
  item.dataset.stat = label;
  const name = document.createElement("span");
  name.className = "stat-label";
  name.textContent = label;
  const number = document.createElement("span");
  number.className = "stat-value";
  item.append(name, number);
  return item;
}

function redrawHistogram(card) {
  const unit = card.metric.unit;
  const sketch = card.bucket && card.summary ? card.summary.sketch : null;
  const count = sketch ? sketch.total : card.ys.length;
  if (!count) {
    card.heat = null;
    card.chart.setData(card.heatmap ? [[], []] : [[], []]);
    return setStats(card, []);
  }
  const low = Math.min(...card.mins);
  const high = Math.max(...card.maxs);
  // Raw values: exact. Buckets: from the range's sketch, within its relative error.
  const sorted = sketch ? null : card.ys.slice().sort((a, b) => a - b);
  const stats = [50, 95, 99].map((p) => [
    "p" + p,
    statText(sketch ? sketch.percentile(p, low, high) : RangeStats.exactPercentile(sorted, p), unit),
  ]);
  stats.push(["min", statText(low, unit)], ["max", statText(high, unit)], ["values", String(count)]);
  setStats(card, stats);
  if (card.heatmap) return drawHeatmap(card, low, high);
  const width = (high - low) / HISTOGRAM_BINS || 1;
  card.binWidth = width;
  const xs = [];
  const counts = new Array(HISTOGRAM_BINS).fill(0);
  for (let i = 0; i < HISTOGRAM_BINS; i++) xs.push(low + i * width);
  const binOf = (v) => Math.max(0, Math.min(HISTOGRAM_BINS - 1, Math.floor((v - low) / width)));
  if (sketch) {
    // The distribution of every value in the range, not of the buckets' averages.
    for (const [key, n] of sketch.counts) counts[binOf(sketch.valueOf(key))] += n;
  } else {
    for (const v of sorted) counts[binOf(v)] += 1;
  }
  card.chart.setData([xs, counts]);
}

// The chart's text alternative: the metric and its latest value. Changed at most every
// LABEL_EVERY_MS (it is not a live region: nothing is announced as values stream).
function describeChart(card) {
  const now = Date.now();
  const shown = TimeRange.describe(view, now);
  const state = shown + (card.xs.length ? "" : " empty"); // changes that are said at once
  if (card.labelledAt && now - card.labelledAt < LABEL_EVERY_MS && card.labelledState === state) return;
  card.labelledAt = now;
  card.labelledState = state;
  const latest = card.xs.length ? statText(card.latest, card.metric.unit) : "no values yet";
  let text = card.metric.name + ", " + card.metric.type + ", " + shown + ": latest " + latest;
  if (card.metric.type === "counter" && card.xs.length) text += ", " + statText(counterRate(card), card.metric.unit, true);
  card.chartEl.setAttribute("aria-label", text);
}

// ---- histograms on long ranges: a heatmap --------------------------------

function drawHeatmap(card, low, high) {
  const mapping = card.summary && card.summary.sketch;
  const hasSketches = mapping && card.sketches.some((s) => s);
  if (!hasSketches) {
    card.heat = null; // an older server: the buckets' averages only
  } else {
    const cells = heatCells(card.sketches, mapping, low, high, HEAT_ROWS);
    card.heat = { xs: card.xs, bucket: card.bucket, low: low, high: high, rows: HEAT_ROWS, cells: cells.cells, max: cells.max };
  }
  card.chart.setData([card.xs, card.ys]);
}

// A histogram's chart is a distribution on raw ranges and a heatmap on bucketed ones.
function fitChartKind(card) {
  if (card.metric.type !== "histogram" || card.heatmap === card.bucket > 0) return;
  card.chart.destroy();
  card.chart = makeChart(card, chartPage);
}

// ---- counters: rate or total ---------------------------------------------

function setShowTotal(card, total) {
  card.showTotal = total;
  const toggle = card.node.querySelector(".metric-total");
  toggle.setAttribute("aria-pressed", String(total));
  card.chart.destroy(); // the axis' unit and steps are fixed when a chart is made
  card.chart = makeChart(card, chartPage);
  card.labelledAt = 0;
  markDirty(card);
}

// ---- shared and focused views: the URL, full screen, kiosk ----------------

// `&panel=ID` in the URL's hash: the card shown full screen. The range beside it
// (`#range=1h`, `#from=…&to=…`) is timerange.js's, which keeps this key when it writes.
function panelFromHash() {
  const panel = Number(new URLSearchParams(window.location.hash.slice(1)).get("panel"));
  return Number.isInteger(panel) && panel > 0 ? panel : null;
}

function writePanelHash() {
  const others = new URLSearchParams(window.location.hash.slice(1));
  others.delete("panel");
  // With the range in view, so that the link opens exactly this view.
  let hash = TimeRange.hashWithView("#" + others.toString(), view);
  if (focusedId != null) hash += "&panel=" + focusedId;
  history.replaceState(null, "", window.location.pathname + window.location.search + hash);
}

// One card over the whole page (and in the URL), or none.
function focusCard(metricId) {
  const next = cards.get(metricId) || null;
  for (const card of cards.values()) {
    const focused = card === next;
    if (card.node.classList.contains("focused") === focused) continue;
    card.node.classList.toggle("focused", focused);
    const button = card.node.querySelector(".metric-focus");
    button.setAttribute("aria-pressed", String(focused));
    button.textContent = focused ? "Close" : "Full screen";
    card.chart.setSize({ width: chartWidth(card), height: chartHeight(card) });
  }
  focusedId = next ? metricId : null;
  document.body.classList.toggle("focusing", next !== null);
  hook.focused = focusedId;
  writePanelHash();
  if (next) next.node.querySelector(".metric-focus").focus();
}

// When values last arrived, always in view (the badge says whether they still flow).
function showLastUpdated() {
  if (!valuesAt || valuesAt === shownValuesAt) return;
  shownValuesAt = valuesAt;
  const at = new Date(valuesAt);
  lastUpdatedTime.dateTime = at.toISOString();
  lastUpdatedTime.textContent = clockTime(valuesAt);
  lastUpdatedEl.hidden = false;
}

// ---- alerts on charts: thresholds, firing periods, events, title ----------

// Thresholds are in the metric's own values: not drawn over a counter's rate.
function chartThresholds(card) {
  if (showsRate(card)) return [];
  return alertRules.filter((r) => r.metric_id === card.metric.id && Number.isFinite(r.threshold))
    .map((r) => ({ value: r.threshold, firing: r.state === "firing" }));
}

function alertMarks(card) {
  const rules = alertRules.filter((r) => r.metric_id === card.metric.id);
  if (!rules.length) return null;
  const mine = alertEvents.filter((e) => e.metric_id === card.metric.id);
  const events = mine.map((e) => ({ t: parseTime(e.at), firing: e.state === "firing" }));
  return { thresholds: chartThresholds(card), periods: firingPeriods(rules, mine), events: events };
}

// From each rule's events, oldest first: firing until the next resolution, or until now.
function firingPeriods(rules, events) {
  const periods = [];
  const now = Date.now() / 1000;
  for (const rule of rules) {
    let start = null;
    const ordered = events.filter((e) => e.rule_id === rule.rule_id).sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    for (const event of ordered) {
      const t = parseTime(event.at);
      if (event.state === "firing" && start === null) start = t;
      else if (event.state !== "firing" && start !== null) {
        periods.push([start, t]);
        start = null;
      }
    }
    if (rule.state === "firing") periods.push([start !== null ? start : rule.since ? parseTime(rule.since) : now, now]);
  }
  return periods;
}

function onAlertsChanged(detail) {
  alertRules = detail.rules;
  alertEvents = detail.events;
  hook.alertRules = alertRules.length;
  for (const card of cards.values()) {
    markDirty(card); // redrawn with the lines, and a y range that takes the thresholds in
  }
  showTitle();
}

// "(2 firing) Service health · Live dashboards", and the count on the favicon.
function showTitle() {
  const firing = alertRules.filter((r) => r.state === "firing").length;
  document.title = (firing ? "(" + firing + " firing) " : "") + dashboardName + " · Live dashboards";
  if (firing !== shownFiring) {
    shownFiring = firing;
    setFaviconCount(firing, alertColors());
  }
}

// ---- data: values and histories into the cards' points (series.js) ---------

// A stored value, placed at its timestamp: values come in the order they were
// stored (by id), and a pushed one may be back-dated by minutes.
function addValue(card, id, timestamp, value) {
  if (card.past) return; // the range in view ended before this value (its history said live: false)
  if (id != null && card.lastId != null && id <= card.lastId) return; // already shown
  const x = parseTime(timestamp);
  const n = card.xs.length;
  // A back-dated value (pushed with an older timestamp) is placed at its time; the
  // counter's increase is counted from the newest value only.
  const newest = !n || x >= card.xs[n - 1];
  const increase = newest ? RangeStats.rise(n ? lastValue(card) : null, value) : 0;
  extendSummary(card, x, value, increase);
  addPoint(card, id, x, value, increase, newest);
  trim(card, viewSeconds());
  markDirty(card);
}

// A later value joins the range's summary: the counter's increase, the histogram's sketch.
function extendSummary(card, x, value, rise) {
  const summary = card.summary;
  if (!summary) return;
  if (summary.lastValue != null && x >= summary.lastX) summary.lastValue = value;
  summary.lastX = Math.max(summary.lastX, x);
  if (!summary.sketch) return;
  summary.sketch.add(value);
  if (!summary.reloading && Date.now() / 1000 - summary.loadedAt > viewSeconds() * SKETCH_DRIFT) {
    summary.reloading = true; // the range's start has moved on: load it again
    requestHistory([card.metric.id]);
  }
}

// A history replaces what the card holds (its values may be buckets).
function replaceHistory(card, payload) {
  replacePoints(card, payload, viewSeconds());
  fitChartKind(card);
  markDirty(card);
}

function onHistory(payload) {
  const card = cards.get(payload.metric_id);
  if (!card) return;
  if (payload.recovered === true) {
    // The gap since our last value, exactly: append it.
    hook.resumed += 1;
    for (const v of payload.values) addValue(card, v.id, v.timestamp, v.value);
    if (payload.last_id != null) card.lastId = Math.max(card.lastId || 0, payload.last_id);
  } else if (payload.recovered === false) {
    // Too old to fill: reload this metric's range.
    hook.reloaded += 1;
    requestHistory([card.metric.id]);
  } else {
    replaceHistory(card, payload);
  }
}

// The first config of a connection, or a live one after an editor changed
// the dashboard: cards follow it (added, removed, reordered) and keep their data.
function onConfig(config) {
  const live = configSeen;
  configSeen = true;
  document.getElementById("dashboard-name").textContent = config.name;
  document.getElementById("dashboard-description").textContent = config.description;
  dashboardName = config.name;
  showTitle();
  const wanted = new Set(config.metrics.map((m) => m.id));
  for (const [id, card] of cards) {
    if (wanted.has(id)) continue;
    if (id === focusedId) focusCard(null);
    card.chart.destroy();
    card.node.remove();
    dirty.delete(card);
    cards.delete(id);
  }
  const positions = [];
  const fresh = [];
  for (const metric of config.metrics) {
    const card = cards.get(metric.id);
    if (!card) {
      addCard(metric);
      fresh.push(metric.id);
    } else {
      describeCard(card, metric);
      // A new connection continues from what we hold (a past range is read again);
      // a live config needs nothing.
      if (!live && card.lastId != null && !card.past) positions.push({ metric_id: metric.id, after_id: card.lastId });
      else if (!live) fresh.push(metric.id);
    }
  }
  configOrder = config.metrics.map((m) => m.id);
  arrangeCards();
  root.dispatchEvent(new CustomEvent("dashboard:config", { detail: config }));
  if (!config.metrics.length) {
    // What to do next depends on who is looking: only editors can add metrics.
    const next =
      root.dataset.role === "editor"
        ? "Add the first one in the Edit panel above, or with: dashboard-server metric add " +
          root.dataset.slug +
          " NAME --type gauge"
        : "Its editors have not added any metrics yet; they will show here as soon as they do.";
    showState("empty", "No metrics yet", next);
    return;
  }
  showState(null);
  if (positions.length) send("resume", { positions: positions });
  if (fresh.length) requestHistory(fresh);
}

// ---- preferences ---------------------------------------------------------

// The user's order first (metrics still on the dashboard), then the rest in the dashboard's order.
function displayOrder() {
  const seen = new Set();
  const order = [];
  for (const id of prefs.card_order.concat(configOrder)) {
    if (cards.has(id) && !seen.has(id)) {
      seen.add(id);
      order.push(id);
    }
  }
  return order;
}

function arrangeCards() {
  const hidden = new Set(prefs.hidden_metric_ids);
  const order = displayOrder();
  for (const id of order) {
    const card = cards.get(id);
    const shown = !hidden.has(id);
    if (shown && card.node.hidden) {
      card.node.hidden = false;
      // Drawn while hidden at a guessed width: fit it now that it shows.
      card.chart.setSize({ width: chartWidth(card), height: chartHeight(card) });
    }
    card.node.hidden = !shown;
    grid.appendChild(card.node);
  }
  root.dispatchEvent(
    new CustomEvent("dashboard:arranged", {
      detail: { preferences: prefs, metrics: order.map((id) => cards.get(id).metric) },
    }),
  );
}

// From the View panel's answer, the socket, or a re-read after a reconnect.
function applyPreferences(next) {
  if (!next || String(next.dashboard_id) !== root.dataset.dashboardId) return;
  const previous = prefs;
  prefs = next;
  hook.preferences = next;
  root.dataset.chartStyle = next.chart_style;
  if (RANGES[next.default_range] && next.default_range !== previous.default_range) setView({ range: next.default_range });
  if (next.theme && html.dataset.theme !== next.theme) html.dataset.theme = next.theme; // charts follow (below)
  else if (next.chart_style !== previous.chart_style) rebuildCharts();
  arrangeCards();
}

// Changes made while this page was disconnected were announced to nobody here.
function refreshPreferences() {
  fetch(root.dataset.preferences, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((response) => (response.ok ? response.json() : null))
    .then(applyPreferences)
    .catch(() => {});
}

// A new range in view (a preset, the picker, a drag on a chart: rangecontrols.js):
// in the URL, so a link opens exactly this view, and asked of the server for every card.
function setView(next) {
  if (TimeRange.problem(next, Date.now())) return;
  view = next;
  pastWindow = pastWindowOf(next);
  hook.view = next;
  hook.range = next.range || null;
  history.replaceState(null, "", TimeRange.hashWithView(window.location.hash, next));
  announceView();
  updateExportLinks();
  for (const card of cards.values()) card.chart.setScale("x", rangeScale(card));
  if (cards.size) requestHistory(Array.from(cards.keys()));
}

function announceView() {
  root.dispatchEvent(new CustomEvent("dashboard:view", { detail: view }));
}

// A time chart's x scale in view; a histogram's is its values'.
function rangeScale(card) {
  if (card.metric.type === "histogram") return { min: card.chart.scales.x.min, max: card.chart.scales.x.max };
  const [min, max] = timeWindow(card);
  return { min: min, max: max };
}

// ---- connection ----------------------------------------------------------

function send(action, payload) {
  connection.send(action, payload);
}

function onMessage(message) {
  const payload = message.payload;
  switch (message.action) {
    case "authentication":
      if (payload.status_code === 200) {
        hook.connections += 1;
        if (hook.connections > 1) refreshPreferences();
      }
      break;
    case "dashboard_config":
      onConfig(payload);
      break;
    case "metric_history":
      if (payload.values.length) valuesAt = Date.now();
      onHistory(payload);
      break;
    case "metric_update": {
      noteData();
      const card = cards.get(payload.metric_id);
      if (card) addValue(card, payload.id, payload.timestamp, payload.value);
      break;
    }
    case "metric_updates":
      noteData();
      for (const tick of payload.updates) {
        for (const [metricId, id, value] of tick.values) {
          const card = cards.get(metricId);
          if (card) addValue(card, id, tick.timestamp, value);
        }
      }
      break;
    case "alert":
    case "alerts":
      // The alert list and the cards' badges are alerts.js's.
      root.dispatchEvent(new CustomEvent("dashboard:" + message.action, { detail: payload }));
      break;
    case "preferences":
      applyPreferences(payload);
      break;
    case "pong":
      hook.rtt = connection.rtt;
      break;
    case "error":
      console.warn("server refused a message:", payload.message, payload.errors);
      break;
  }
}

// Between values too, a chart's time axis follows the clock, so a silence shows as a gap.
function advanceTimeAxes() {
  if (pastWindow) return; // a past range stays where it is
  for (const card of cards.values()) {
    if ((card.metric.type === "histogram" && !card.heatmap) || card.node.hidden || dirty.has(card)) continue;
    const u = card.chart;
    const [min, max] = timeWindow(card);
    // Once a pixel's worth of time has passed: a week's chart moves every few minutes.
    if (!(max - u.scales.x.max < viewSeconds() / u.width)) u.setScale("x", { min: min, max: max });
  }
}

// Values arrived (live): the connection learns their pace; "Updated" shows when.
function noteData() {
  connection.noteData();
  valuesAt = Date.now();
}

function tick() {
  connection.watch();
  showAge();
  showLastUpdated();
  advanceTimeAxes();
}

// What happens when the server closes for good (socket.js CLOSE_CODES: no reconnect).
function ended(name) {
  if (name === "UNAUTHENTICATED") {
    connection.setStatus("offline", "Signed out");
    // Nobody is logged in any more: the top bar stops naming them and offering their controls.
    for (const el of document.querySelectorAll(".topbar .who, .topbar form.inline, #theme-toggle")) el.hidden = true;
    const next = window.location.pathname + window.location.hash;
    showState("signed-out", "Your session has ended", "Log in again to keep watching this dashboard.", {
      href: "/login?next=" + encodeURIComponent(next),
      text: "Log in again",
    });
  } else if (name === "FORBIDDEN") {
    connection.setStatus("offline", "No access");
    showState("forbidden", "No access", "You are no longer a member of this dashboard.", {
      href: "/dashboards/",
      text: "Your dashboards",
    });
  }
}

// ---- page wiring ---------------------------------------------------------

root.addEventListener("range:set", (event) => setView(event.detail));
startRangeControls(hook.chart); // before the first `dashboard:view`, which it shows
// A card's own buttons: full screen, and a counter's total instead of its rate.
grid.addEventListener("click", (event) => {
  const button = event.target.closest(".metric-focus, .metric-total");
  const node = button && button.closest("article.metric");
  const card = node && cards.get(Number(node.dataset.metricId));
  if (!card) return;
  if (button.classList.contains("metric-focus")) focusCard(focusedId === card.metric.id ? null : card.metric.id);
  else setShowTotal(card, !card.showTotal);
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && focusedId != null && !document.querySelector("dialog[open]")) focusCard(null);
});
root.addEventListener("alerts:changed", (event) => onAlertsChanged(event.detail));
root.dataset.chartStyle = prefs.chart_style; // for CSS and tests: how the charts are drawn
// The View panel's own answer. While connected, the `preferences` message that
// every change also sends to this page is what counts: those arrive in commit
// order, read after each commit, whereas an answer can overtake them the other
// way and put back a choice made since (say the theme, toggled meanwhile).
root.addEventListener("preferences:set", (event) => {
  if (connection.status !== "connected") applyPreferences(event.detail);
});
// However the theme changed (the toggle, another page of ours), charts take its colours.
new MutationObserver(rebuildCharts).observe(html, { attributes: true, attributeFilter: ["data-theme"] });
announceView();
updateExportLinks();

let resizeQueued = false;
new ResizeObserver(() => {
  if (resizeQueued) return;
  resizeQueued = true;
  requestAnimationFrame(() => {
    resizeQueued = false;
    for (const card of cards.values()) card.chart.setSize({ width: chartWidth(card), height: chartHeight(card) });
  });
}).observe(grid);

// Back from the back/forward cache: the socket is gone, start afresh.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) window.location.reload();
});

setInterval(tick, TICK_MS);
connection.start();
