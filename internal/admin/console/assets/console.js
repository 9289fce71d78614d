// changehook console.
//
// 1. Refreshes the live region of a page in place (no reload, so scrolling
//    stays put); it holds still while the auto-refresh box is unchecked, the
//    tab is hidden or the keyboard focus is inside the region.
// 2. Pause and resume buttons POST to the admin API. With admin.token set,
//    the browser asked for the token when it opened the console (HTTP Basic
//    auth, the token as the password) and sends it again with every fetch
//    here (same-origin credentials; no cookie is involved). A call that
//    still answers 401 makes the console ask for the token itself and send
//    it as "Authorization: Bearer", kept in sessionStorage for this tab only.
// 3. Dead-letter replay and purge buttons POST {ids} or {trigger} to
//    /api/deadletters/replay|purge the same way, after a confirmation
//    dialog for purges and whole-trigger replays; a call answering
//    done: false is repeated (bounded; a replay with the answer's next as
//    "after", so it goes past what the call handled) and the counts are
//    added up, with the answers' reasons for the failed ones (per reason a
//    count and the first ids; "attempts updated" only for dead letters
//    that record the replay's attempts). A
//    refusal (a trigger neither configured nor named by a dead letter is
//    404) shows the API's error.
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
    fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store", credentials: "same-origin" })
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
      method: "POST", headers: headers, body: JSON.stringify(body), credentials: "same-origin", cache: "no-store"
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

  // confirmStep opens the confirmation dialog and calls done when the user
  // said yes.
  function confirmStep(message, yes, done) {
    var dialog = document.getElementById("confirm-dialog");
    document.getElementById("confirm-message").textContent = message;
    document.getElementById("confirm-ok").textContent = yes;
    dialog.addEventListener("close", function onClose() {
      dialog.removeEventListener("close", onClose);
      if (dialog.returnValue === "ok") {
        done();
      } else {
        say(yes + " cancelled: nothing was changed.");
      }
    });
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-ok").focus();
  }

  // reloadPart replaces the element with id by the one of a fresh copy of
  // this page; it reports false when the page is gone (404).
  function reloadPart(id) {
    return fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store", credentials: "same-origin" })
      .then(function (resp) {
        if (!resp.ok) {
          return false;
        }
        return resp.text().then(function (html) {
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(id);
          var old = document.getElementById(id);
          if (fresh && old) {
            old.replaceWith(fresh);
          }
          return true;
        });
      });
  }

  var MAX_DLQ_CALLS = 50;
  // Bounds of the reasons shown for a replay's failures (the API's own:
  // 8 reasons, 5 ids each).
  var MAX_REASONS = 8;
  var MAX_REASON_IDS = 5;

  // addReasons adds the reasons of one replay answer to total's.
  function addReasons(total, reasons) {
    (reasons || []).forEach(function (x) {
      total.attempts += x.attempts || 0;
      total.recorded += x.recorded || 0;
      var mine = null;
      total.reasons.forEach(function (y) {
        if (y.reason === x.reason) {
          mine = y;
        }
      });
      if (!mine && total.reasons.length >= MAX_REASONS) {
        mine = total.reasons[total.reasons.length - 1];
        mine.reason = "other reasons";
      }
      if (!mine) {
        mine = { reason: x.reason, count: 0, ids: [] };
        total.reasons.push(mine);
      }
      mine.count += x.count || 0;
      (x.ids || []).forEach(function (id) {
        if (mine.ids.length < MAX_REASON_IDS) {
          mine.ids.push(id);
        }
      });
    });
  }

  // replayCounts says what a replay did so far: the counts, whether the
  // failed dead letters record the replay's attempts (only those that
  // do: a replay that made none left them as they were) and why they
  // failed.
  function replayCounts(total) {
    var text = total.replayed + " delivered and removed, " + total.failed + " failed and still dead-lettered";
    if (total.failed > 0) {
      if (total.recorded === total.failed) {
        text += " (attempts updated)";
      } else if (total.recorded > 0) {
        text += " (attempts updated on " + total.recorded + ")";
      } else if (total.attempts === 0) {
        text += " (no attempt made: unchanged)";
      }
    }
    if (total.reasons.length > 0) {
      text += "; why: " + total.reasons.map(function (x) {
        return x.reason + ": " + x.count + " (" + x.ids.join(", ") + (x.count > x.ids.length ? ", …" : "") + ")";
      }).join("; ");
    }
    return text;
  }

  // dlq runs one replay or purge of sel ({ids} or {trigger}), what naming
  // it for the status line, and repeats the call while the server answers
  // done: false.
  function dlq(action, sel, what, token, total, calls) {
    var verb = action === "replay" ? "Replay" : "Purge";
    var headers = { "Content-Type": "application/json" };
    if (token) {
      headers.Authorization = "Bearer " + token;
    }
    say(verb + " " + what + ": sending…");
    fetch("/api/deadletters/" + action, {
      method: "POST", headers: headers, body: JSON.stringify(sel), credentials: "same-origin", cache: "no-store"
    })
      .then(function (resp) {
        return resp.json().catch(function () { return {}; }).then(function (data) {
          return { status: resp.status, data: data };
        });
      })
      .then(function (r) {
        if (r.status === 401) {
          sessionStorage.removeItem(TOKEN_KEY);
          say(verb + " " + what + ": refused (401), waiting for the admin token");
          askToken(token ? "The admin token was refused (401). Enter it again to " + action + " " + what + "."
            : "To " + action + " " + what + ", enter the admin token (admin.token).", function (tok) {
            if (!tok) {
              say(verb + " " + what + " not done: refused (401), it needs the admin token.");
              return;
            }
            sessionStorage.setItem(TOKEN_KEY, tok);
            dlq(action, sel, what, tok, total, calls);
          });
          return;
        }
        if (r.status === 404 && calls > 0 && sel.trigger) {
          // A trigger no longer configured is unknown (404) once no dead
          // letter names it: the previous call took its last ones.
          r = { status: 200, data: { done: true } };
        }
        if (r.status !== 200) {
          say(verb + " " + what + " refused: " + (r.data.error || "HTTP " + r.status));
          return;
        }
        total.replayed += r.data.replayed || 0;
        total.failed += r.data.failed || 0;
        total.deleted += r.data.deleted || 0;
        addReasons(total, r.data.reasons);
        var counts = action === "replay" ? replayCounts(total) : total.deleted + " deleted";
        if (r.data.error) {
          say(verb + " " + what + " stopped: " + r.data.error + "; so far " + counts + ".");
        } else if (!r.data.done && calls + 1 < MAX_DLQ_CALLS) {
          say(verb + " " + what + ": " + counts + " so far; continuing…");
          // A replay continues after the dead letters this call handled
          // (next), the failed ones too, rather than at the oldest again.
          var more = sel;
          if (r.data.next) {
            more = Object.assign({}, sel, { after: r.data.next });
          }
          dlq(action, more, what, token, total, calls + 1);
          return;
        } else if (!r.data.done) {
          say(verb + " " + what + ": " + counts + "; not finished, press the button again to continue.");
        } else {
          say(verb + " " + what + " done: " + counts + ".");
        }
        var part = document.getElementById("dl-facts") ? "dl-facts" : "dl-list";
        // A dead letter replayed or purged from its own page is gone: no
        // need to ask for the page again (it would answer 404).
        var gone = part === "dl-facts" && (total.replayed + total.deleted) > 0;
        (gone ? Promise.resolve(false) : reloadPart(part)).then(function (exists) {
          if (!exists && part === "dl-facts") {
            var acts = document.getElementById("dl-actions");
            if (acts) {
              acts.innerHTML = "";
              var a = document.createElement("a");
              a.href = "/deadletters";
              a.textContent = "This dead letter is gone; back to the dead letters";
              acts.appendChild(a);
            }
          }
          document.getElementById("action-status").focus();
        }).catch(function () {});
      })
      .catch(function (err) {
        say(verb + " " + what + " failed: " + err.message);
      });
  }

  function dlqClick(btn) {
    var action = btn.dataset.dlq;
    var sel, what, ask;
    if (btn.dataset.id) {
      sel = { ids: [btn.dataset.id] };
      what = "dead letter " + btn.dataset.id;
      ask = action === "purge" ? "Purge dead letter " + btn.dataset.id + "? Its event is deleted and cannot be replayed afterwards." : "";
    } else {
      sel = { trigger: btn.dataset.trigger };
      what = "the dead letters of " + btn.dataset.trigger;
      ask = action === "purge"
        ? "Purge every dead letter of trigger " + btn.dataset.trigger + " (not only the ones shown)? Their events are deleted and cannot be replayed afterwards."
        : "Replay every dead letter of trigger " + btn.dataset.trigger + " (not only the ones shown) to its webhook now?";
    }
    var go = function () {
      dlq(action, sel, what, sessionStorage.getItem(TOKEN_KEY) || "", { replayed: 0, failed: 0, deleted: 0, attempts: 0, recorded: 0, reasons: [] }, 0);
    };
    if (ask) {
      confirmStep(ask, action === "purge" ? "Purge" : "Replay", go);
    } else {
      go();
    }
  }

  document.addEventListener("click", function (ev) {
    var d = ev.target.closest("button[data-dlq]");
    if (d) {
      dlqClick(d);
      return;
    }
    var btn = ev.target.closest("button[data-action]");
    if (!btn) {
      return;
    }
    send(btn.dataset.trigger, btn.dataset.action, sessionStorage.getItem(TOKEN_KEY) || "");
  });

  window.setInterval(function () { refresh(false); }, 5000);
})();
