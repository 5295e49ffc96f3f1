// The console's only script: refreshes the home page's live part in place every few seconds.
// Without JavaScript the console works fully; the home page then needs a reload to update.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var status = document.getElementById("live-status");
  var every = parseInt(live.getAttribute("data-every"), 10) || 5000;
  function refresh() {
    fetch(live.getAttribute("data-src"), { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected || response.status === 401) {
          window.location.assign("/console/login");
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (html === null) { return; }
        live.innerHTML = html;
        if (status) { status.textContent = "Updated " + new Date().toLocaleTimeString() + "; refreshes every " + every / 1000 + " seconds."; }
      })
      .catch(function (error) {
        if (status) { status.textContent = "Could not refresh (" + error.message + "); retrying."; }
      })
      .then(function () { window.setTimeout(refresh, every); });
  }
  window.setTimeout(refresh, every);
}());
