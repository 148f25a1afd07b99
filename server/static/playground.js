// The WebSocket playground: connect to a dashboard, send any message, see
// every message with its time. Everything shown is set as text, never HTML.

const MAX_LOG = 500; // entries kept: the page stays light however long it runs
const root = document.getElementById("playground");
const statusEl = document.getElementById("connection");
const select = document.getElementById("dashboard-select");
const connectButton = document.getElementById("connect");
const disconnectButton = document.getElementById("disconnect");
const sendButton = document.getElementById("send");
const composer = document.getElementById("composer");
const composerError = document.getElementById("composer-error");
const log = document.getElementById("log");
const countEl = document.getElementById("message-count");
const emptyLog = document.getElementById("log-empty");
const typesEl = document.getElementById("message-types");
const examplesEl = document.getElementById("examples");
const filterEl = document.getElementById("log-filter");
const pauseButton = document.getElementById("pause");
const pausedNote = document.getElementById("paused-note");
const autoScroll = document.getElementById("auto-scroll");
const compact = document.getElementById("compact");
let socket = null;
let count = 0;
let paused = false;
let held = []; // entries that came in while paused, oldest first (at most MAX_LOG)
let metricIds = []; // of the connected dashboard, to make the examples real
const lastIds = new Map(); // metric id -> newest value id seen, for `resume`

const hook = { received: [] }; // for tests: every message received, parsed
window.__playground = hook;

function setStatus(kind, text) {
  statusEl.dataset.state = kind;
  statusEl.querySelector(".status-text").textContent = text;
}

// A message as shown: indented, or on one line in the compact view.
// The compact line leaves out the action, which the entry shows already.
function formatted(text) {
  try {
    const message = JSON.parse(text);
    if (!compact.checked) return JSON.stringify(message, null, 2);
    const inLine = message && typeof message === "object" && "action" in message ? message.payload : message;
    return inLine === undefined ? "" : JSON.stringify(inLine);
  } catch (e) {
    return compact.checked ? text.replace(/\s+/g, " ") : text;
  }
}

function addFilterOption(action) {
  if ([...filterEl.options].some((option) => option.value === action)) return;
  const option = document.createElement("option");
  option.value = action;
  option.textContent = action;
  filterEl.append(option);
}

function applyFilter(item) {
  const wanted = filterEl.value;
  item.hidden = wanted !== "" && item.dataset.action !== wanted;
}

function entry(direction, title, body) {
  const item = document.createElement("li");
  item.dataset.direction = direction;
  item.dataset.action = title;
  const meta = document.createElement("div");
  meta.className = "meta";
  const time = document.createElement("time");
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString(undefined, { hour12: false }) + "." + String(now.getMilliseconds()).padStart(3, "0");
  const arrow = document.createElement("span");
  arrow.textContent = { in: "← received", out: "→ sent", event: "• connection" }[direction];
  const name = document.createElement("strong");
  name.className = "action";
  name.textContent = title;
  meta.append(time, arrow, name);
  item.append(meta);
  if (body) {
    const pre = document.createElement("pre");
    pre.dataset.raw = body; // formatted when shown: the view may change while it is held
    item.append(pre);
  }
  return item;
}

// Newest first. Unless "keep newest in view" is on, the entries being read stay where they are.
function show(items) {
  const before = log.scrollHeight;
  const top = log.scrollTop;
  for (const item of items) {
    const pre = item.querySelector("pre");
    if (pre) pre.textContent = formatted(pre.dataset.raw);
    applyFilter(item);
    log.prepend(item);
  }
  while (log.children.length > MAX_LOG) log.lastElementChild.remove();
  log.scrollTop = autoScroll.checked ? 0 : top + (log.scrollHeight - before);
  countEl.textContent = String(count);
  emptyLog.hidden = log.children.length > 0;
}

function addEntry(direction, title, body) {
  count += 1;
  addFilterOption(title);
  const item = entry(direction, title, body);
  if (paused) {
    held.push(item);
    if (held.length > MAX_LOG) held.shift();
    pausedNote.textContent = "Paused: " + held.length + " new message" + (held.length === 1 ? "" : "s") + " held.";
    return;
  }
  show([item]);
}

function setPaused(value) {
  paused = value;
  pauseButton.textContent = paused ? "Resume" : "Pause";
  pauseButton.setAttribute("aria-pressed", String(paused));
  pausedNote.hidden = !paused;
  pausedNote.textContent = "Paused: 0 new messages held.";
  if (!paused) {
    const waiting = held;
    held = [];
    show(waiting);
  }
}

function reformat() {
  log.classList.toggle("compact", compact.checked);
  for (const pre of log.querySelectorAll("pre")) pre.textContent = formatted(pre.dataset.raw);
}

function connected(open) {
  connectButton.disabled = open;
  disconnectButton.disabled = !open;
  sendButton.disabled = !open;
}

function connect() {
  if (socket) return;
  const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  const options = new URLSearchParams();
  if (document.getElementById("subscribe-none").checked) options.set("subscribe", "none");
  if (document.getElementById("updates-batch").checked) options.set("updates", "batch");
  const query = options.toString();
  const url = scheme + window.location.host + select.value + (query ? "?" + query : "");
  setStatus("connecting", "Connecting…");
  addEntry("event", "connecting", url);
  socket = new WebSocket(url);
  socket.onopen = () => {
    setStatus("connected", "Connected");
    connected(true);
    addEntry("event", "open", null);
  };
  socket.onmessage = (event) => {
    let action = "(not JSON)";
    try {
      const message = JSON.parse(event.data);
      hook.received.push(message);
      action = String(message.action);
      remember(message);
    } catch (e) {
      hook.received.push(event.data);
    }
    addEntry("in", action, event.data);
  };
  socket.onclose = (event) => {
    addEntry("event", "closed", "code " + event.code + (event.reason ? " · " + event.reason : ""));
    setStatus("offline", "Closed (" + event.code + ")");
    connected(false);
    socket = null;
  };
}

function send() {
  composerError.textContent = "";
  const text = composer.value;
  // Invalid JSON is sent anyway (the server's answer is instructive); just say so.
  try {
    JSON.parse(text);
  } catch (e) {
    composerError.textContent = "Not valid JSON: sent as is.";
  }
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(text);
  let action = "(not JSON)";
  try {
    action = String(JSON.parse(text).action);
  } catch (e) {}
  addEntry("out", action, text);
}

function remember(message) {
  const payload = message.payload || {};
  if (message.action === "dashboard_config") metricIds = payload.metrics.map((m) => m.id);
  if (message.action === "metric_update") lastIds.set(payload.metric_id, payload.id);
  if (message.action === "metric_updates") {
    for (const tick of payload.updates) for (const [metricId, id] of tick.values) lastIds.set(metricId, id);
  }
  if (message.action === "metric_history" && payload.last_id != null) lastIds.set(payload.metric_id, payload.last_id);
}

// The documented example, with this dashboard's metric and value ids once known.
function localised(example) {
  const copy = JSON.parse(JSON.stringify(example));
  const payload = copy.payload;
  if (!metricIds.length || !payload || typeof payload !== "object") return copy;
  if (Array.isArray(payload.metric_ids)) payload.metric_ids = metricIds.slice(0, payload.metric_ids.length);
  if (Array.isArray(payload.positions)) {
    const known = metricIds.filter((id) => lastIds.has(id));
    if (known.length) payload.positions = known.map((id) => ({ metric_id: id, after_id: lastIds.get(id) }));
  }
  return copy;
}

function useExample(example) {
  composer.value = JSON.stringify(localised(example), null, 2);
  clearNoticeIfValid();
  composer.focus();
}

// The "Not valid JSON" notice is about what was sent: it goes once the composer holds JSON.
function clearNoticeIfValid() {
  if (!composerError.textContent) return;
  try {
    JSON.parse(composer.value);
    composerError.textContent = "";
  } catch (e) {}
}

function exampleButton(name, example) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "secondary";
  button.dataset.example = name;
  button.textContent = name;
  button.addEventListener("click", () => useExample(example));
  return button;
}

// The document refers to its parts by JSON pointer ({"$ref": "#/components/..."}): follow them.
function target(doc, node) {
  while (node && typeof node === "object" && typeof node.$ref === "string" && node.$ref.startsWith("#/")) {
    node = node.$ref
      .slice(2)
      .split("/")
      .reduce((at, key) => (at == null ? at : at[key.replace(/~1/g, "/").replace(/~0/g, "~")]), doc);
  }
  return node;
}

function inlined(doc, node, depth = 0) {
  node = target(doc, node);
  if (depth > 20 || node === null || typeof node !== "object") return node;
  if (Array.isArray(node)) return node.map((item) => inlined(doc, item, depth + 1));
  return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, inlined(doc, value, depth + 1)]));
}

function showProtocol(doc) {
  const messages = Object.fromEntries(
    Object.entries(doc.channels.dashboard.messages).map(([name, message]) => [name, target(doc, message)]),
  );
  const received = new Set(
    Object.values(doc.operations)
      .filter((op) => op.action === "receive")
      .map((op) => op.messages[0].$ref.split("/").pop()),
  );
  typesEl.replaceChildren();
  examplesEl.replaceChildren();
  for (const [name, message] of Object.entries(messages)) {
    const fromClient = received.has(name);
    const details = document.createElement("details");
    details.className = "message-type";
    details.dataset.action = name;
    const summary = document.createElement("summary");
    const code = document.createElement("code");
    code.textContent = name;
    const direction = document.createElement("span");
    direction.className = "direction";
    direction.textContent = fromClient ? "client → server" : "server → client";
    summary.append(code, direction);
    const about = document.createElement("p");
    about.textContent = message.summary;
    const schema = document.createElement("pre");
    schema.textContent = JSON.stringify(inlined(doc, message.payload), null, 2);
    details.append(summary, about, schema);
    const example = message.examples && message.examples[0] && message.examples[0].payload;
    if (example) {
      const sample = document.createElement("pre");
      sample.textContent = JSON.stringify(example, null, 2);
      const label = document.createElement("p");
      label.textContent = "Example";
      details.append(label, sample);
      if (fromClient) {
        details.append(exampleButton("Use this example", example));
        examplesEl.append(exampleButton(name, example));
      }
    }
    typesEl.append(details);
    addFilterOption(name);
  }
}

fetch(root.dataset.asyncapi)
  .then((response) => response.json())
  .then(showProtocol)
  .catch((error) => {
    typesEl.textContent = "Could not load the protocol: " + error;
  });

if (connectButton) {
  connectButton.addEventListener("click", connect);
  disconnectButton.addEventListener("click", () => socket && socket.close(1000, "closed in the playground"));
}
sendButton.addEventListener("click", send);
composer.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) send();
});
composer.addEventListener("input", clearNoticeIfValid);
filterEl.addEventListener("change", () => {
  for (const item of log.children) applyFilter(item);
});
pauseButton.addEventListener("click", () => setPaused(!paused));
compact.addEventListener("change", reformat);
document.getElementById("clear").addEventListener("click", () => {
  log.replaceChildren();
  held = [];
  count = 0;
  countEl.textContent = "0";
  emptyLog.hidden = false;
  if (paused) pausedNote.textContent = "Paused: 0 new messages held.";
});
