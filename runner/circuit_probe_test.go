package runner_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/runner"
	"go.mongodb.org/mongo-driver/v2/bson"
)

const probeOtherYAML = `
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: per_document
    concurrency: 2
    dead_letter: false
    webhook: { url: "${HOOK_URL}" }
    retry: { max_attempts: 1, initial_backoff: 1h, max_backoff: 1h }
    circuit: { failures: 1, max_probe_interval: 1h }
`

// TestStatusNamesTheProbeWhenItIsNotTheHeadOfLine: in a per_document
// trigger without dead letters, the endpoint's circuit is opened by the
// delivery of a newer event (b) while the oldest held one (a), whose own
// request failed too, holds the checkpoint. The status shows a as the
// head of line with its own attempt and no next attempt of its own, says
// it waits for b's probe, and the circuit (and its way out) names b as the
// probe with b's attempts: nothing shown as a's is b's.
func TestStatusNamesTheProbeWhenItIsNotTheHeadOfLine(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	var (
		mu      sync.Mutex
		r       *runner.Runner
		aID     string
		bID     string
		aWaited = make(chan struct{}) // a's first request saw the circuit open
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		id := req.Header.Get("webhook-id")
		mu.Lock()
		rr := r
		first := false
		switch {
		case strings.Contains(string(body), `"first"`) && aID == "":
			aID, first = id, true
		case strings.Contains(string(body), `"second"`) && bID == "":
			bID = id
		}
		mu.Unlock()
		if first {
			// a's first request is answered once b's failure opened the
			// circuit: a is then not the probe.
			// Polled, as waitFor does (t.Fatal is not for this goroutine):
			// nothing signals the circuit's opening.
			tick := time.NewTicker(5 * time.Millisecond)
			deadline := time.After(waitTimeout)
		poll:
			for {
				if st, err := rr.TriggerStatus("orders"); err == nil && st.Circuit != nil && st.Circuit.State != dispatcher.CircuitClosed {
					break
				}
				select {
				case <-tick.C:
				case <-deadline:
					t.Error("the circuit did not open")
					break poll
				}
			}
			tick.Stop()
			close(aWaited)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(hook.Close)
	cfg := parseTrigger(t, probeOtherYAML, hook.URL)
	rn := startRunner(t, cfg, client, runner.Options{ShutdownGrace: 50 * time.Millisecond})
	mu.Lock()
	r = rn
	mu.Unlock()
	waitFor(t, "runner ready", rn.Ready)

	coll := client.Database("shop").Collection("orders")
	insert(t, coll, bson.D{{Key: "_id", Value: "first"}})
	waitFor(t, "a's request", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return aID != ""
	})
	insert(t, coll, bson.D{{Key: "_id", Value: "second"}})
	<-aWaited
	waitFor(t, "a held with its failed attempt", func() bool {
		h := statusOf(t, rn, "orders").HeadOfLine
		return h != nil && h.Attempts == 1 && h.LastStatus == http.StatusServiceUnavailable
	})

	st := statusOf(t, rn, "orders")
	mu.Lock()
	a, b := aID, bID
	mu.Unlock()
	h, c := st.HeadOfLine, st.Circuit
	if st.State != runner.StateRetrying || h.WebhookID != a {
		t.Fatalf("state %s, head of line %+v; want retrying, head of line %s", st.State, *h, a)
	}
	if h.WaitsForProbe != b || !h.NextAttemptAt.IsZero() {
		t.Errorf("head of line %s: waits_for_probe %q, next_attempt_at %v; want %q and none (it is not tried before the probe succeeds)",
			a, h.WaitsForProbe, h.NextAttemptAt, b)
	}
	if c == nil || c.Probe == nil || c.Probe.WebhookID != b || c.Probe.Attempts != 1 || c.NextProbeAt.IsZero() {
		t.Fatalf("circuit = %+v; want open with probe %s (1 attempt) and its next probe time", c, b)
	}
	if want := "the delivery that opened it (" + b + ", 1 attempt so far) is retried alone at " + c.NextProbeAt.UTC().Format(time.RFC3339) +
		", then at doubling intervals up to circuit.max_probe_interval, every other one waits"; !strings.Contains(st.WayOut, want) {
		t.Errorf("way_out = %q\nwant it to contain %q", st.WayOut, want)
	}
}
