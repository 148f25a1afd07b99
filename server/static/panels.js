// What the dashboard page's panels share (the Edit panel: editor.js and
// editor-admin.js; the View panel: preferences.js): JSON calls with the CSRF
// token, errors (or "Saved") shown next to what caused them, the in-page
// confirmation dialog, small buttons, and keeping the keyboard focus when a
// list is rebuilt. Server text is set as text only.

// A field as its form labels it ("For (seconds)"), else as the server names it.
function fieldLabel(near, field) {
  const control = near && near.elements ? near.elements[field] : null;
  const label = control && control.closest ? control.closest("label") : null;
  return label ? label.firstChild.textContent.trim() : field;
}

// One field's reasons, or the message: "Name: Length must be between 1 and 200."
function describe(answer, near) {
  const parts = [];
  for (const [field, reasons] of Object.entries(answer.errors || {})) {
    parts.push(fieldLabel(near, field) + ": " + (Array.isArray(reasons) ? reasons.join(" ") : JSON.stringify(reasons)));
  }
  return parts.length ? parts.join("; ") : answer.error || "The change was refused.";
}

// Calls to the endpoints under `base`, reporting in `errorEl`, and a change
// that worked in `savedEl` (if given) for a few seconds.
export function client(base, csrf, errorEl, savedEl) {
  let savedTimer = 0;

  function showSaved(near) {
    if (!savedEl) return;
    clearTimeout(savedTimer);
    savedEl.textContent = "Saved";
    savedEl.hidden = false;
    if (near) near.after(savedEl);
    savedTimer = setTimeout(() => (savedEl.hidden = true), 4000);
  }

  // Next to the form or list it is about, so it shows where the user is looking.
  function showError(message, near) {
    errorEl.hidden = !message;
    errorEl.textContent = message || "";
    if (message && near) {
      near.after(errorEl);
      errorEl.scrollIntoView({ block: "nearest" });
    }
  }

  // The answer, or null once the error is shown. `near`: the form or list the change came from.
  async function call(method, path, body, near) {
    let response;
    try {
      response = await fetch(base + path, {
        method: method,
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch (e) {
      showError("Not saved: the server did not answer. Check your connection, then try again.", near);
      return null;
    }
    let answer = {};
    try {
      answer = await response.json();
    } catch (e) {
      answer = { error: response.status + " " + response.statusText };
    }
    if (!response.ok) {
      if (savedEl) savedEl.hidden = true;
      showError(describe(answer, near), near);
      return null;
    }
    showError(null);
    if (method !== "GET") showSaved(near);
    return answer;
  }

  return { call: call, showError: showError };
}

// The page's <dialog id="confirm-dialog"> asking before something is deleted:
// it names the thing; with `typed`, that text must be typed before the action
// is offered. Resolves to true only if the user confirmed.
export function confirmAction(options) {
  const dialog = document.getElementById("confirm-dialog");
  const ok = dialog.querySelector(".confirm-ok");
  const typedLabel = dialog.querySelector(".confirm-typed");
  const input = typedLabel.querySelector("input");
  const typed = options.typed;
  dialog.querySelector(".confirm-title").textContent = options.title;
  dialog.querySelector(".confirm-message").textContent = options.message;
  dialog.querySelector(".confirm-expected").textContent = typed || "";
  ok.textContent = options.action;
  typedLabel.hidden = typed === undefined;
  input.value = "";
  const check = () => (ok.disabled = typed !== undefined && input.value.trim() !== typed.trim());
  input.oninput = check;
  check();
  dialog.returnValue = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm" && !ok.disabled), {
      once: true,
    });
    dialog.showModal();
    (typed !== undefined ? input : dialog.querySelector(".confirm-cancel")).focus();
  });
}

// A span of server text: set as text, never as HTML.
export function text(className, content) {
  const node = document.createElement("span");
  node.className = className;
  node.textContent = content;
  return node;
}

export function button(text, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "secondary small";
  b.textContent = text;
  b.setAttribute("aria-label", label);
  b.addEventListener("click", onClick);
  return b;
}

// Rebuilding a list loses the keyboard focus: keep it on the same control of
// the same metric (an arrow that is now disabled hands it to the other one).
export function focusedControl(list) {
  const el = document.activeElement;
  const item = el && list.contains(el) ? el.closest("li") : null;
  return item ? { id: item.dataset.metricId, role: el.dataset.role } : null;
}

export function restoreFocus(list, held) {
  if (!held) return;
  const item = Array.from(list.children).find((li) => li.dataset.metricId === held.id);
  if (!item) return;
  const controls = Array.from(item.querySelectorAll("[data-role]")).filter((c) => !c.disabled);
  const target =
    controls.find((c) => c.dataset.role === held.role) ||
    controls.find((c) => c.dataset.role === "up" || c.dataset.role === "down");
  if (target) target.focus();
}

// The page's Edit panel and a client for its endpoints (reporting in its error
// and "Saved" places): what every editor script starts from. Null on a page
// without one (a viewer's).
export function editPanel() {
  const root = document.getElementById("dashboard");
  const panel = document.getElementById("edit-panel");
  if (!root || !panel) return null;
  const errorEl = panel.querySelector(".edit-error");
  const base = panel.dataset.base;
  const api = client(base, panel.dataset.csrf, errorEl, panel.querySelector(".edit-saved"));
  return { root: root, panel: panel, base: base, errorEl: errorEl, api: api };
}
