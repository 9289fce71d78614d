package runner_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/admin"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// advancingClock is a virtual clock: Sleep returns at once and moves Now
// by the duration asked for.
type advancingClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *advancingClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *advancingClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	return nil
}

// circuitRunner is an admin.Runner reporting one running trigger whose
// status goes through the circuit of disp, as a watcher's does.
type circuitRunner struct {
	disp  *dispatcher.Dispatcher
	start time.Time
}

func (r circuitRunner) Status() []runner.TriggerStatus {
	st := runner.TriggerStatus{Name: "orders", State: runner.StateRunning, Since: r.start, StreamOpen: true}
	return []runner.TriggerStatus{runner.WithCircuit(st, r.disp)}
}

func (circuitRunner) Ready() bool { return true }

// TestCircuitOpenThroughProbesTurnsUnready: an endpoint that stays down
// keeps the circuit open through several probe cycles (open → half_open →
// open); the trigger's since stays at the failure that opened the circuit,
// so /readyz turns 503 once that is longer ago than
// admin.retrying_unready_after, although each cycle enters the circuit's
// states anew.
func TestCircuitOpenThroughProbesTurnsUnready(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := &advancingClock{now: start}

	// Each request records, as it arrives (the clock stands still while
	// the dispatcher waits for the response), the trigger's state, since
	// and /readyz status.
	type seen struct {
		state runner.State
		since time.Time
		ready int
	}
	var (
		mu      sync.Mutex
		got     []seen
		readyz  string
		release = make(chan struct{})
		done    = make(chan struct{})
	)
	const requests = 6
	var disp *dispatcher.Dispatcher
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// disp and readyz are read under mu: the requests reach the handler
		// over TCP, no happens-before edge for the race detector.
		mu.Lock()
		n, disp, readyz := len(got), disp, readyz
		mu.Unlock()
		if n >= requests {
			<-release
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		st := circuitRunner{disp: disp, start: start}.Status()[0]
		code := 0
		if resp, err := http.Get(readyz); err != nil {
			t.Errorf("GET /readyz: %v", err)
		} else {
			code = resp.StatusCode
			_ = resp.Body.Close()
		}
		mu.Lock()
		got = append(got, seen{state: st.State, since: st.Since, ready: code})
		n = len(got)
		mu.Unlock()
		if n == requests {
			close(done)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer ep.Close()

	trig := &triggers.Trigger{
		Name:    "orders",
		Webhook: triggers.Webhook{URL: ep.URL},
		Retry:   triggers.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Second, MaxBackoff: time.Second},
		Circuit: triggers.CircuitPolicy{Failures: 1, OpenOn: triggers.StatusRules{"503"}, MaxProbeInterval: 4 * time.Second},
	}
	d, err := dispatcher.New(trig, nil, dispatcher.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.Start(admin.Options{Addr: "127.0.0.1:0", Runner: circuitRunner{disp: d, start: start},
		RetryingUnreadyAfter: 10 * time.Second, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Shutdown(context.Background()) }()
	mu.Lock()
	disp, readyz = d, srv.URL()+"/readyz"
	mu.Unlock()

	tok, err := bson.Marshal(bson.D{{Key: "_data", Value: "8200000001"}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Submit(context.Background(), dispatcher.Event{Raw: raw, Token: tok}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the probes did not arrive")
	}
	// A probe is in flight (half-open): the way out says what the trigger
	// waits for, the delivery being retried with its attempts so far (5
	// while the sixth request, the probe in flight, is unanswered; 6 once
	// it was answered and the next probe is due), and what ends the wait.
	st := (circuitRunner{disp: d, start: start}).Status()[0]
	ok := false
	for _, n := range []int{5, 6} {
		ok = ok || strings.HasPrefix(st.WayOut,
			"the endpoint's circuit is open (last failure: server_error: HTTP 503 Service Unavailable): nothing is skipped or dead-lettered meanwhile; "+
				fmt.Sprintf("the delivery that opened it (%s, %d attempts so far) is being retried now,", dispatcher.WebhookID("orders", tok), n))
	}
	if !ok {
		t.Errorf("way_out = %q", st.WayOut)
	}
	close(release)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace: cancel the probe
	_ = d.Close(ctx)

	// Request 1 opens the circuit at start; probes follow after 1s, 2s,
	// 4s, 4s, 4s (doubling, capped at max_probe_interval).
	want := []seen{
		{runner.StateRunning, start, http.StatusOK},
		{runner.StateRetrying, start, http.StatusOK},                 // 1s
		{runner.StateRetrying, start, http.StatusOK},                 // 3s
		{runner.StateRetrying, start, http.StatusOK},                 // 7s
		{runner.StateRetrying, start, http.StatusServiceUnavailable}, // 11s
		{runner.StateRetrying, start, http.StatusServiceUnavailable}, // 15s
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("%d requests recorded, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].state != want[i].state || !got[i].since.Equal(want[i].since) || got[i].ready != want[i].ready {
			t.Errorf("request %d: state %s, since %s, /readyz %d; want %s, %s, %d", i+1,
				got[i].state, got[i].since.Sub(start), got[i].ready, want[i].state, want[i].since.Sub(start), want[i].ready)
		}
	}
}
