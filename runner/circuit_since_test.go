package runner_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestCircuitSinceIsTheFirstFailedAttempt: a trigger whose circuit opened
// after its deliveries had already failed shows since the first failed
// attempt, not the circuit's opened_at, also when the watcher passes it
// as running (its oldest event waits for the probe and has no next attempt
// of its own) and when it passes it as retrying since later: /readyz
// compares it with admin.retrying_unready_after.
func TestCircuitSinceIsTheFirstFailedAttempt(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := &advancingClock{now: start}
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer ep.Close()
	trig := &triggers.Trigger{
		Name:    "orders",
		Webhook: triggers.Webhook{URL: ep.URL},
		Retry:   triggers.RetryPolicy{MaxAttempts: 10, InitialBackoff: time.Second, MaxBackoff: time.Second},
		Circuit: triggers.CircuitPolicy{Failures: 3, MaxProbeInterval: time.Hour},
	}
	d, err := dispatcher.New(trig, nil, dispatcher.WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no grace: cancel the probe
		_ = d.Close(ctx)
	}()
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, ok := d.Circuit(); ok && c.State != dispatcher.CircuitClosed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the circuit did not open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c, _ := d.Circuit()
	first := d.FailingSince()
	if !first.Equal(start) || !c.OpenedAt.After(first) {
		t.Fatalf("first failed attempt %v, circuit opened at %v; want the first at %v, the opening after it", first, c.OpenedAt, start)
	}
	for _, tc := range []struct {
		name string
		in   runner.TriggerStatus
	}{
		{name: "running (the oldest event waits for the probe)",
			in: runner.TriggerStatus{Name: "orders", State: runner.StateRunning, Since: start.Add(-time.Hour), StreamOpen: true}},
		{name: "retrying since the circuit opened",
			in: runner.TriggerStatus{Name: "orders", State: runner.StateRetrying, Since: c.OpenedAt, StreamOpen: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := runner.WithCircuit(tc.in, d)
			if st.State != runner.StateRetrying || !st.Since.Equal(start) {
				t.Errorf("state %s since %v; want retrying since the first failed attempt %v (circuit opened_at %v)", st.State, st.Since, start, c.OpenedAt)
			}
		})
	}
}
