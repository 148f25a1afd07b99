// The dashboard page's WebSocket (docs/protocol.md): one connection at a time,
// kept alive with our own pings (browsers expose no WebSocket ping), said Stale
// when it goes quiet, dropped when it stops answering, and opened again with
// backoff, unless the server's close code says not to (CLOSE_CODES). What the
// messages mean is the page's (dashboard.js): this module only carries them.

const PING_EVERY_MS = 15000; // browsers expose no WebSocket ping, so we send our own
const PONG_TIMEOUT_MS = 8000; // no pong by then: the connection is dead, reconnect
// Sooner than that, the values on screen may already be old: silent for a few data
// intervals, the page asks the server (a ping); unanswered for PONG_GRACE_MS, it says Stale.
const QUIET_INTERVALS = 3;
const MIN_QUIET_MS = 2000;
const PONG_GRACE_MS = 3000;
const MAX_BACKOFF_MS = 30000;

// Every code the server closes with (server/live/closecodes.py, docs/protocol.md
// "Close codes", tests/browser/test_page_modules.py keeps them equal), and what this
// page does after it: reconnect (with backoff), or stop and say why.
export const CLOSE_CODES = Object.freeze({
  NORMAL: { code: 1000, reconnect: true }, // only as the reply to our own close
  GOING_AWAY: { code: 1001, reconnect: true }, // a server shutting down: another may answer
  PROTOCOL_ERROR: { code: 1002, reconnect: true }, // a bug of ours: a fresh connection may do better
  INVALID_TEXT: { code: 1007, reconnect: true },
  MESSAGE_TOO_BIG: { code: 1009, reconnect: true },
  INTERNAL_ERROR: { code: 1011, reconnect: true }, // a bug on the server's side
  TRY_AGAIN_LATER: { code: 1013, reconnect: true }, // its database did not answer
  SLOW_CONSUMER: { code: 4008, reconnect: true }, // this page read too slowly
  RESYNC: { code: 4012, reconnect: true }, // live updates interrupted: the next history has them
  RATE_LIMITED: { code: 4029, reconnect: true }, // the backoff slows us down
  UNAUTHENTICATED: { code: 4401, reconnect: false }, // the session ended: log in again
  FORBIDDEN: { code: 4403, reconnect: false }, // no longer a member, or no such dashboard
  TOO_MANY_CONNECTIONS: { code: 4429, reconnect: true }, // later, with backoff, another tab may have closed
});

// No close frame (a network failure, or this page gave up on a silent socket): reconnect.
const ABNORMAL_CLOSURE = 1006;

// The name of a close code in CLOSE_CODES, or null.
export function closeCodeName(code) {
  for (const [name, entry] of Object.entries(CLOSE_CODES)) if (entry.code === code) return name;
  return null;
}

// `url`: the socket's. `page`: what the page does with it:
//   status(kind, text, title)  the connection's state for people (connecting, connected,
//                              stale, reconnecting, offline); `title` only when there is one
//   opening()                  a new connection is being opened: its messages start afresh
//   message(message)           every message, parsed (after the connection's own use of it)
//   closed(code)               every close, with its code
//   ended(name)                closed with a code that says not to reconnect (a CLOSE_CODES name)
export class LiveSocket {
  constructor(url, page) {
    this.url = url;
    this.page = page;
    this.socket = null;
    this.status = "connecting";
    this.stopped = false; // for good: signed out, no access, or the page is going
    this.authenticated = false; // this socket's messages are the dashboard's: each proves it live
    this.attempt = 0;
    this.pingTimer = null;
    this.pongTimer = null;
    this.reconnectTimer = null;
    this.heardAt = 0; // Date.now() of the last message from the server
    this.dataAt = 0; // of the last values, and the typical time between them (0: not known yet)
    this.dataInterval = 0;
    this.pingedAt = 0;
    this.unansweredSince = null; // the first ping not answered yet (by its pong or any message)
    this.rtt = null; // of the last ping answered, in ms
  }

  // Connects, and follows the browser's word on the network and the page's end.
  start() {
    this.setStatus("connecting", "Connecting…");
    // The browser's word is a hint: a socket may outlive a short outage, and only its
    // silence (Stale) or its next message (Live) says how things are.
    window.addEventListener("offline", () => {
      if (this.stopped) return;
      if (this.socket && this.authenticated) this.ping();
      else this.setStatus("offline", "Offline");
    });
    window.addEventListener("online", () => {
      this.attempt = 0;
      if (!this.socket && !this.stopped) this.connect();
      else if (this.authenticated) this.ping(); // a quick pong: Live again even on a quiet dashboard
    });
    window.addEventListener("pagehide", () => {
      this.stopped = true;
      if (this.socket) this.socket.close(CLOSE_CODES.NORMAL.code);
    });
    this.connect();
  }

  setStatus(kind, text, title) {
    this.status = kind;
    this.page.status(kind, text, title);
  }

  send(action, payload) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify({ action, payload }));
  }

  // Values arrived: how often they come (a worker's interval) is how long a silence may
  // be before it is asked about.
  noteData() {
    const now = Date.now();
    const gap = now - this.dataAt;
    if (this.dataAt && gap < PING_EVERY_MS) this.dataInterval = this.dataInterval ? 0.8 * this.dataInterval + 0.2 * gap : gap;
    this.dataAt = now;
  }

  // On the page's clock: a silent socket is asked whether it is still there; one that does
  // not answer soon is stale (and abandoned later, at PONG_TIMEOUT_MS after a regular ping).
  watch() {
    if (!this.socket || !this.authenticated) return;
    const now = Date.now();
    const quiet = this.quietMs();
    if (now - this.heardAt >= quiet && now - this.pingedAt >= quiet) this.ping();
    if (this.unansweredSince !== null && now - this.unansweredSince >= PONG_GRACE_MS && this.status === "connected") {
      this.setStatus("stale", "Stale");
    }
  }

  // A socket that stopped answering may take minutes to report its close:
  // drop it and reconnect now.
  abandon(reason) {
    if (!this.socket) return;
    const dead = this.socket;
    this.socket = null;
    dead.onclose = dead.onmessage = null;
    dead.close();
    this.onClose({ code: ABNORMAL_CLOSURE, reason: reason });
  }

  connect() {
    clearTimeout(this.reconnectTimer);
    if (this.stopped || this.socket) return;
    const ws = new WebSocket(this.url);
    this.socket = ws;
    this.authenticated = false;
    this.unansweredSince = null;
    this.page.opening();
    ws.onmessage = (event) => this.onMessage(event);
    ws.onclose = (event) => this.onClose(event);
    ws.onopen = () => this.startPings();
  }

  onMessage(event) {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    this.heard();
    const payload = message.payload;
    if (message.action === "authentication" && payload.status_code === 200) {
      this.attempt = 0;
      this.authenticated = true;
      this.setStatus("connected", "Live");
    } else if (message.action === "pong") {
      clearTimeout(this.pongTimer);
      if (payload && payload.t) this.rtt = Date.now() - payload.t;
    }
    this.page.message(message);
  }

  // Any message shows the socket delivers: Live again, at once, after a silence.
  heard() {
    this.heardAt = Date.now();
    this.unansweredSince = null;
    if (this.authenticated && this.status !== "connected") this.setStatus("connected", "Live");
  }

  quietMs() {
    const expected = this.dataInterval ? QUIET_INTERVALS * this.dataInterval : PING_EVERY_MS / 3;
    return Math.min(PING_EVERY_MS, Math.max(MIN_QUIET_MS, expected));
  }

  ping() {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    this.pingedAt = Date.now();
    if (this.unansweredSince === null) this.unansweredSince = this.pingedAt;
    this.send("ping", { t: this.pingedAt });
  }

  startPings() {
    this.pingedAt = Date.now();
    this.pingTimer = setInterval(() => {
      this.ping();
      clearTimeout(this.pongTimer);
      this.pongTimer = setTimeout(() => this.abandon("no answer to ping"), PONG_TIMEOUT_MS);
    }, PING_EVERY_MS);
  }

  onClose(event) {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.socket = null;
    this.authenticated = false;
    this.page.closed(event.code);
    if (this.stopped) return;
    const name = closeCodeName(event.code);
    if (name !== null && !CLOSE_CODES[name].reconnect) {
      this.stopped = true;
      this.page.ended(name);
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    if (!navigator.onLine) {
      this.setStatus("offline", "Offline");
      return; // the "online" event reconnects
    }
    // Exponential backoff with jitter: half fixed, half random, capped.
    const ceiling = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.setStatus("reconnecting", "Reconnecting…", "next attempt in " + Math.round(delay / 100) / 10 + " s");
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }
}
