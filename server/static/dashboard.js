// The dashboard page: one card per metric, fed only by the WebSocket.
// Every text from the server is set with textContent, never as HTML.
"use strict";

(function () {
  const MAX_POINTS = 300; // per chart: memory stays flat however long the page is open
  const PING_EVERY_MS = 20000; // browsers expose no WebSocket ping, so we send our own
  const grid = document.getElementById("metrics");
  const statusEl = document.getElementById("connection");
  const noticeEl = document.getElementById("notice");
  const template = document.getElementById("card-template");
  const cards = new Map(); // metric id -> card state
  let socket = null;
  let attempt = 0;
  let pingTimer = null;
  let stopped = false;

  function setStatus(kind, text) {
    statusEl.className = "status status-" + kind;
    statusEl.textContent = text;
  }

  function notice(text) {
    noticeEl.hidden = !text;
    noticeEl.textContent = text || "";
  }

  function formatValue(value) {
    if (!Number.isFinite(value)) return "–";
    const abs = Math.abs(value);
    return abs >= 1000 ? value.toFixed(0) : abs >= 10 ? value.toFixed(1) : value.toFixed(2);
  }

  function chartWidth(card) {
    return Math.max(200, card.chartEl.clientWidth || 300);
  }

  function makeChart(card) {
    const isHistogram = card.metric.type === "histogram";
    const series = {
      label: card.metric.name,
      stroke: isHistogram ? "#8250df" : card.metric.type === "counter" ? "#1a7f37" : "#0969da",
      width: 2,
    };
    if (isHistogram) {
      series.fill = "rgba(130, 80, 223, 0.35)";
      series.paths = uPlot.paths.bars({ size: [0.8, 12] });
      series.points = { show: false };
    }
    const opts = {
      width: chartWidth(card),
      height: 160,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{ stroke: "#57606a" }, { stroke: "#57606a", size: 50 }],
      series: [{}, series],
    };
    card.chart = new uPlot(opts, [card.xs, card.ys], card.chartEl);
  }

  function addCard(metric) {
    const node = template.content.firstElementChild.cloneNode(true);
    node.dataset.metricId = String(metric.id);
    node.querySelector(".metric-name").textContent = metric.name;
    node.querySelector(".metric-type").textContent = metric.type;
    node.querySelector(".metric-description").textContent = metric.description;
    node.querySelector(".unit").textContent = metric.unit;
    grid.appendChild(node);
    const card = {
      metric: metric,
      node: node,
      valueEl: node.querySelector(".value"),
      chartEl: node.querySelector(".chart"),
      xs: [],
      ys: [],
      chart: null,
    };
    makeChart(card);
    cards.set(metric.id, card);
  }

  function showConfig(config) {
    document.getElementById("dashboard-name").textContent = config.name;
    document.getElementById("dashboard-description").textContent = config.description;
    for (const card of cards.values()) card.chart.destroy();
    cards.clear();
    grid.replaceChildren();
    config.metrics.forEach(addCard);
    if (config.metrics.length === 0) notice("This dashboard has no metrics yet.");
  }

  function pushPoint(card, timestamp, value) {
    const x = Date.parse(timestamp) / 1000;
    const last = card.xs.length ? card.xs[card.xs.length - 1] : -Infinity;
    if (x < last) return; // older than what we show: already drawn
    card.xs.push(x);
    card.ys.push(value);
    if (card.xs.length > MAX_POINTS) {
      card.xs.splice(0, card.xs.length - MAX_POINTS);
      card.ys.splice(0, card.ys.length - MAX_POINTS);
    }
  }

  function redraw(card) {
    card.chart.setData([card.xs, card.ys]);
    const n = card.ys.length;
    card.valueEl.textContent = n ? formatValue(card.ys[n - 1]) : "–";
    card.node.classList.toggle("no-data", n === 0);
  }

  function showHistory(payload) {
    const card = cards.get(payload.metric_id);
    if (!card) return;
    card.xs = [];
    card.ys = [];
    payload.values.forEach((v) => pushPoint(card, v.timestamp, v.value));
    redraw(card);
  }

  function showUpdate(payload) {
    const card = cards.get(payload.metric_id);
    if (!card) return;
    pushPoint(card, payload.timestamp, payload.value);
    redraw(card);
  }

  function onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    const payload = message.payload;
    switch (message.action) {
      case "authentication":
        if (payload.status_code === 200) {
          attempt = 0;
          setStatus("connected", "live");
          notice("");
        }
        break;
      case "dashboard_config":
        showConfig(payload);
        break;
      case "metric_history":
        showHistory(payload);
        break;
      case "metric_update":
        showUpdate(payload);
        break;
      case "error":
        console.warn("server error:", payload);
        break;
    }
  }

  function onClose(event) {
    clearInterval(pingTimer);
    if (stopped) return;
    if (event.code === 4401) {
      stopped = true;
      setStatus("offline", "signed out");
      window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      return;
    }
    if (event.code === 4403) {
      stopped = true;
      setStatus("offline", "no access");
      notice("You are not a member of this dashboard.");
      return;
    }
    // Exponential backoff with full jitter, capped at 30 s.
    const delay = Math.random() * Math.min(30000, 500 * 2 ** attempt);
    attempt += 1;
    setStatus("reconnecting", "reconnecting…");
    setTimeout(connect, delay);
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + grid.dataset.socket);
    socket.addEventListener("message", onMessage);
    socket.addEventListener("close", onClose);
    socket.addEventListener("open", () => {
      pingTimer = setInterval(() => {
        if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify({ action: "ping" }));
      }, PING_EVERY_MS);
    });
  }

  window.addEventListener("resize", () => {
    for (const card of cards.values()) card.chart.setSize({ width: chartWidth(card), height: 160 });
  });
  window.addEventListener("offline", () => setStatus("offline", "offline"));
  connect();
})();
