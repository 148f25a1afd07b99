// What the dashboard's charts carry besides their series (chart.js makes the
// charts): the tooltip under the pointer, alert thresholds, firing periods and
// events, a histogram's heatmap on long ranges, and the favicon's count of firing
// alerts. Everything here is drawn on the chart's canvas or set as text; drawing
// is one pass over what is in view, so twelve streaming cards stay smooth.

// Every time chart of the page moves its crosshair with the others (uPlot's cursor sync).
export const SYNC_KEY = "dashboard-time";
const TIP_GAP = 12; // px between the pointer and the tooltip

// The tooltip: `describe(u, idx)` gives its lines (text) for the point under the
// pointer, or null. Only the chart under the pointer shows one; the others show
// the synced crosshair alone.
export function tooltipPlugin(describe) {
  let tip = null;
  let hovered = false;

  function hide() {
    if (tip && !tip.hidden) tip.hidden = true;
  }

  let size = null; // measured once per text length: no forced layout on every frame
  function place(u, length) {
    if (!size || size.length !== length) size = { length: length, width: tip.offsetWidth, height: tip.offsetHeight };
    const width = size.width;
    const height = size.height;
    let left = u.cursor.left + TIP_GAP;
    if (left + width > u.over.clientWidth) left = Math.max(0, u.cursor.left - width - TIP_GAP);
    const top = Math.max(0, Math.min(u.cursor.top - height - TIP_GAP, u.over.clientHeight - height));
    tip.style.transform = "translate(" + Math.round(left) + "px," + Math.round(top) + "px)";
  }

  return {
    hooks: {
      init: (u) => {
        tip = document.createElement("div");
        tip.className = "chart-tip";
        tip.hidden = true;
        u.over.appendChild(tip);
        // A tap on a phone arrives as pointerdown then a synthetic mousemove.
        u.over.addEventListener("pointerdown", () => { hovered = true; });
        u.over.addEventListener("mouseenter", () => { hovered = true; });
        u.over.addEventListener("mouseleave", () => { hovered = false; hide(); });
      },
      setCursor: (u) => {
        const idx = u.cursor.idx;
        const lines = hovered && idx != null ? describe(u, idx) : null;
        if (!lines) return hide();
        const rows = tip.children;
        for (let i = 0; i < lines.length; i++) {
          if (i >= rows.length) tip.appendChild(document.createElement("div"));
          if (rows[i].textContent !== lines[i]) rows[i].textContent = lines[i];
        }
        while (rows.length > lines.length) tip.lastChild.remove();
        tip.hidden = false;
        place(u, lines.join("").length);
      },
    },
  };
}

// A rule's threshold, the periods it fired and its events, on the chart of its
// metric. `marks()` gives {thresholds: [{value, firing}], periods: [[from, to]],
// events: [{t, firing}]} in the chart's units and seconds, or null.
export function alertPlugin(marks, colors) {
  function shade(u) {
    const m = marks();
    if (!m || !m.periods.length) return;
    const { left, top, width, height } = u.bbox;
    const ctx = u.ctx;
    ctx.save();
    ctx.fillStyle = colors().bad + "24";
    for (const [from, to] of m.periods) {
      const x0 = Math.max(left, u.valToPos(from, "x", true));
      const x1 = Math.min(left + width, u.valToPos(to, "x", true));
      if (x1 > x0) ctx.fillRect(x0, top, x1 - x0, height);
    }
    ctx.restore();
  }

  function lines(u) {
    const m = marks();
    if (!m) return;
    const { left, top, width, height } = u.bbox;
    const ctx = u.ctx;
    const c = colors();
    const px = devicePixelRatio || 1;
    ctx.save();
    ctx.lineWidth = 1.5 * px;
    ctx.setLineDash([6 * px, 4 * px]);
    for (const threshold of m.thresholds) {
      const y = Math.round(u.valToPos(threshold.value, "y", true)) + 0.5;
      if (y < top || y > top + height) continue;
      ctx.strokeStyle = threshold.firing ? c.bad : c.warn;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
    }
    ctx.setLineDash([]);
    // Events: a small triangle on the time axis, red when the rule fired.
    const size = 5 * px;
    for (const event of m.events) {
      const x = u.valToPos(event.t, "x", true);
      if (x < left || x > left + width) continue;
      ctx.fillStyle = event.firing ? c.bad : c.ok;
      ctx.beginPath();
      ctx.moveTo(x, top + height - size * 1.6);
      ctx.lineTo(x - size, top + height);
      ctx.lineTo(x + size, top + height);
      ctx.closePath();
      ctx.fill();
    }
    ctx.restore();
  }

  return { hooks: { drawAxes: shade, draw: lines } };
}

// A histogram on a long range: per time bucket (columns) the count of values per
// value band (rows), from `heat()` = {xs, bucket, low, high, rows, cells (rows per
// column, row 0 lowest), max} or null. Darker: more values.
export function heatmapPlugin(heat, color) {
  function draw(u) {
    const h = heat();
    if (!h || !h.max) return;
    const { left, top, width, height } = u.bbox;
    const ctx = u.ctx;
    const rowHeight = height / h.rows;
    const base = color();
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    for (let i = 0; i < h.xs.length; i++) {
      const x0 = u.valToPos(h.xs[i], "x", true);
      const x1 = u.valToPos(h.xs[i] + h.bucket, "x", true);
      if (x1 < left || x0 > left + width) continue;
      for (let r = 0; r < h.rows; r++) {
        const n = h.cells[i * h.rows + r];
        if (!n) continue;
        // The square root keeps a few outliers visible beside the bulk.
        const alpha = Math.round(40 + 215 * Math.sqrt(n / h.max));
        ctx.fillStyle = base + alpha.toString(16).padStart(2, "0");
        ctx.fillRect(x0, top + height - (r + 1) * rowHeight, Math.max(1, x1 - x0 - 0.5), rowHeight - 0.5);
      }
    }
    ctx.restore();
  }
  return { hooks: { drawAxes: draw } };
}

// The counts of a heatmap from per-bucket sketches (Map key -> count) and the
// sketch's mapping (RangeStats.Sketch): `rows` bands between low and high.
export function heatCells(sketches, mapping, low, high, rows) {
  const cells = new Float64Array(sketches.length * rows);
  const span = high - low || 1;
  let max = 0;
  for (let i = 0; i < sketches.length; i++) {
    const sketch = sketches[i];
    if (!sketch) continue;
    for (const [key, n] of sketch) {
      const value = mapping.valueOf(key);
      const r = Math.max(0, Math.min(rows - 1, Math.floor(((value - low) / span) * rows)));
      const at = i * rows + r;
      cells[at] += n;
      if (cells[at] > max) max = cells[at];
    }
  }
  return { cells: cells, max: max };
}

// The favicon with the number of firing alerts on it; the plain one at zero.
let plainIcon = null;
export function setFaviconCount(count, colors) {
  const link = document.querySelector("link[rel='icon']");
  if (!link) return;
  if (plainIcon === null) plainIcon = { href: link.href, type: link.type };
  if (!count) {
    link.type = plainIcon.type;
    link.href = plainIcon.href;
    return;
  }
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 32;
  const ctx = canvas.getContext("2d");
  const gradient = ctx.createLinearGradient(0, 0, 32, 32);
  gradient.addColorStop(0, "#2da44e");
  gradient.addColorStop(0.55, "#0969da");
  gradient.addColorStop(1, "#8250df");
  ctx.fillStyle = gradient;
  ctx.fillRect(2, 2, 28, 28);
  ctx.fillStyle = colors.bad;
  ctx.beginPath();
  ctx.arc(20, 20, 12, 0, 2 * Math.PI);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.font = "bold 17px system-ui, sans-serif";
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(count > 9 ? "9+" : String(count), 20, 21);
  link.type = "image/png";
  link.href = canvas.toDataURL("image/png");
}
