// Contact points, rules' notifications and the delivery log in the Edit panel
// (editors only; server/notifications_api.py). A webhook's secret is in the
// answer to its creation only: shown here once, dropped when dismissed. The
// log is read when the panel opens, after each change, and every 5 s while
// the panel is open (deliveries happen in a worker, not in these requests);
// while a contact point is being edited its list is left alone, so the refresh
// never takes the form from under the typing. Server text is set as text only.

import { button, confirmAction, editPanel, text } from "./panels.js";

function startNotifications() {
  const edit = editPanel();
  if (!edit) return;
  const { root, panel } = edit;
  const { call } = edit.api;
  const contactList = document.getElementById("edit-contacts");
  const contactForm = document.getElementById("edit-add-contact");
  const ruleForm = document.getElementById("edit-rule-contacts");
  const log = document.getElementById("edit-deliveries");
  const secretBox = document.getElementById("contact-secret");
  let state = { contact_points: [], rules: [], deliveries: [] };
  let editing = null; // id of the contact point whose edit form is open
  let ruleNames = new Map(); // rule_id -> "cpu above 90", from the `alerts` messages
  let shownRules = ""; // what the rule form was last filled from: a refresh must not undo a choice in progress

  function render(answer) {
    state = answer;
    if (editing === null || !state.contact_points.some((c) => c.id === editing)) {
      editing = null;
      renderContacts();
    }
    renderLog();
    fillRuleChoice();
  }

  function renderContacts() {
    contactList.replaceChildren();
    document.getElementById("edit-contacts-empty").hidden = state.contact_points.length > 0;
    for (const contact of state.contact_points) {
      const item = document.createElement("li");
      item.dataset.contactId = String(contact.id);
      if (contact.id === editing) item.append(editForm(contact));
      else item.append(...contactRow(contact));
      contactList.append(item);
    }
  }

  function contactRow(contact) {
    return [
      text("contact-name", contact.name),
      text("contact-kind", contact.kind),
      text("contact-target", contact.target),
      button("Edit", "Edit contact point " + contact.name, () => {
        editing = contact.id;
        renderContacts();
        contactList.querySelector(".contact-edit input[name=name]").focus();
      }),
      button("Send test", "Send a test to " + contact.name, () =>
        call("POST", "/contact-points/" + contact.id + "/test", {}, contactList).then((a) => a && render(a)),
      ),
      button("Remove", "Remove contact point " + contact.name, async () => {
        const sure = await confirmAction({
          title: "Remove contact point",
          message: "Remove the contact point " + contact.name + "? Unsent messages to it are dropped.",
          action: "Remove",
        });
        if (sure) call("POST", "/contact-points/" + contact.id + "/delete", {}, contactList).then((a) => a && render(a));
      }),
    ];
  }

  function field(name, label, value) {
    const wrapper = document.createElement("label");
    wrapper.textContent = label + " ";
    const input = document.createElement("input");
    input.name = name;
    input.value = value;
    input.required = true;
    wrapper.append(input);
    return wrapper;
  }

  // Its name and URL (or address); the kind stays, and so does a webhook's secret.
  function editForm(contact) {
    const form = document.createElement("form");
    form.className = "contact-edit edit-row";
    const save = document.createElement("button");
    save.type = "submit";
    save.textContent = "Save";
    const cancel = button("Cancel", "Stop editing " + contact.name, () => {
      editing = null;
      renderContacts();
    });
    form.append(
      field("name", "Name", contact.name),
      field("target", contact.kind === "email" ? "Address" : "URL", contact.target),
      save,
      cancel,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {};
      for (const key of ["name", "target"]) {
        if (form.elements[key].value.trim() !== contact[key]) body[key] = form.elements[key].value;
      }
      if (Object.keys(body).length === 0) {
        editing = null;
        renderContacts();
        return;
      }
      const answer = await call("POST", "/contact-points/" + contact.id, body, form);
      if (!answer) return;
      editing = null;
      render(answer);
    });
    return form;
  }

  function renderLog() {
    const names = new Map(state.contact_points.map((c) => [c.id, c.name]));
    log.replaceChildren();
    document.getElementById("edit-deliveries-empty").hidden = state.deliveries.length > 0;
    for (const attempt of state.deliveries) {
      const item = document.createElement("li");
      item.dataset.outcome = attempt.outcome;
      item.append(
        text("delivery-at", new Date(attempt.at).toLocaleString()),
        text("delivery-kind", attempt.kind),
        text("delivery-contact", names.get(attempt.contact_point_id) || "#" + attempt.contact_point_id),
        text("delivery-outcome", attempt.outcome),
        text("delivery-detail", attempt.detail),
      );
      log.append(item);
    }
  }

  function fillRuleChoice() {
    const shown = JSON.stringify([state.rules, state.contact_points.map((c) => [c.id, c.name]), [...ruleNames]]);
    if (shown === shownRules) return;
    shownRules = shown;
    const rules = ruleForm.elements.rule_id;
    const chosen = rules.value;
    rules.replaceChildren();
    for (const rule of state.rules) {
      const option = document.createElement("option");
      option.value = String(rule.rule_id);
      option.textContent = ruleNames.get(rule.rule_id) || "rule " + rule.rule_id;
      option.selected = option.value === chosen;
      rules.append(option);
    }
    showRule();
  }

  // The contact choice and repeat of the rule picked.
  function showRule() {
    const rule = state.rules.find((r) => String(r.rule_id) === ruleForm.elements.rule_id.value);
    const contacts = ruleForm.elements.contact_point_ids;
    contacts.replaceChildren();
    for (const contact of state.contact_points) {
      const option = document.createElement("option");
      option.value = String(contact.id);
      option.textContent = contact.name;
      option.selected = Boolean(rule && rule.contact_point_ids.includes(contact.id));
      contacts.append(option);
    }
    ruleForm.elements.repeat_minutes.value = rule && rule.repeat_seconds ? String(rule.repeat_seconds / 60) : "";
  }

  contactForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = contactForm.elements;
    const body = { name: fields.name.value, kind: fields.kind.value, target: fields.target.value };
    const answer = await call("POST", "/contact-points", body, contactForm);
    if (!answer) return;
    contactForm.reset();
    render(answer);
    if (answer.secret) {
      secretBox.querySelector(".contact-secret-name").textContent = answer.contact_point.name;
      secretBox.querySelector(".contact-secret-value").value = answer.secret;
      secretBox.hidden = false;
    }
  });

  secretBox.querySelector(".contact-secret-done").addEventListener("click", () => {
    secretBox.querySelector(".contact-secret-value").value = "";
    secretBox.hidden = true;
  });

  ruleForm.elements.rule_id.addEventListener("change", showRule);
  ruleForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = ruleForm.elements;
    const minutes = fields.repeat_minutes.value.trim();
    const body = {
      contact_point_ids: Array.from(fields.contact_point_ids.selectedOptions, (o) => Number(o.value)),
      repeat_seconds: minutes === "" ? null : Math.round(Number(minutes) * 60),
    };
    const answer = await call("POST", "/alerts/" + fields.rule_id.value + "/notifications", body, ruleForm);
    if (answer) render(answer);
  });

  async function load() {
    if (!panel.open) return;
    const answer = await call("GET", "/contact-points", undefined, contactList);
    if (answer) render(answer);
  }
  panel.addEventListener("toggle", load);
  load();
  window.setInterval(load, 5000);

  // Rules come and go with the `alerts` messages: name them, and re-read which exist.
  root.addEventListener("dashboard:alerts", (event) => {
    ruleNames = new Map(
      event.detail.rules.map((r) => [r.rule_id, r.metric_name + " " + r.condition + " " + r.threshold]),
    );
    load();
  });
}

startNotifications();
