// The dashboard's alert rules, their recent events and the cards' alert
// badges, for every member. The list comes rendered with the page; the
// `alerts` message (after each connect and each change of the dashboard)
// replaces rules and events, and live `alert` messages update them in
// between. dashboard.js forwards both as `dashboard:alerts` and
// `dashboard:alert` events. Server text is set as text only.

import { text } from "./panels.js";

function showAlerts() {
  const root = document.getElementById("dashboard");
  const section = document.getElementById("alerts");
  const ruleList = document.getElementById("alert-list");
  const historyList = document.getElementById("alert-history");
  if (!root || !section || !ruleList || !historyList) return;
  const MAX_EVENTS = 20; // as many as the server sends (server/live/alertstate.py)

  const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  // 24-hour clock, as on the charts' axes; the date only when it is not today.
  const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  const dated = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium", hour12: false });

  function when(iso) {
    const at = new Date(iso);
    return (at.toDateString() === new Date().toDateString() ? clock : dated).format(at);
  }
  const rules = new Map(); // rule id -> {rule_id, metric_id, metric_name, condition, threshold, for_seconds, state, event_id, since, value}
  let events = []; // newest first

  // The rules as the page was rendered, until the first `alerts` arrives.
  for (const item of ruleList.children) {
    rules.set(Number(item.dataset.ruleId), {
      rule_id: Number(item.dataset.ruleId),
      metric_id: Number(item.dataset.metricId),
      state: item.dataset.state,
      event_id: null,
      label: item.querySelector(".alert-rule").textContent,
    });
  }

  function formatValue(value) {
    return Number.isFinite(value) ? number.format(value) : "–";
  }

  function label(rule) {
    if (rule.label && rule.for_seconds === undefined) return rule.label;
    const duration = rule.for_seconds ? " for " + rule.for_seconds + "s" : "";
    return rule.metric_name + " " + rule.condition + " " + rule.threshold + duration;
  }

  function renderRules() {
    ruleList.replaceChildren();
    for (const rule of rules.values()) {
      const item = document.createElement("li");
      item.dataset.ruleId = String(rule.rule_id);
      item.dataset.metricId = String(rule.metric_id);
      item.dataset.state = rule.state;
      let detail = "";
      if (rule.since) {
        detail = (rule.state === "firing" ? "fired" : "resolved") + " at " +
          when(rule.since) + " (value " + formatValue(rule.value) + ")";
      }
      item.append(text("alert-state", rule.state), " ", text("alert-rule", label(rule)), " ", text("alert-detail", detail));
      ruleList.append(item);
    }
  }

  function renderEvents() {
    historyList.replaceChildren();
    for (const event of events) {
      const item = document.createElement("li");
      item.dataset.eventId = String(event.event_id);
      item.dataset.state = event.state;
      const time = document.createElement("time");
      time.dateTime = event.at;
      time.textContent = when(event.at);
      item.append(
        time,
        " ",
        text("alert-state", event.state),
        " ",
        text("alert-rule", event.metric_name + " " + event.condition + " " + event.threshold),
        " ",
        text("alert-detail", "value " + formatValue(event.value)),
      );
      historyList.append(item);
    }
    historyList.previousElementSibling.hidden = historyList.hidden = events.length === 0;
  }

  function renderBadges() {
    for (const card of document.querySelectorAll("article.metric[data-metric-id]")) {
      const badge = card.querySelector(".alert-badge");
      if (!badge) continue;
      const mine = Array.from(rules.values()).filter((r) => String(r.metric_id) === card.dataset.metricId);
      const firing = mine.some((r) => r.state === "firing");
      badge.hidden = mine.length === 0;
      badge.dataset.state = firing ? "firing" : "ok";
      badge.textContent = firing ? "alert firing" : "alerts ok";
    }
  }

  // The Edit drawer's way to this list: how many fire, and there in one step.
  const jump = document.getElementById("edit-alerts-jump");
  function renderJump() {
    if (!jump) return;
    const firing = Array.from(rules.values()).filter((r) => r.state === "firing").length;
    jump.parentElement.hidden = section.hidden;
    jump.textContent = firing ? "Alerts: " + firing + " firing" : "Alerts: none firing";
  }
  if (jump) {
    jump.addEventListener("click", (event) => {
      event.preventDefault();
      const panel = document.getElementById("edit-panel");
      // A drawer as wide as the screen would hide the list: it steps aside.
      if (panel && window.matchMedia("(max-width: 800px)").matches) panel.open = false;
      section.scrollIntoView({ block: "start" });
    });
  }

  function render() {
    renderRules();
    renderEvents();
    renderBadges();
    section.hidden = rules.size === 0 && events.length === 0;
    renderJump();
    // For the charts (dashboard.js): thresholds, firing periods, events, the title's count.
    const detail = { rules: Array.from(rules.values()), events: events.slice() };
    root.dispatchEvent(new CustomEvent("alerts:changed", { detail: detail }));
  }

  // The newest state wins: an `alert` read after the snapshot was taken may
  // arrive before it, so a rule keeps a state with a higher event id.
  function newer(held, incoming) {
    return held && held.event_id != null && (incoming.event_id == null || held.event_id > incoming.event_id);
  }

  function addEvent(event) {
    if (event.event_id != null && events.some((e) => e.event_id === event.event_id)) return;
    events.push(event);
    events.sort((a, b) => Date.parse(b.at) - Date.parse(a.at) || (b.event_id || 0) - (a.event_id || 0));
    events = events.slice(0, MAX_EVENTS);
  }

  function onSnapshot(payload) {
    const previous = new Map(rules);
    rules.clear();
    for (const rule of payload.rules) {
      const held = previous.get(rule.rule_id);
      rules.set(rule.rule_id, newer(held, rule) ? Object.assign({}, rule, pick(held)) : rule);
    }
    const live = events.filter((e) => rules.has(e.rule_id));
    events = [];
    for (const event of payload.events.concat(live)) addEvent(event);
    render();
  }

  function pick(held) {
    return { state: held.state, event_id: held.event_id, since: held.since, value: held.value };
  }

  function onAlert(alert) {
    const state = alert.state === "firing" ? "firing" : "ok";
    const incoming = { state: state, event_id: alert.event_id, since: alert.at, value: alert.value };
    const held = rules.get(alert.rule_id);
    if (!held) {
      // A rule the last snapshot did not have; the next snapshot completes it.
      rules.set(alert.rule_id, Object.assign(
        { rule_id: alert.rule_id, metric_id: alert.metric_id, metric_name: alert.metric_name,
          condition: alert.condition, threshold: alert.threshold, for_seconds: 0 },
        incoming,
      ));
    } else if (!newer(held, incoming)) {
      Object.assign(held, incoming);
    }
    addEvent(alert);
    render();
  }

  root.addEventListener("dashboard:alerts", (event) => onSnapshot(event.detail));
  root.addEventListener("dashboard:alert", (event) => onAlert(event.detail));
  // Cards come and go with configs: their badges follow.
  root.addEventListener("dashboard:config", renderBadges);
  renderEvents();
}

showAlerts();
