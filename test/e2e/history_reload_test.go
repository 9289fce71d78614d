package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// TestHistoryFollowsReload: a reload that turns the history on (SIGHUP)
// records the deliveries and the admin API's dead-letter replays from then
// on, without restarting the trigger; one that turns it off (POST
// /api/reload) stops recording both; and turned on again, a later delivery
// is recorded while nothing of the time it was off is — the records of
// one writer are written in the order they were given, so the later
// record is the barrier that shows the earlier ones never came.
func TestHistoryFollowsReload(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	var mu sync.Mutex
	seen := map[int32]int{}
	reject := map[int32]bool{3: true, 5: true} // rejected once: dead-lettered, then replayed
	rc.setRespond(func(_ int, d delivery, _ http.ResponseWriter, _ *http.Request) int {
		id := docOf(d)
		mu.Lock()
		defer mu.Unlock()
		seen[id]++
		if reject[id] && seen[id] == 1 {
			return http.StatusBadRequest
		}
		return http.StatusNoContent
	})
	path := writeFile(t, t.TempDir(), "h.yaml", historyRunConfig(srv.URI(), rc.URL(), "{ enabled: false }"))
	setHistory := func(h string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(historyRunConfig(srv.URI(), rc.URL(), h)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := startRunner(t, runArgs(path)...)
	r.waitReady()
	coll := client.Database("e2e").Collection("h")
	// webhookOf waits for document id's successful delivery and returns
	// its webhook-id.
	webhookOf := func(id int32) string {
		t.Helper()
		var wid string
		rc.waitFor(t, fmt.Sprintf("document %d delivered", id), func(ds []delivery) bool {
			for _, d := range ds {
				if docOf(d) == id && d.Status == http.StatusNoContent {
					wid = d.ID
					return true
				}
			}
			return false
		})
		return wid
	}
	// replay replays document id's dead letter through the admin API.
	replay := func(id int32) string {
		t.Helper()
		var wid string
		rc.waitFor(t, fmt.Sprintf("document %d rejected", id), func(ds []delivery) bool {
			for _, d := range ds {
				if docOf(d) == id {
					wid = d.ID
					return true
				}
			}
			return false
		})
		r.waitAdmin("/api/deadletters/"+wid, func(code int, _ []byte) bool { return code == http.StatusOK })
		code, body := r.post("/api/deadletters/replay", fmt.Sprintf(`{"ids": [%q]}`, wid))
		if code != http.StatusOK || !strings.Contains(string(body), `"replayed": 1`) {
			t.Fatalf("replay of document %d = %d %s", id, code, body)
		}
		return wid
	}
	history := func(webhookID string) []apiAttempt {
		t.Helper()
		_, b := r.get("/api/history?webhook_id=" + url.QueryEscape(webhookID))
		return apiHistory(t, b)
	}
	reload := func() {
		t.Helper()
		code, body := r.post("/api/reload", "")
		var res struct {
			Unchanged []string `json:"unchanged"`
		}
		if err := json.Unmarshal(body, &res); code != http.StatusOK || err != nil || len(res.Unchanged) != 1 {
			t.Fatalf("POST /api/reload = %d %s, want the trigger unchanged", code, body)
		}
	}

	insertIDs(t, coll, 1, 1)
	off1 := webhookOf(1)

	// On, by SIGHUP: the trigger keeps running, its next deliveries and
	// an API replay are recorded.
	setHistory("{ enabled: true, retention: 1h }")
	if err := r.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	r.waitLog(`"msg":"configuration reloaded","by":"SIGHUP"`)
	if strings.Contains(r.logText(), "trigger changed by reload") {
		t.Error("turning the history on restarted the trigger")
	}
	insertIDs(t, coll, 2, 3)
	on2 := webhookOf(2)
	on3 := replay(3)
	r.waitAdmin("/api/history?webhook_id="+url.QueryEscape(on3), func(_ int, b []byte) bool {
		recs := apiHistory(t, b)
		return len(recs) == 2 && recs[0].Kind == "replay" && recs[0].By == "api" && recs[0].Status == http.StatusNoContent &&
			recs[1].Kind == "delivery" && recs[1].Status == http.StatusBadRequest
	})
	if recs := history(on2); len(recs) != 1 || recs[0].Kind != "delivery" || recs[0].Status != http.StatusNoContent {
		t.Errorf("document 2's history after the history was turned on: %+v, want its delivery", recs)
	}

	// Off, by POST /api/reload: nothing is recorded, neither deliveries
	// nor replays.
	setHistory("{ enabled: false }")
	reload()
	insertIDs(t, coll, 4, 5)
	off4 := webhookOf(4)
	off5 := replay(5)

	// On again: a new delivery is recorded; it is the barrier.
	setHistory("{ enabled: true, retention: 1h }")
	reload()
	insertIDs(t, coll, 6, 6)
	on6 := webhookOf(6)
	r.waitAdmin("/api/history?webhook_id="+url.QueryEscape(on6), func(_ int, b []byte) bool { return len(apiHistory(t, b)) == 1 })
	for _, wid := range []string{off1, off4, off5} {
		if recs := history(wid); len(recs) != 0 {
			t.Errorf("%s was delivered or replayed while the history was off, but is recorded: %+v", wid, recs)
		}
	}
	_, metrics := r.get("/metrics")
	if !strings.Contains(string(metrics), "changehook_history_dropped_total 0") {
		t.Errorf("records were dropped:\n%s", grepLines(string(metrics), "changehook_history"))
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}
