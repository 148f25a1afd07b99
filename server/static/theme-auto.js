// Pages nobody is logged in to (login, not found, unavailable) have no user's
// theme: follow the system's. Loaded in <head>, so it runs before the first paint.
"use strict";
(function () {
  const html = document.documentElement;
  if (html.dataset.theme !== "auto") return;
  const dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  html.dataset.theme = dark ? "dark" : "light";
})();
