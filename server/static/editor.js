// The Edit panel of a dashboard's editors (loaded only for them). Changes go
// to the JSON endpoints of server/editing.py with the CSRF token in a header;
// the page itself is updated by the `dashboard_config` the server then pushes
// to every open page, this one included. Server text is set as text only.

import { button, confirmAction, editPanel, focusedControl, restoreFocus } from "./panels.js";
import { VOCABULARY } from "./vocabulary.js";

function startEditor() {
  const edit = editPanel();
  if (!edit) return;
  const { root, panel, base, errorEl, api } = edit;
  const ROLES = VOCABULARY.roles; // the roles a member may have
  const metricList = document.getElementById("edit-metrics");
  const memberList = document.getElementById("edit-members");
  const settingsForm = document.getElementById("edit-settings");
  const sourceChoice = document.getElementById("edit-metric-source");
  let metrics = [];
  let dashboardName = document.getElementById("dashboard-name").textContent;
  let scrollToMetric = null; // the name of a metric just added: its card scrolls into view

  // Every answer about members carries the new list.
  async function call(method, path, body, near) {
    const answer = await api.call(method, path, body, near);
    if (answer && answer.members) renderMembers(answer.members);
    return answer;
  }

  function move(index, step) {
    const ids = metrics.map((m) => m.id);
    const [id] = ids.splice(index, 1);
    ids.splice(index + step, 0, id);
    call("POST", "/metrics/order", { metric_ids: ids }, metricList);
  }

  // What the editor has typed or chosen in the list and not saved, per metric and
  // field, with the value it replaced: another editor's change rebuilds the list,
  // and must not wipe it, unless that change was to the same field.
  function unsavedEdits(list) {
    const found = {};
    for (const field of list.querySelectorAll("[data-shown]")) {
      if (field.value === field.dataset.shown) continue;
      const id = field.closest("li").dataset.metricId;
      found[id] = found[id] || {};
      found[id][field.dataset.role] = { shown: field.dataset.shown, value: field.value };
    }
    return found;
  }

  function renderMetrics(list) {
    metrics = list;
    const held = focusedControl(metricList);
    const kept = unsavedEdits(metricList);
    metricList.replaceChildren();
    list.forEach((metric, i) => {
      const item = document.createElement("li");
      item.dataset.metricId = String(metric.id);
      item.dataset.type = metric.type;
      const name = document.createElement("input");
      name.value = metric.name;
      name.maxLength = 200;
      name.setAttribute("aria-label", "Name of " + metric.name);
      const unit = document.createElement("input");
      unit.value = metric.unit;
      unit.size = 6;
      unit.setAttribute("aria-label", "Unit of " + metric.name);
      const description = document.createElement("input");
      description.value = metric.description || "";
      description.maxLength = 2000;
      description.className = "edit-metric-description";
      description.placeholder = "description";
      description.setAttribute("aria-label", "Description of " + metric.name);
      const type = document.createElement("span");
      type.className = "metric-type";
      type.textContent = metric.type;
      const source = sourceSelect(metric);
      const save = button("Save", "Save " + metric.name, () => {
        const change = { name: name.value, unit: unit.value, description: description.value };
        if (metric.source !== undefined && source.value !== metric.source) change.source = source.value;
        call("POST", "/metrics/" + metric.id, change, metricList);
      });
      const up = button("↑", "Move " + metric.name + " up", () => move(i, -1));
      const down = button("↓", "Move " + metric.name + " down", () => move(i, 1));
      up.disabled = i === 0;
      down.disabled = i === list.length - 1;
      const remove = button("Remove", "Remove " + metric.name, async () => {
        const sure = await confirmAction({
          title: "Remove metric " + metric.name + "?",
          message:
            "The metric " + metric.name + " is removed with all its values and alert rules, for every member. " +
            "This cannot be undone.",
          action: "Remove " + metric.name,
        });
        if (sure) call("POST", "/metrics/" + metric.id + "/delete", {}, metricList);
      });
      const roles = {
        name: name,
        unit: unit,
        description: description,
        source: source,
        save: save,
        up: up,
        down: down,
        remove: remove,
      };
      for (const [role, control] of Object.entries(roles)) control.dataset.role = role;
      for (const field of [name, unit, description, source]) {
        field.dataset.shown = field.value;
        const edit = (kept[metric.id] || {})[field.dataset.role];
        if (edit && edit.shown === field.value) field.value = edit.value;
      }
      const actions = document.createElement("span");
      actions.className = "edit-metric-actions";
      actions.append(up, down, remove);
      item.append(name, unit, type, source, description, save, actions);
      metricList.append(item);
    });
    restoreFocus(metricList, held);
  }

  // A metric's source: only the readings that can feed its type (common/sources.py).
  function sourceSelect(metric) {
    const select = document.createElement("select");
    select.setAttribute("aria-label", "Source of " + metric.name);
    for (const option of sourceChoice.options) {
      const reading = option.dataset.type;
      if (reading && !(reading === metric.type || (reading === "gauge" && metric.type === "histogram"))) continue;
      const copy = option.cloneNode(true);
      copy.selected = option.value === (metric.source || sourceChoice.dataset.default);
      select.append(copy);
    }
    select.disabled = metric.source === undefined;
    return select;
  }

  // Choosing a reading for a new metric: its kind and unit, unless chosen already.
  function onSourceChosen(form) {
    const option = sourceChoice.selectedOptions[0];
    if (!option || !option.dataset.type) return;
    const type = form.elements.type;
    const fits = type.value === option.dataset.type || (option.dataset.type === "gauge" && type.value === "histogram");
    if (!fits) type.value = option.dataset.type;
    if (!form.elements.unit.value) form.elements.unit.value = option.dataset.unit;
  }

  function renderMembers(members) {
    memberList.replaceChildren();
    // The server refuses to remove the last editor: the page does not offer it.
    const editors = members.filter((m) => m.role === "editor").length;
    for (const member of members) {
      const item = document.createElement("li");
      item.dataset.username = member.username;
      const name = document.createElement("span");
      name.textContent = member.username;
      const role = document.createElement("select");
      role.setAttribute("aria-label", "Role of " + member.username);
      for (const value of ROLES) {
        const option = document.createElement("option");
        option.value = option.textContent = value;
        option.selected = value === member.role;
        role.append(option);
      }
      role.addEventListener("change", () =>
        call("POST", "/members/" + member.user_id + "/role", { role: role.value }, memberList),
      );
      item.append(name, role);
      if (member.role !== "editor" || editors > 1) item.append(removeMemberButton(member));
      memberList.append(item);
    }
  }

  function removeMemberButton(member) {
    return button("Remove", "Remove " + member.username, async () => {
      const sure = await confirmAction({
        title: "Remove " + member.username + " from " + dashboardName + "?",
        message:
          member.username + " can no longer open this dashboard: their open pages of it close at once, " +
          "and the API tokens they made for it are revoked.",
        action: "Remove " + member.username,
      });
      if (sure) call("POST", "/members/" + member.user_id + "/delete", {}, memberList);
    });
  }

  // Deleting the dashboard: its name must be typed, as the server checks too.
  document.getElementById("edit-delete-dashboard").addEventListener("click", async () => {
    const sure = await confirmAction({
      title: "Delete the dashboard " + dashboardName + "?",
      message:
        "The dashboard " + dashboardName + " is deleted with its metrics, values, alert rules and API tokens, " +
        "for every member. This cannot be undone.",
      action: "Delete this dashboard",
      typed: dashboardName,
    });
    if (!sure) return;
    const typed = document.querySelector("#confirm-dialog input[name=typed]").value;
    const answer = await call("POST", "/delete", { confirm: typed }, document.getElementById("edit-delete"));
    if (answer) window.location.assign(answer.next);
  });

  function formData(form) {
    return Object.fromEntries(new FormData(form).entries());
  }

  settingsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = formData(settingsForm);
    // Empty: the global retention (null). Anything but digits goes as typed, for the server to refuse.
    const days = body.retention_days.trim();
    body.retention_days = days === "" ? null : /^\d+$/.test(days) ? Number(days) : days;
    call("POST", "/settings", body, settingsForm);
  });
  const metricForm = document.getElementById("edit-add-metric");
  sourceChoice.addEventListener("change", () => onSourceChosen(metricForm));
  metricForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = formData(metricForm);
    // Set before the request: the new config can arrive on the socket before its answer.
    const name = body.name.trim();
    scrollToMetric = name;
    if (await call("POST", "/metrics", body, metricForm)) {
      metricForm.reset();
    } else if (scrollToMetric === name) {
      scrollToMetric = null;
    }
  });
  const memberForm = document.getElementById("edit-add-member");
  memberForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await call("POST", "/members", formData(memberForm), memberForm)) memberForm.reset();
  });

  // Every config (ours or another editor's change) refreshes the panel.
  root.addEventListener("dashboard:config", (event) => {
    const config = event.detail;
    if (document.activeElement === null || !settingsForm.contains(document.activeElement)) {
      settingsForm.elements.name.value = config.name;
      settingsForm.elements.description.value = config.description;
      settingsForm.elements.retention_days.value = config.retention_days ?? "";
    }
    dashboardName = config.name;
    renderMetrics(config.metrics);
    call("GET", "/members", undefined, memberList);
    if (scrollToMetric !== null) showNewCard(config.metrics);
  });

  // The card of the metric just added, brought into view beside the drawer once
  // dashboard.js has made it (it handles the same config before this listener).
  function showNewCard(list) {
    const added = list.find((m) => m.name === scrollToMetric);
    if (!added) return;
    scrollToMetric = null;
    requestAnimationFrame(() => {
      const card = document.querySelector("article.metric[data-metric-id='" + added.id + "']");
      if (card) card.scrollIntoView({ behavior: "smooth", block: "nearest" });
    });
  }

  // Escape closes the drawer (unless a dialog is open: Escape closes that first).
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && panel.open) {
      panel.open = false;
      panel.querySelector("summary").focus();
    }
  });
}

startEditor();
