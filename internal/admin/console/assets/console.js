// changehook console.
//
// 1. Refreshes the live region of a page in place (no reload, so scrolling
//    stays put); it holds still while the auto-refresh box is unchecked, the
//    tab is hidden or the keyboard focus is inside the region.
// 2. Pause and resume buttons POST to the admin API. Mutating calls carry the
//    admin token as "Authorization: Bearer" (never a cookie): the console
//    first tries without one (a loopback server without admin.token accepts
//    that), asks for the token when the server answers 401, and keeps it in
//    sessionStorage for this tab only.
"use strict";
(function () {
  var TOKEN_KEY = "changehook.adminToken";
  var busy = false;

  function refresh(force) {
    var box = document.getElementById("autorefresh");
    var live = document.getElementById("live");
    if (!box || !live || busy) {
      return;
    }
    if (!force && (!box.checked || document.hidden || live.contains(document.activeElement))) {
      return;
    }
    busy = true;
    fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store", credentials: "omit" })
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

  function say(text) {
    var s = document.getElementById("action-status");
    if (s) {
      s.textContent = text;
    }
  }

  // askToken opens the token dialog with a message and calls done with the
  // token entered, or "" when the user cancelled.
  function askToken(message, done) {
    var dialog = document.getElementById("token-dialog");
    var input = document.getElementById("admin-token");
    document.getElementById("token-message").textContent = message;
    input.value = "";
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      done(dialog.returnValue === "ok" ? input.value.trim() : "");
    });
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  }

  function send(name, action, token) {
    var headers = { "Content-Type": "application/json" };
    if (token) {
      headers.Authorization = "Bearer " + token;
    }
    var body = action === "pause" ? { reason: "paused from the web console" } : { from: "" };
    say(action + " " + name + ": sending…");
    fetch("/api/triggers/" + encodeURIComponent(name) + "/" + action, {
      method: "POST", headers: headers, body: JSON.stringify(body), credentials: "omit", cache: "no-store"
    })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) {
          return { status: resp.status, data: data };
        });
      })
      .then(function (r) {
        if (r.status === 401) {
          sessionStorage.removeItem(TOKEN_KEY);
          say(action + " " + name + ": waiting for the admin token");
          askToken(token ? "The admin token was refused. Enter it again to " + action + " " + name + "."
            : "To " + action + " " + name + ", enter the admin token (admin.token).", function (tok) {
            if (!tok) {
              say(action + " " + name + " not done: it needs the admin token.");
              return;
            }
            sessionStorage.setItem(TOKEN_KEY, tok);
            send(name, action, tok);
          });
          return;
        }
        if (r.status !== 200 && r.status !== 202) {
          say(action + " " + name + " refused: " + (r.data.error || "HTTP " + r.status));
          return;
        }
        say(r.data.message || (action + " " + name + ": done"));
        refresh(true);
      })
      .catch(function (err) {
        say(action + " " + name + " failed: " + err.message);
      });
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("button[data-action]");
    if (!btn) {
      return;
    }
    send(btn.dataset.trigger, btn.dataset.action, sessionStorage.getItem(TOKEN_KEY) || "");
  });

  window.setInterval(function () { refresh(false); }, 5000);
})();
