// The cards' charts (uPlot, the vendored classic script read as the global `uPlot`):
// their shape, axes, colours and tooltip. Two shapes: time across (a gauge's or a
// counter's values; a histogram's heatmap on a bucketed range), and a histogram's
// distribution on a raw range. What the charts show comes from the page
// (dashboard.js): the card's buffers, and a `page` that answers
//   style()            the user's chart style: line, area or points
//   timeWindow(card)   the time axis' [min, max], in seconds
//   thresholds(card)   alert thresholds the value axis takes in: [{value, firing}]
//   marks(card)        alert lines, periods and events (charttools.js alertPlugin), or null
// Styles and colours are fixed when a uPlot is made: the page makes a new chart to
// change them (a new style, theme, or a counter's rate/total).

import { alertPlugin, heatmapPlugin, SYNC_KEY, tooltipPlugin } from "./charttools.js";
import { formatStat, isBytes, pointTime, statText, timeTicks } from "./format.js";

const CHART_HEIGHT = 150;
const FOCUSED_CHROME = 230; // px of a full-screen card that are not its chart
const NARROW_PLOT = 400; // px: below, time ticks sit closer (a phone)
const AXIS_FONT = "11px system-ui, sans-serif";
// Axis steps for bytes: 1, 2, 4 … 512 of each binary unit, so ticks read 512 MiB, 1 GiB.
const BYTE_STEPS = [0, 1, 2, 3, 4, 5].flatMap((power) =>
  [1, 2, 4, 8, 16, 32, 64, 128, 256, 512].map((m) => m * 1024 ** power),
);
const FALLBACK_COLORS = { counter: "#1a7f37", gauge: "#0969da", histogram: "#8250df" };

// A card's chart, as its metric's type and the range's buckets call for.
export function makeChart(card, page) {
  card.heatmap = card.metric.type === "histogram" && card.bucket > 0;
  if (card.metric.type === "histogram" && !card.heatmap) return distributionChart(card);
  return timeChart(card, page);
}

// Time across. Values up, with the band between each bucket's min and max (the spread a
// bucketed range hides); or, for a histogram, its heatmap (darker where more values fell)
// under the line of the buckets' averages.
function timeChart(card, page) {
  const color = seriesColor(card.metric.type);
  const series = card.heatmap
    ? [{ label: "average", stroke: color, width: 1, points: { show: false } }]
    : [
        valueSeries(color, page.style()),
        { label: "min", stroke: "transparent", points: { show: false } },
        { label: "max", stroke: "transparent", points: { show: false } },
      ];
  const valueRange = card.heatmap
    ? () => (card.heat ? [card.heat.low, card.heat.high] : [0, 1])
    : (u, min, max) => niceRange(min, max, page.thresholds(card));
  const options = {
    width: chartWidth(card),
    height: chartHeight(card),
    legend: { show: false },
    // Every time chart's crosshair follows the pointer on any of them (uPlot's cursor sync).
    cursor: { drag: { x: false, y: false }, points: { size: 6 }, sync: { key: SYNC_KEY } },
    scales: {
      x: { time: true, range: () => page.timeWindow(card) },
      y: { range: valueRange },
    },
    axes: [timeAxis(), valueAxis(card)],
    series: [{}, ...series],
    plugins: [
      tooltipPlugin((u, idx) => describePoint(card, u, idx)),
      alertPlugin(() => page.marks(card), alertColors),
    ],
  };
  if (card.heatmap) options.plugins.push(heatmapPlugin(() => card.heat, () => seriesColor(card.metric.type)));
  else options.bands = [{ series: [3, 2], fill: color + "26" }];
  return new uPlot(options, [[], ...series.map(() => [])], card.chartEl);
}

// A histogram's values on a short range: how many fell in each band of values.
function distributionChart(card) {
  const color = seriesColor(card.metric.type);
  const valueLabels = (u, splits) => splits.map((s) => formatStat(s, card.metric.unit));
  return new uPlot(
    {
      width: chartWidth(card),
      height: chartHeight(card),
      legend: { show: false },
      cursor: { show: false },
      scales: {
        // To the end of the last bin, so its bar is drawn whole.
        x: { time: false, range: (u, min, max) => (min == null ? [0, 1] : [min, max + (card.binWidth || 1)]) },
        y: { range: (u, min, max) => [0, Math.max(1, max)] },
      },
      axes: [
        Object.assign(axis(valueLabels), { size: 30 }),
        Object.assign(axis((u, splits) => splits.map((s) => (Number.isInteger(s) ? String(s) : ""))), { size: 40 }),
      ],
      series: [
        {},
        {
          label: "values",
          stroke: color,
          fill: color + "59",
          width: 1,
          paths: uPlot.paths.bars({ size: [0.9, 80], align: 0 }),
          points: { show: false },
        },
      ],
    },
    [[], []],
    card.chartEl,
  );
}

// A counter's chart shows its rate per second, unless its card asks for the total.
export function showsRate(card) {
  return card.metric.type === "counter" && !card.showTotal;
}

export function chartWidth(card) {
  return Math.max(220, Math.floor(card.chartEl.clientWidth || 320));
}

export function chartHeight(card) {
  return card.node.classList.contains("focused") ? Math.max(CHART_HEIGHT, window.innerHeight - FOCUSED_CHROME) : CHART_HEIGHT;
}

// ---- colours of the current theme (app.css), read when a chart is made ----

function cssColor(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

function hexColor(name, fallback) {
  const color = cssColor(name, fallback);
  return /^#[0-9a-f]{6}$/i.test(color) ? color : fallback;
}

// "#rrggbb" (the theme's --counter, --gauge, --histogram) with an alpha suffix added below.
function seriesColor(type) {
  return hexColor("--" + type, FALLBACK_COLORS[type]);
}

// Alerts' colours: a firing rule, a threshold, a resolution (also the favicon's count).
export function alertColors() {
  return { bad: hexColor("--bad", "#cf222e"), warn: hexColor("--warn", "#9a6700"), ok: hexColor("--ok", "#1a7f37") };
}

// ---- series and axes -------------------------------------------------------

// The user's chart style for lines (histograms are always bars).
function valueSeries(color, style) {
  if (style === "points") {
    return { label: "value", stroke: color, width: 1, paths: () => null, points: { show: true, size: 4, fill: color } };
  }
  const fill = style === "area" ? color + "55" : color + "14";
  // Points only where values are far apart (uPlot's default): a lone value still shows.
  return { label: "value", stroke: color, width: 2, fill: fill, points: { size: 5, fill: color } };
}

function axis(values) {
  return {
    stroke: cssColor("--chart-axis", "#57606a"),
    grid: { stroke: cssColor("--chart-grid", "rgba(31, 35, 40, 0.07)"), width: 1 },
    ticks: { show: false },
    font: AXIS_FONT,
    values: values,
  };
}

function timeAxis() {
  const labels = (u, splits) => timeTicks(splits, u.scales.x.max - u.scales.x.min);
  // Closer labels on a phone, so even a week shows several days (their labels are short).
  const space = (u, axisIdx, min, max, plotWidth) => (plotWidth < NARROW_PLOT ? 36 : 55);
  return Object.assign(axis(labels), { space: space, size: 30 });
}

// Ticks with the unit ("50 ms", "1.5 GiB", "5 req/s"), as wide as their longest label.
function valueAxis(card) {
  const values = (u, splits) => splits.map((s) => statText(s, card.metric.unit, showsRate(card)));
  const options = { size: (u, labels) => axisWidth(labels) };
  if (isBytes(card.metric.unit) && !showsRate(card)) options.incrs = BYTE_STEPS;
  return Object.assign(axis(values), options);
}

const measure = document.createElement("canvas").getContext("2d");
function axisWidth(labels) {
  if (!labels) return 40;
  measure.font = AXIS_FONT;
  let widest = 0;
  for (const label of labels) widest = Math.max(widest, measure.measureText(label).width);
  return Math.ceil(widest) + 14;
}

// Nice bounds around the values and the thresholds drawn on the chart, so a rule's line shows.
function niceRange(min, max, thresholds) {
  if (min == null || max == null) return [0, 1];
  for (const threshold of thresholds) {
    min = Math.min(min, threshold.value);
    max = Math.max(max, threshold.value);
  }
  const [low, high] = uPlot.rangeNum(min, max, 0.1, true);
  return [min >= 0 && low < 0 ? 0 : low, high];
}

// The tooltip's lines for the point at `idx`: when, then what, with units.
function describePoint(card, u, idx) {
  const x = card.xs[idx];
  if (x == null) return null;
  const unit = card.metric.unit;
  const lines = [pointTime(x, card.bucket)];
  if (card.heatmap) {
    lines.push("avg " + statText(card.ys[idx], unit));
    lines.push(statText(card.mins[idx], unit) + " … " + statText(card.maxs[idx], unit));
    lines.push(card.counts[idx] + " values");
    return lines;
  }
  if (showsRate(card)) {
    lines.push(statText(u.data[1][idx], unit, true));
    if (!card.bucket) lines.push("total " + statText(card.ys[idx], unit));
    return lines;
  }
  lines.push((card.bucket ? "avg " : "") + statText(card.ys[idx], unit));
  if (card.bucket) lines.push(statText(card.mins[idx], unit) + " … " + statText(card.maxs[idx], unit));
  return lines;
}
