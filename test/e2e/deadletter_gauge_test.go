package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// deadLetterGauge reads changehook_dead_letters{trigger} from /metrics and
// dead_letters_current from /api/triggers (-1 when a series is missing).
func (r *runner) deadLetterGauge(trigger string) (metric, api int64) {
	r.t.Helper()
	_, body := r.get("/metrics")
	metric = -1
	re := regexp.MustCompile(`(?m)^changehook_dead_letters\{trigger="` + regexp.QuoteMeta(trigger) + `"\} (\S+)$`)
	if m := re.FindSubmatch(body); m != nil {
		f, err := strconv.ParseFloat(string(m[1]), 64)
		if err == nil {
			metric = int64(f)
		}
	}
	_, body = r.get("/api/triggers")
	var resp struct {
		Triggers []struct {
			Name               string `json:"name"`
			DeadLettersCurrent int64  `json:"dead_letters_current"`
		} `json:"triggers"`
	}
	api = -1
	if err := json.Unmarshal(body, &resp); err != nil {
		r.t.Fatalf("/api/triggers: %v: %s", err, body)
	}
	for _, tr := range resp.Triggers {
		if tr.Name == trigger {
			api = tr.DeadLettersCurrent
		}
	}
	return metric, api
}

// waitDeadLetterGauge polls until both the gauge and the API say n.
func (r *runner) waitDeadLetterGauge(trigger string, n int64, within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		m, a := r.deadLetterGauge(trigger)
		if m == n && a == n {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("dead-letter count of %s: gauge %d, /api/triggers %d after %s; want %d\n%s", trigger, m, a, within, n, r.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDeadLetterGaugeFollowsReplayAndPurge: changehook_dead_letters and
// /api/triggers' dead_letters_current show a replay or purge through the
// admin API (which the console's buttons call) in the same request cycle —
// read right after the call answers, without waiting — and one by `dlq
// replay` / `dlq purge` from another process within a few seconds (that
// process cannot reach the runner's memory: the runner watches the dead
// letters' change stream, so the test polls, with a deadline well below
// the 30 s periodic recount).
func TestDeadLetterGaugeFollowsReplayAndPurge(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	var accept atomic.Bool
	rc.setRespond(func(int, delivery, http.ResponseWriter, *http.Request) int {
		if accept.Load() {
			return http.StatusNoContent
		}
		return http.StatusBadRequest
	})
	// No circuit breaker: every rejected event is dead-lettered at once.
	cfg := writeFile(t, t.TempDir(), "g.yaml", strings.Replace(historyRunConfig(srv.URI(), rc.URL(), "{ enabled: false }"),
		"collection: h }", "collection: h, circuit: { failures: 0 } }", 1))
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	coll := client.Database("e2e").Collection("h")
	insertIDs(t, coll, 1, 3)
	// Dead-lettering happens in the delivery path: the runner asks for a
	// recount after each one (asynchronous by design, at most a second).
	r.waitDeadLetterGauge("h", 3, waitTimeout)
	ds := rc.waitFor(t, "three rejected deliveries", func(ds []delivery) bool { return len(ds) >= 3 })

	accept.Store(true)
	code, body := r.post("/api/deadletters/replay", fmt.Sprintf(`{"ids": [%q]}`, ds[0].ID))
	if code != http.StatusOK || !json.Valid(body) || !regexp.MustCompile(`"replayed": 1`).Match(body) {
		t.Fatalf("POST /api/deadletters/replay = %d %s", code, body)
	}
	if m, a := r.deadLetterGauge("h"); m != 2 || a != 2 {
		t.Errorf("right after replaying one of 3: gauge %d, /api/triggers %d; want 2", m, a)
	}
	code, body = r.post("/api/deadletters/purge", `{"trigger": "h"}`)
	if code != http.StatusOK || !regexp.MustCompile(`"deleted": 2`).Match(body) {
		t.Fatalf("POST /api/deadletters/purge = %d %s", code, body)
	}
	if m, a := r.deadLetterGauge("h"); m != 0 || a != 0 {
		t.Errorf("right after the purge: gauge %d, /api/triggers %d; want 0", m, a)
	}

	// The CLI runs in another process.
	accept.Store(false)
	insertIDs(t, coll, 4, 6)
	r.waitDeadLetterGauge("h", 3, waitTimeout)
	ds = rc.waitFor(t, "three more rejected deliveries", func(ds []delivery) bool { return len(ds) >= 7 })
	accept.Store(true)
	if code, out, errOut := runCLI(t, "dlq", "replay", "-c", cfg, ds[4].ID); code != 0 {
		t.Fatalf("dlq replay = %d\n%s%s", code, out, errOut)
	}
	r.waitDeadLetterGauge("h", 2, 10*time.Second)
	if code, out, errOut := runCLI(t, "dlq", "purge", "-c", cfg, "--trigger", "h", "--yes"); code != 0 {
		t.Fatalf("dlq purge = %d\n%s%s", code, out, errOut)
	}
	r.waitDeadLetterGauge("h", 0, 10*time.Second)
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}
