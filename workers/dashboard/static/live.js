// Live updates: one EventSource per page; each "tick" (at most a few a second, coalesced by
// the server) asks htmx to fetch the page's live fragments again. Pages work without it.
(function () {
  "use strict";
  var kind = document.body.getAttribute("data-live");
  var state = document.querySelector("[data-live-state]");
  if (!kind || !window.EventSource || !window.htmx) { return; }
  var source = new EventSource("/live");
  source.addEventListener("open", function () { if (state) { state.textContent = "on"; } });
  source.addEventListener("error", function () { if (state) { state.textContent = "reconnecting…"; } });
  source.addEventListener("tick", function () { window.htmx.trigger(document.body, "live"); });
  window.addEventListener("pagehide", function () { source.close(); });
})();
