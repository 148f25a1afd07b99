// The server's vocabularies (common/vocabulary.py: ranges, roles, themes, chart
// styles, ...), which base.html writes into every page as JSON: read here, once,
// for every module of the page.

export const VOCABULARY = JSON.parse(document.getElementById("vocabulary").textContent);
