// Alert rules and API tokens in the Edit panel (editors only). Rules go to
// server/alerts_api.py; every open page then gets a fresh `alerts` message,
// which keeps this list current too. Tokens go to server/tokens_api.py: a new
// token's secret is in the answer to its creation only, shown here once and
// dropped when dismissed. Server text is set as text only.

import { button, confirmAction, editPanel, text } from "./panels.js";

function startEditorAdmin() {
  const edit = editPanel();
  if (!edit) return;
  const { root, panel } = edit;
  const { call } = edit.api;
  const ruleList = document.getElementById("edit-alerts");
  const ruleForm = document.getElementById("edit-add-alert");
  const tokenList = document.getElementById("edit-tokens");
  const tokenForm = document.getElementById("edit-add-token");
  const secretBox = document.getElementById("token-secret");
  const secretValue = secretBox.querySelector(".token-secret-value");
  const copied = secretBox.querySelector(".token-copied");
  let tokensLoaded = false;

  const dated = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short", hour12: false });

  function when(iso) {
    return iso ? dated.format(new Date(iso)) : "";
  }

  // ---- alert rules ---------------------------------------------------------

  function renderRules(state) {
    ruleList.replaceChildren();
    document.getElementById("edit-alerts-empty").hidden = state.rules.length > 0;
    for (const rule of state.rules) {
      const item = document.createElement("li");
      item.dataset.ruleId = String(rule.rule_id);
      item.dataset.state = rule.state;
      item.dataset.eventId = rule.event_id == null ? "" : String(rule.event_id);
      const description = rule.metric_name + " " + rule.condition + " " + rule.threshold + " for " + rule.for_seconds + "s";
      item.append(
        text("alert-rule", description),
        text("alert-state", rule.state),
        button("Remove", "Remove alert " + description, async () => {
          const sure = await confirmAction({
            title: "Remove the alert " + description + "?",
            message: "The alert rule " + description + " is removed with its history of events.",
            action: "Remove alert",
          });
          if (!sure) return;
          const answer = await call("POST", "/alerts/" + rule.rule_id + "/delete", {}, ruleList);
          if (answer) renderRules(answer);
        }),
      );
      ruleList.append(item);
    }
  }

  // A live `alert` between two snapshots; the newer event wins (see alerts.js).
  function onAlert(alert) {
    const item = Array.from(ruleList.children).find((li) => li.dataset.ruleId === String(alert.rule_id));
    if (!item || (item.dataset.eventId && Number(item.dataset.eventId) > alert.event_id)) return;
    const state = alert.state === "firing" ? "firing" : "ok";
    item.dataset.state = state;
    item.dataset.eventId = String(alert.event_id);
    item.querySelector(".alert-state").textContent = state;
  }

  function fillMetricChoice(metrics) {
    const select = ruleForm.elements.metric_id;
    const chosen = select.value;
    select.replaceChildren();
    for (const metric of metrics) {
      const option = document.createElement("option");
      option.value = String(metric.id);
      option.textContent = metric.name;
      option.selected = option.value === chosen;
      select.append(option);
    }
  }

  ruleForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = ruleForm.elements;
    // Empty or unreadable numbers go as null: the server names the field.
    const numberOrNull = (value) => (value.trim() === "" || !Number.isFinite(Number(value)) ? null : Number(value));
    const answer = await call(
      "POST",
      "/alerts",
      {
        metric_id: Number(fields.metric_id.value) || null,
        condition: fields.condition.value,
        threshold: numberOrNull(fields.threshold.value),
        for_seconds: numberOrNull(fields.for_seconds.value || "0"),
      },
      ruleForm,
    );
    if (answer) {
      renderRules(answer);
      fields.threshold.value = "";
    }
  });

  // ---- API tokens ------------------------------------------------------------

  function renderTokens(tokens) {
    tokenList.replaceChildren();
    document.getElementById("edit-tokens-empty").hidden = tokens.length > 0;
    for (const token of tokens) {
      const item = document.createElement("li");
      item.dataset.tokenId = String(token.id);
      item.dataset.state = token.revoked_at ? "revoked" : "active";
      // Name, prefix and state on the first line; when and by whom, smaller, on the second.
      const meta = document.createElement("span");
      meta.className = "token-meta";
      meta.append(
        text("token-created", "created " + when(token.created_at)),
        text("token-used", token.last_used_at ? "last used " + when(token.last_used_at) : "never used"),
        text("token-creator", token.created_by ? "by " + token.created_by.username : "made from the CLI"),
      );
      item.append(
        text("token-name", token.name),
        text("token-prefix", token.prefix + "…"),
        text("token-state", token.revoked_at ? "revoked " + when(token.revoked_at) : "active"),
      );
      item.append(token.revoked_at ? deleteTokenButton(token) : revokeTokenButton(token), meta);
      tokenList.append(item);
    }
  }

  function revokeTokenButton(token) {
    return button("Revoke", "Revoke token " + token.name, async () => {
      const sure = await confirmAction({
        title: "Revoke the token " + token.name + "?",
        message:
          "Requests with the token " + token.name + " (" + token.prefix + "…) are refused from now on. " +
          "Programs that push with it stop working.",
        action: "Revoke token",
      });
      if (!sure) return;
      const answer = await call("POST", "/tokens/" + token.id + "/revoke", {}, tokenList);
      if (answer) renderTokens(answer.tokens);
    });
  }

  // A revoked token only takes room in the list: it goes without asking.
  function deleteTokenButton(token) {
    return button("Remove", "Remove revoked token " + token.name + " from the list", async () => {
      const answer = await call("POST", "/tokens/" + token.id + "/delete", {}, tokenList);
      if (answer) renderTokens(answer.tokens);
    });
  }

  function hideSecret() {
    secretValue.value = "";
    copied.hidden = true;
    secretBox.hidden = true;
  }

  tokenForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = await call("POST", "/tokens", { name: tokenForm.elements.name.value }, tokenForm);
    if (!answer) return;
    tokenForm.reset();
    renderTokens(answer.tokens);
    secretBox.querySelector(".token-secret-name").textContent = answer.token.name;
    secretValue.value = answer.secret;
    copied.hidden = true;
    secretBox.hidden = false;
    secretValue.focus();
    secretValue.select();
  });

  secretBox.querySelector(".token-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secretValue.value);
    } catch (e) {
      // No clipboard API (plain http on another host): copy the selection instead.
      secretValue.select();
      document.execCommand("copy");
    }
    copied.hidden = false;
  });
  secretBox.querySelector(".token-done").addEventListener("click", hideSecret);

  // Tokens are read when the panel is first opened; they are not pushed live.
  async function loadTokens() {
    if (!panel.open || tokensLoaded) return;
    tokensLoaded = true; // one request, however often the panel toggles meanwhile
    const answer = await call("GET", "/tokens", undefined, tokenList);
    if (answer) renderTokens(answer.tokens);
    else tokensLoaded = false;
  }
  panel.addEventListener("toggle", loadTokens);
  loadTokens(); // an empty dashboard's panel comes open, with no toggle to wait for

  root.addEventListener("dashboard:config", (event) => fillMetricChoice(event.detail.metrics));
  root.addEventListener("dashboard:alerts", (event) => renderRules(event.detail));
  root.addEventListener("dashboard:alert", (event) => onAlert(event.detail));
}

startEditorAdmin();
