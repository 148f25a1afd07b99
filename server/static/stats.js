// A range's statistics as the server states them (common/stats.py, docs/protocol.md
// "Ranges"), kept current with live values: a counter's increase (a decrease is a
// reset) and a histogram's log-scale sketch, from which percentiles are read.

// A counter's increase from `previous` to `value`: a decrease is a reset to zero.
export function rise(previous, value) {
  if (previous == null) return 0;
  return value >= previous ? value - previous : value;
}

// The 0-based rank of the value a percentile names, as the server takes it.
function rankOf(percentile, count) {
  return Math.floor((percentile / 100) * (count - 1));
}

// Exact, from the values themselves (sorted ascending).
export function exactPercentile(sorted, percentile) {
  return sorted.length ? sorted[rankOf(percentile, sorted.length)] : NaN;
}

// The server's sketch message as a live sketch: its keys, counts and mapping.
export function Sketch(message) {
  this.lnGamma = Math.log(message.gamma);
  this.gamma = message.gamma;
  this.keyOffset = message.key_offset;
  this.minMagnitude = message.min_magnitude;
  this.counts = new Map(message.bins);
  this.total = message.bins.reduce((sum, bin) => sum + bin[1], 0);
}

Sketch.prototype.keyOf = function (value) {
  const magnitude = Math.abs(value);
  if (magnitude < this.minMagnitude) return 0;
  const key = Math.ceil(Math.log(Math.min(magnitude, Number.MAX_VALUE)) / this.lnGamma) + this.keyOffset;
  return value > 0 ? key : -key;
};

// What a key stands for: within the sketch's relative error of every value under it.
Sketch.prototype.valueOf = function (key) {
  if (key === 0) return 0;
  const magnitude = (2 * Math.pow(this.gamma, Math.abs(key) - this.keyOffset)) / (this.gamma + 1);
  return key > 0 ? magnitude : -magnitude;
};

Sketch.prototype.add = function (value) {
  const key = this.keyOf(value);
  this.counts.set(key, (this.counts.get(key) || 0) + 1);
  this.total += 1;
};

// Kept between the exact `low` and `high` of the values, as the server does.
Sketch.prototype.percentile = function (percentile, low, high) {
  if (!this.total) return NaN;
  const rank = rankOf(percentile, this.total);
  let seen = 0;
  for (const key of this.keys()) {
    seen += this.counts.get(key);
    if (seen > rank) return Math.min(Math.max(this.valueOf(key), low), high);
  }
  return high;
};

Sketch.prototype.keys = function () {
  return Array.from(this.counts.keys()).sort((a, b) => a - b);
};
