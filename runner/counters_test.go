package runner_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// metricValue returns the value of the series of the metric name whose
// labels include every one of labels (a counter's or a gauge's), and
// whether there is one.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue(), true
			}
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestEventsReceivedContinuesAcrossWatchers: a trigger's events_received in
// the status counts every event read since the process started, across
// the new watchers a pause/resume and a reload that changes the trigger
// start, like changehook_events_received_total.
func TestEventsReceivedContinuesAcrossWatchers(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	reg := prometheus.NewRegistry()
	r := startRunner(t, parseTrigger(t, twoTriggersYAML, recv.srv.URL), client, runner.Options{Registry: reg})
	waitFor(t, "runner ready", r.Ready)
	coll := client.Database("shop").Collection("a")
	received := func() uint64 { return statusOf(t, r, "held").EventsReceived }

	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "_id", Value: int32(2)}})
	recv.next(t)
	recv.next(t)
	waitFor(t, "2 events received", func() bool { return received() == 2 })

	if err := r.Pause("held", "", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "paused watcher stopped", func() bool { return !statusOf(t, r, "held").StreamOpen })
	if _, err := r.Resume(t.Context(), "held", runner.ResumeFrom{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "resumed", func() bool { return statusOf(t, r, "held").StreamOpen })
	if n := received(); n != 2 {
		t.Errorf("events_received after pause/resume = %d, want 2", n)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	recv.next(t)
	waitFor(t, "3 events received", func() bool { return received() == 3 })

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	res, err := r.Reload(ctx, parseTrigger(t, strings.Replace(twoTriggersYAML, "/held", "/held2", 1), recv.srv.URL))
	if err != nil || !slices.Equal(res.Changed, []string{"held"}) {
		t.Fatalf("reload = %+v, %v; want held changed", res, err)
	}
	if n := received(); n != 3 {
		t.Errorf("events_received after a reload changed the trigger = %d, want 3", n)
	}
	waitFor(t, "restarted", func() bool { return statusOf(t, r, "held").StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(4)}})
	recv.next(t)
	waitFor(t, "4 events received", func() bool { return received() == 4 })
	if v, ok := metricValue(t, reg, "changehook_events_received_total", map[string]string{"trigger": "held"}); !ok || v != 4 {
		t.Errorf("changehook_events_received_total{trigger=held} = %v (present %v), want 4", v, ok)
	}
	// The delivery is counted once the receiver answered.
	waitFor(t, "4 delivered", func() bool { return statusOf(t, r, "held").Deliveries["delivered"] == 4 })
	if n := received(); n != 4 {
		t.Errorf("events_received = %d once 4 were delivered, want 4", n)
	}
}

// TestCheckpointLagAfterTheWatcherStops: with an event held (the endpoint
// answers 503), a paused trigger keeps the lag it had at the pause, and a
// stopped one shows 0 in the status and in
// changehook_checkpoint_lag_seconds instead of a frozen age.
func TestCheckpointLagAfterTheWatcherStops(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(hook.Close)
	reg := prometheus.NewRegistry()
	cfg := parseTrigger(t, `
triggers:
  - name: held
    database: shop
    collection: a
    dead_letter: false
    retry: { initial_backoff: 10ms, max_backoff: 10ms }
    circuit: { failures: 0, open_on: [] }
    webhook: { url: "${HOOK_URL}" }
`, hook.URL)
	r := startRunner(t, cfg, client, runner.Options{Registry: reg, ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "runner ready", r.Ready)
	insert(t, client.Database("shop").Collection("a"), bson.D{{Key: "_id", Value: int32(1)}})
	lag := func() (time.Duration, float64) {
		v, ok := metricValue(t, reg, "changehook_checkpoint_lag_seconds", map[string]string{"trigger": "held", "partition": "0"})
		if !ok {
			t.Fatal("no changehook_checkpoint_lag_seconds series for held")
		}
		return statusOf(t, r, "held").CheckpointLag, v
	}
	waitFor(t, "the held event lagging", func() bool { d, v := lag(); return d > 0 && v > 0 })

	if err := r.Pause("held", "", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "paused watcher stopped", func() bool { return !statusOf(t, r, "held").StreamOpen })
	if d, v := lag(); d <= 0 || v <= 0 {
		t.Errorf("lag while paused with an event held = %v (metric %v), want the lag at the pause", d, v)
	}
	if _, err := r.Resume(t.Context(), "held", runner.ResumeFrom{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the held event lagging again", func() bool { d, v := lag(); return d > 0 && v > 0 })

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := r.Stop(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	if d, v := lag(); d != 0 || v != 0 {
		t.Errorf("lag of a stopped trigger = %v (metric %v), want 0", d, v)
	}
}

// TestCheckpointLagOfAStandbyTrigger: a member that stops a trigger it
// ran under a lease (handed off) with an event held shows it standby with
// a lag of 0, not the age the held event had at the handoff.
func TestCheckpointLagOfAStandbyTrigger(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	release := recv.holdRequests()
	t.Cleanup(release)
	r, _, _ := startClusteredRunner(t, client, recv, "per_document", 50*time.Millisecond)
	l := &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}
	if err := r.StartLeased("orders", l); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "orders").StreamOpen })
	insert(t, client.Database("shop").Collection("orders"), bson.D{{Key: "_id", Value: int32(1)}})
	<-recv.arrived
	waitFor(t, "the held event lagging", func() bool { return statusOf(t, r, "orders").CheckpointLag > 0 })
	if err := r.Stop(t.Context(), "orders"); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, r, "orders"); st.State != runner.StateStandby || st.CheckpointLag != 0 {
		t.Errorf("after the handoff: state %s, lag %v; want standby with lag 0", st.State, st.CheckpointLag)
	}
}
