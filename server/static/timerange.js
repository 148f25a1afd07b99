// Time ranges of the dashboard page, as pure functions: no DOM, no clock of their own
// (every function that needs "now" is given it, in milliseconds). rangecontrols.js is
// the DOM around them; dashboard.js asks them what to request and what to show.
//
// A view is one of:
//   {range: "1h"}                     a preset: the last 5m/1h/24h/7d (the protocol's `range`)
//   {from: "now-6h", to: "now"}       relative: moves with the clock while `to` is now
//   {from: "now-2d", to: "now-1d"}    relative, ended in the past
//   {from: "2026-12-07T09:30:00.000Z", to: "2026-12-07T10:30:00.000Z"}   absolute (UTC)
// `from` and `to` are expressions: "now", "now-6h" (s, m, h, d, w), an ISO 8601 time with
// an offset, or "YYYY-MM-DD HH:MM[:SS]" in the browser's time zone.

import { VOCABULARY } from "./vocabulary.js";

// The protocol's preset ranges, name -> seconds.
export const PRESETS = VOCABULARY.ranges;
// The server's limits (common/schemas.py: MIN_SPAN, MAX_SPAN, MAX_AGE, MAX_AHEAD).
export const MIN_SPAN_MS = 10 * 1000;
const MAX_SPAN_MS = 400 * 86400 * 1000;
const MAX_AGE_MS = 3660 * 86400 * 1000;
const MAX_AHEAD_MS = 86400 * 1000;
const UNITS = { s: 1000, m: 60000, h: 3600000, d: 86400000, w: 604800000 };
const RELATIVE = /^now(?:\s*-\s*(\d{1,6})\s*([smhdw]))?$/;
const LOCAL = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/;
const ZONED = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})$/i;

// Milliseconds since the epoch that an expression names at `now`; throws a readable Error.
export function parseTime(text, now) {
  const value = String(text == null ? "" : text).trim();
  const relative = RELATIVE.exec(value);
  if (relative) return relative[1] ? now - Number(relative[1]) * UNITS[relative[2]] : now;
  const local = LOCAL.exec(value);
  if (local) {
    const [, y, mo, d, h, mi, s] = local.map(Number);
    const date = new Date(y, mo - 1, d, h, mi, s || 0);
    // 2026-02-31 would roll over to March: refused rather than guessed.
    if (date.getMonth() !== mo - 1 || date.getDate() !== d || date.getHours() !== h) {
      throw new Error("no such time: " + value);
    }
    return date.getTime();
  }
  if (ZONED.test(value)) {
    const ms = Date.parse(value);
    if (Number.isFinite(ms)) return ms;
  }
  throw new Error('not a time: "' + value.slice(0, 40) + '" (try now-6h, or 2026-12-07 09:30)');
}

export function isRelative(text) {
  return RELATIVE.test(String(text).trim());
}

// {from, to, live, span} in milliseconds; live: the range ends now.
export function resolve(view, now) {
  if (view.range) return { from: now - PRESETS[view.range] * 1000, to: now, live: true, span: PRESETS[view.range] * 1000 };
  const from = parseTime(view.from, now);
  const to = parseTime(view.to, now);
  return { from: from, to: Math.min(to, now), live: to >= now, span: Math.min(to, now) - from };
}

// Why the server would refuse this view, or null.
export function problem(view, now) {
  if (view.range) return PRESETS[view.range] ? null : "unknown range " + view.range;
  let from, to;
  try {
    from = parseTime(view.from, now);
    to = parseTime(view.to, now);
  } catch (error) {
    return error.message;
  }
  if (to <= from) return "the end must be after the start";
  if (to > now + MAX_AHEAD_MS) return "the end is more than a day from now";
  if (from < now - MAX_AGE_MS) return "the start is more than ten years ago";
  if (Math.min(to, now) - from < MIN_SPAN_MS) return "the range must span at least 10 seconds before now";
  if (to - from > MAX_SPAN_MS) return "the range must span at most 400 days";
  return null;
}

// The `history` payload's range fields (docs/protocol.md, "Ranges"): a preset by name,
// else from (and to, unless the range ends now) as ISO 8601 in UTC.
export function historyFields(view, now) {
  if (view.range) return { range: view.range };
  const r = resolve(view, now);
  const fields = { from: new Date(r.from).toISOString() };
  if (!r.live) fields.to = new Date(r.to).toISOString();
  return fields;
}

// "6h", "90m", "2d": the largest unit that divides the span.
export function formatSpan(ms) {
  for (const unit of ["w", "d", "h", "m", "s"]) {
    if (ms >= UNITS[unit] && ms % UNITS[unit] === 0) return ms / UNITS[unit] + unit;
  }
  return Math.max(1, Math.round(ms / 1000)) + "s";
}

function absolute(from, to) {
  return { from: new Date(Math.round(from)).toISOString(), to: new Date(Math.round(to)).toISOString() };
}

// A range that reaches now becomes "the last <span>", so it stays live.
function ending(from, to, now) {
  if (to >= now) return { from: "now-" + formatSpan(Math.max(MIN_SPAN_MS, Math.round((now - from) / 1000) * 1000)), to: "now" };
  return absolute(from, to);
}

// Exactly [from, to] (a drag on a chart): absolute, so it no longer moves.
export function zoomTo(from, to, now) {
  let start = Math.min(from, to);
  let end = Math.min(Math.max(from, to), now);
  if (end - start < MIN_SPAN_MS) start = end - MIN_SPAN_MS;
  return absolute(start, end);
}

// Twice the span around the same middle (a live range keeps ending now).
export function zoomOut(view, now) {
  const r = resolve(view, now);
  const span = Math.min(MAX_SPAN_MS, r.span * 2);
  if (r.live) return { from: "now-" + formatSpan(Math.round(span / 1000) * 1000), to: "now" };
  const middle = (r.from + r.to) / 2;
  return ending(middle - span / 2, middle + span / 2, now);
}

// Half a span earlier (direction -1) or later (+1); later stops at now, and is live there.
export function shift(view, direction, now) {
  const r = resolve(view, now);
  const step = (r.span / 2) * direction;
  if (direction > 0 && r.live) return view;
  const to = Math.min(r.to + step, now);
  return ending(to - r.span, to, now);
}

// ---- the URL: #range=1h, or #from=...&to=... (other keys kept as they are) ----

function readHash(hash) {
  const params = new Map();
  for (const part of String(hash || "").replace(/^#/, "").split("&")) {
    if (!part) continue;
    const i = part.indexOf("=");
    const key = i < 0 ? part : part.slice(0, i);
    let value = i < 0 ? "" : part.slice(i + 1);
    try {
      value = decodeURIComponent(value.replace(/\+/g, " "));
    } catch (e) {
      continue;
    }
    params.set(key, value);
  }
  return params;
}

export function viewFromHash(hash, now) {
  const params = readHash(hash);
  if (params.has("from")) {
    const view = { from: params.get("from"), to: params.get("to") || "now" };
    return problem(view, now) ? null : view;
  }
  const range = params.get("range");
  return range && PRESETS[range] ? { range: range } : null;
}

export function hashWithView(hash, view) {
  const params = readHash(hash);
  params.delete("range");
  params.delete("from");
  params.delete("to");
  const own = view.range ? [["range", view.range]] : [["from", view.from], ["to", view.to]];
  const parts = own.concat(Array.from(params.entries())).map(([key, value]) =>
    value === "" ? key : key + "=" + String(value).replace(/[%&#=+ ]/g, encodeURIComponent),
  );
  return "#" + parts.join("&");
}

// ---- showing times: the browser's zone, named ----

function pad(n) {
  return String(n).padStart(2, "0");
}

// "2026-12-07 09:30:00" in the browser's zone: what the picker shows and reads back.
export function formatLocal(ms) {
  const d = new Date(ms);
  return (
    d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
    pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds())
  );
}

// "UTC+01:00" at that moment (zones change offset over the year).
export function utcOffset(ms) {
  const minutes = -new Date(ms).getTimezoneOffset();
  const sign = minutes < 0 ? "-" : "+";
  const abs = Math.abs(minutes);
  return "UTC" + sign + pad(Math.floor(abs / 60)) + ":" + pad(abs % 60);
}

// "Europe/Paris (UTC+01:00)", or the offset alone if the browser names no zone.
export function zoneName(ms) {
  let name = "";
  try {
    name = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch (e) {
    name = "";
  }
  return name ? name + " (" + utcOffset(ms) + ")" : utcOffset(ms);
}

// What the view is, for people: "Last 6 hours", "2026-12-05 10:00:00 to 2026-12-06 10:00:00".
export function describe(view, now) {
  const names = { "5m": "Last 5 minutes", "1h": "Last hour", "24h": "Last 24 hours", "7d": "Last 7 days" };
  if (view.range) return names[view.range];
  if (view.to === "now" && isRelative(view.from)) return "Last " + String(view.from).replace(/^now\s*-\s*/, "");
  const r = resolve(view, now);
  return formatLocal(r.from) + " to " + (r.live ? "now" : formatLocal(r.to));
}
