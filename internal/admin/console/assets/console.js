// changehook console: refreshes the live region of a page in place (no
// reload, so scrolling stays put), and stops while the auto-refresh box is
// unchecked, the tab is hidden or the keyboard focus is inside the region.
"use strict";
(function () {
  var box = document.getElementById("autorefresh");
  if (!box) {
    return;
  }
  var busy = false;
  function refresh() {
    var live = document.getElementById("live");
    if (!box.checked || busy || document.hidden || !live || live.contains(document.activeElement)) {
      return;
    }
    busy = true;
    fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (resp) {
        if (!resp.ok) {
          throw new Error("HTTP " + resp.status);
        }
        return resp.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        var updated = doc.getElementById("updated");
        if (fresh) {
          live.innerHTML = fresh.innerHTML;
        }
        if (updated) {
          document.getElementById("updated").replaceWith(updated);
        }
      })
      .catch(function () {
        var u = document.getElementById("updated");
        if (u) {
          u.textContent = u.textContent.replace(/ \(.*\)$/, "") + " (refresh failed; retrying)";
        }
      })
      .finally(function () {
        busy = false;
      });
  }
  window.setInterval(refresh, 5000);
})();
