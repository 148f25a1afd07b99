// A card's points, as its chart draws them: parallel arrays sorted by time (seconds
// since the epoch) — xs, ys (a value, or a bucket's average), mins, maxs, counts, ids,
// incs (a counter's increase since the point before) and sketches (a histogram bucket's
// values, Map sketch key -> count, for heatmaps) — of raw values, or of buckets of
// `card.bucket` seconds. No DOM and no socket: dashboard.js feeds them and draws them.

import { rise, Sketch } from "./stats.js";

const MAX_POINTS = 1200; // per chart, whatever the range: memory stays flat for days
// A raw counter's rate is taken over this share of the range: 10 s on 5 min.
const RATE_WINDOW = 1 / 30;

// An ISO 8601 timestamp of the protocol, in seconds.
export function parseTime(timestamp) {
  return Date.parse(timestamp) / 1000;
}

export function emptyBuffers(card, bucket) {
  card.bucket = bucket;
  card.xs = [];
  card.ys = [];
  card.mins = [];
  card.maxs = [];
  card.counts = [];
  card.ids = [];
  card.incs = []; // a counter's increase per point, since the point before (stats.js rise)
  card.sketches = []; // a histogram bucket's values, {sketch key: count} (heatmaps)
  card.summary = null; // the range's, from the server, kept current (docs/protocol.md "Ranges")
}

// Points older than `span` seconds before the newest go, and any beyond MAX_POINTS.
export function trim(card, span) {
  const n = card.xs.length;
  if (!n) return;
  const oldest = card.xs[n - 1] - span;
  let drop = 0;
  while (drop < n && card.xs[drop] < oldest) drop++;
  drop = Math.max(drop, n - MAX_POINTS);
  if (drop > 0) {
    for (const list of [card.xs, card.ys, card.mins, card.maxs, card.counts, card.ids, card.incs, card.sketches]) {
      list.splice(0, drop);
    }
  }
}

// A history replaces what the card holds (its values may be buckets): `payload` is a
// `metric_history` message's (docs/protocol.md "Ranges").
export function replacePoints(card, payload, span) {
  emptyBuffers(card, payload.bucket_seconds || 0);
  card.past = payload.live === false;
  card.summary = readSummary(payload.summary);
  card.lastId = payload.last_id;
  card.latest = NaN;
  let previous = null;
  for (const v of payload.values) {
    const count = v.count || 1;
    const min = v.min != null ? v.min : v.value;
    const max = v.max != null ? v.max : v.value;
    // A bucket's increase comes from the server; raw values' from the value before.
    const increase = v.increase != null ? v.increase : card.bucket ? 0 : rise(previous, v.value);
    const sketch = v.sketch ? new Map(v.sketch) : null; // a histogram bucket's (heatmaps)
    placePoint(card, parseTime(v.timestamp), v.value, min, max, count, v.id != null ? v.id : null, increase, sketch);
    card.latest = v.value;
    previous = v.value;
  }
  if (card.summary && card.summary.lastValue != null) card.latest = card.summary.lastValue;
  trim(card, span);
}

function readSummary(summary) {
  if (!summary || !summary.count) return null;
  return {
    firstX: parseTime(summary.first_timestamp),
    lastX: parseTime(summary.last_timestamp),
    lastValue: summary.last_value != null ? summary.last_value : null,
    sketch: summary.sketch ? new Sketch(summary.sketch) : null,
    loadedAt: Date.now() / 1000,
    reloading: false,
  };
}

// A new value (stored as `id`) at `x`, with the counter `increase` it makes: into its
// bucket, or a point of its own. `newest`: no point the card holds is later.
export function addPoint(card, id, x, value, increase, newest) {
  if (card.bucket) {
    const start = Math.floor(x / card.bucket) * card.bucket;
    const i = pointAt(card, start);
    if (i < card.xs.length && card.xs[i] === start) {
      const count = card.counts[i];
      card.ys[i] = (card.ys[i] * count + value) / (count + 1);
      card.mins[i] = Math.min(card.mins[i], value);
      card.maxs[i] = Math.max(card.maxs[i], value);
      card.counts[i] = count + 1;
      card.ids[i] = Math.max(card.ids[i] || 0, id || 0) || null;
      card.incs[i] += increase;
      addToBucketSketch(card, i, value);
    } else {
      placePoint(card, start, value, value, value, 1, id, increase, bucketSketch(card, value));
    }
  } else {
    placePoint(card, x, value, value, value, 1, id, increase);
  }
  if (newest) {
    if (card.newestX) card.gap = x - card.newestX; // how often values come (a rate's newest bucket)
    card.newestX = x;
    card.latest = value;
  }
  if (id != null) card.lastId = Math.max(card.lastId || 0, id);
}

// The index of the first point at or after x (the end, for the usual newest value).
function pointAt(card, x) {
  let i = card.xs.length;
  while (i > 0 && card.xs[i - 1] >= x) i--;
  return i;
}

// Points stay sorted by time, for the chart; after those with the same time.
function placePoint(card, x, y, min, max, count, id, increase, sketch) {
  let i = card.xs.length;
  while (i > 0 && card.xs[i - 1] > x) i--;
  card.xs.splice(i, 0, x);
  card.ys.splice(i, 0, y);
  card.mins.splice(i, 0, min);
  card.maxs.splice(i, 0, max);
  card.counts.splice(i, 0, count);
  card.ids.splice(i, 0, id);
  card.incs.splice(i, 0, increase);
  card.sketches.splice(i, 0, sketch || null);
}

// A new value's sketch key, as the range's sketch keys them (docs/protocol.md "Ranges").
function bucketSketch(card, value) {
  if (!card.heatmap || !card.summary || !card.summary.sketch) return null;
  return new Map([[card.summary.sketch.keyOf(value), 1]]);
}

function addToBucketSketch(card, i, value) {
  const sketch = card.sketches[i];
  if (!sketch || !card.summary || !card.summary.sketch) return;
  const key = card.summary.sketch.keyOf(value);
  sketch.set(key, (sketch.get(key) || 0) + 1);
}

// The newest value the card has seen (a bucket's average is not one).
export function lastValue(card) {
  if (card.summary && card.summary.lastValue != null) return card.summary.lastValue;
  return card.bucket ? null : card.ys[card.ys.length - 1];
}

// The average of every value in view (a bucket weighs as many as it holds).
export function average(card) {
  let sum = 0;
  let count = 0;
  for (let i = 0; i < card.ys.length; i++) {
    sum += card.ys[i] * card.counts[i];
    count += card.counts[i];
  }
  return count ? sum / count : NaN;
}

// [lowest, highest] of values, nulls left out.
export function extent(values) {
  let low = Infinity;
  let high = -Infinity;
  for (const v of values) {
    if (v == null) continue;
    if (v < low) low = v;
    if (v > high) high = v;
  }
  return [low, high];
}

// Per second over the range in view: the increases between its values (resets
// included) over the time from its first value to its newest (the server's `rate`).
export function counterRate(card) {
  const n = card.xs.length;
  if (n < 2 && !card.bucket) return NaN;
  let increase = 0;
  for (let i = card.bucket ? 0 : 1; i < n; i++) increase += card.incs[i];
  const first = card.bucket && card.summary ? Math.max(card.summary.firstX, card.xs[0]) : card.xs[0];
  const last = card.bucket && card.summary ? card.summary.lastX : card.xs[n - 1];
  return last > first ? increase / (last - first) : NaN;
}

// A counter per second at each point, on a range `span` seconds long. Raw values: the
// increase over the last RATE_WINDOW of the range (at least the step from the value
// before), so an integer counter read every second does not zigzag between 0 and 2/s.
// Buckets: the bucket's increase (from the value before it) over its width; the newest
// runs to its newest value.
export function counterRates(card, span) {
  const n = card.xs.length;
  const rates = new Array(n);
  if (!card.bucket) {
    const window = span * RATE_WINDOW;
    let from = 0; // the value the window starts at
    let increase = 0; // card.incs over (from, i]
    for (let i = 0; i < n; i++) {
      if (i > 0) increase += card.incs[i];
      while (from < i - 1 && card.xs[i] - card.xs[from + 1] >= window) increase -= card.incs[++from];
      const width = card.xs[i] - card.xs[from];
      rates[i] = i > 0 && width > 0 ? increase / width : null;
    }
    return rates;
  }
  for (let i = 0; i < n; i++) {
    const width = i < n - 1 || !card.summary ? card.bucket : Math.min(card.bucket, card.summary.lastX - card.xs[i] + (card.gap || 0));
    rates[i] = width > 0 ? card.incs[i] / width : null;
  }
  return rates;
}
