// How the dashboard page writes numbers, units, times and ages, as pure functions:
// no DOM, no clock, no state. Numbers and times follow the browser's locale and time
// zone (Intl); times on charts are in seconds since the epoch, as uPlot keeps them.
// tests/browser/test_page_modules.py checks them case by case in Chromium.

const BYTE_UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];

const plain = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 2 });

// 24-hour clocks, as precise as the span they label needs.
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
const clockSeconds = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const dayClock = new Intl.DateTimeFormat(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit", hour12: false });
const dayLabel = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric" });
const tipClock = new Intl.DateTimeFormat(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

// "1,234.6", "0.12", "1.5M"; "–" for no number.
export function formatValue(value) {
  if (!Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 100000) return compact.format(value);
  if (abs >= 100) return plain.format(Math.round(value * 10) / 10);
  return plain.format(value);
}

// Byte counts in binary units (1.5 GiB), so "B" never reads as billions of bytes.
export function isBytes(unit) {
  return unit === "bytes" || unit === "B";
}

function scaleBytes(value) {
  let scaled = value;
  let i = 0;
  while (Math.abs(scaled) >= 1024 && i < BYTE_UNITS.length - 1) {
    scaled /= 1024;
    i += 1;
  }
  return [plain.format(scaled), BYTE_UNITS[i]];
}

export function formatBytes(value) {
  return Number.isFinite(value) ? scaleBytes(value).join(" ") : "–";
}

// A value as its card shows it: [number, unit].
export function withUnit(value, unit) {
  return isBytes(unit) && Number.isFinite(value) ? scaleBytes(value) : [formatValue(value), unit];
}

// A number on a histogram's value axis: bytes with their unit, others bare.
export function formatStat(value, unit) {
  return isBytes(unit) ? formatBytes(value) : formatValue(value);
}

// A value with its unit as the card states it; `perSecond`: a counter's rate.
export function statText(value, unit, perSecond) {
  if (!Number.isFinite(value)) return "–";
  const [number, shown] = withUnit(value, unit);
  const suffix = perSecond ? (shown ? " " + shown + "/s" : "/s") : shown ? " " + shown : "";
  return number + suffix;
}

// How long ago, roughly: "45 s", "12 min", "3 h".
export function formatAge(ms) {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 120) return seconds + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return Math.round(seconds / 3600) + " h";
}

// A time axis' labels at `splits` (seconds) on a scale `span` seconds wide, fitting the
// ticks' step: seconds, hours and minutes, the weekday with them, or days.
export function timeTicks(splits, span) {
  const step = splits.length > 1 ? splits[1] - splits[0] : span;
  const format = step >= 86400 ? dayLabel : span > 2 * 86400 ? dayClock : step < 60 ? clockSeconds : clock;
  return splits.map((s) => format.format(new Date(s * 1000)));
}

// When a point was (seconds): to the second, or a bucket's start – end.
export function pointTime(x, bucket) {
  const start = tipClock.format(new Date(x * 1000));
  return bucket ? start + " – " + clock.format(new Date((x + bucket) * 1000)) : start;
}

// A moment (milliseconds) on the 24-hour clock: "09:30:05".
export function clockTime(ms) {
  return clockSeconds.format(new Date(ms));
}
