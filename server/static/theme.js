// The theme toggle of every logged-in page. The theme is the user's, on
// every page and device: saved with PATCH /preferences; the server puts it on
// <html> of every page it renders, and tells the user's open dashboards.
"use strict";

(function () {
  const toggle = document.getElementById("theme-toggle");
  if (!toggle) return;
  const html = document.documentElement;

  // The button names the theme a click switches to.
  function show() {
    toggle.textContent = html.dataset.theme === "dark" ? "Light theme" : "Dark theme";
  }

  toggle.addEventListener("click", async () => {
    const previous = html.dataset.theme;
    const next = previous === "dark" ? "light" : "dark";
    html.dataset.theme = next; // at once; put back if the server refuses
    try {
      const response = await fetch(toggle.dataset.url, {
        method: "PATCH",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": toggle.dataset.csrf },
        body: JSON.stringify({ theme: next }),
        credentials: "same-origin",
      });
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      toggle.title = "Your theme, on every page and device";
    } catch (e) {
      html.dataset.theme = previous;
      toggle.title = "Theme not saved: " + e.message;
    }
  });
  // The dashboard page also changes it when another page of ours did.
  new MutationObserver(show).observe(html, { attributes: true, attributeFilter: ["data-theme"] });
  show();
})();
