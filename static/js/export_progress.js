// Keeps the access-package progress bar of a request page current while the package is being
// prepared, by asking the API for its status every few seconds; reloads the page once the
// status changes (to show the download). Without scripts the page's "Refresh" link does it.
(function () {
  "use strict";
  var box = document.getElementById("export");
  if (!box || !box.dataset.statusUrl) {
    return;
  }
  var bar = document.getElementById("export-progress");
  var label = document.getElementById("export-percent");
  var status = box.dataset.status;

  function later(ms) {
    window.setTimeout(poll, ms);
  }

  function poll() {
    fetch(box.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data) {
          return later(15000);
        }
        if (data.status !== status) {
          window.location.reload();
          return;
        }
        if (bar) {
          bar.value = data.percent;
          bar.textContent = data.percent + "%";
        }
        if (label) {
          label.textContent = data.percent + "%";
        }
        later(3000);
      })
      .catch(function () {
        later(15000);
      });
  }

  later(3000);
})();
