package runner_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestWatchWaits: while its webhook holds every request, a strict trigger
// given more events than it may hold shows its watch loop waiting for
// delivery (status waits.delivery_since, a growing delivery total, the
// on="delivery" series); once the webhook answers and everything is
// delivered that wait ends and the loop waits for the stream instead.
func TestWatchWaits(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	release := recv.holdRequests()
	t.Cleanup(release)
	reg := prometheus.NewRegistry()
	r := startRunner(t, parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL), client, runner.Options{Registry: reg})
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "orders").StreamOpen })
	waits := func() runner.Waits {
		st := statusOf(t, r, "orders")
		if st.Waits == nil {
			t.Fatal("a running trigger's status has no waits")
		}
		return *st.Waits
	}
	waitFor(t, "the idle loop waiting for the stream", func() bool { return waits().Stream > 0 })
	if w := waits(); w.Delivery != 0 || !w.DeliverySince.IsZero() {
		t.Fatalf("idle trigger: %+v, want no delivery wait", w)
	}

	// Strict holds one delivery and a queue of 64: the 100th event waits.
	docs := make([]bson.D, 100)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int32(i)}}
	}
	insert(t, client.Database("shop").Collection("orders"), docs...)
	<-recv.arrived
	waitFor(t, "the loop waiting for delivery", func() bool { return !waits().DeliverySince.IsZero() })
	first := waits().Delivery
	waitFor(t, "the delivery wait growing while it goes on", func() bool { return waits().Delivery > first })
	if v, ok := metricValue(t, reg, "changehook_watch_wait_seconds_total", map[string]string{"trigger": "orders", "on": "delivery"}); !ok || v <= 0 {
		t.Errorf("changehook_watch_wait_seconds_total{on=delivery} = %v (present %v), want > 0", v, ok)
	}

	release()
	for range docs {
		recv.next(t)
	}
	waitFor(t, "the delivery wait over", func() bool { return waits().DeliverySince.IsZero() })
	done := waits()
	if done.Delivery < first {
		t.Errorf("delivery wait fell from %v to %v", first, done.Delivery)
	}
	waitFor(t, "the loop waiting for the stream again", func() bool { return waits().Stream > done.Stream })
	if w := waits(); w.Delivery != done.Delivery {
		t.Errorf("delivery wait grew from %v to %v with nothing held", done.Delivery, w.Delivery)
	}
	if v, ok := metricValue(t, reg, "changehook_watch_wait_seconds_total", map[string]string{"trigger": "orders", "on": "stream"}); !ok || v <= 0 {
		t.Errorf("changehook_watch_wait_seconds_total{on=stream} = %v (present %v), want > 0", v, ok)
	}
}

// TestWatchWaitsBatched: a batched trigger's watch loop, which takes its
// events from a reader going ahead of it, counts the time it waits for
// that reader as waiting for the stream.
func TestWatchWaitsBatched(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	got := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		got <- struct{}{}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	r := startRunner(t, parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    batch: { max_events: 10 }
    webhook: { url: "${HOOK_URL}" }
`, srv.URL), client, runner.Options{})
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "orders").StreamOpen })
	stream := func() time.Duration { return statusOf(t, r, "orders").Waits.Stream }
	waitFor(t, "the idle loop waiting for the stream", func() bool { return stream() > 0 })
	insert(t, client.Database("shop").Collection("orders"), bson.D{{Key: "_id", Value: int32(1)}})
	select {
	case <-got:
	case <-time.After(waitTimeout):
		t.Fatal("no delivery")
	}
	before := stream()
	waitFor(t, "the stream wait growing", func() bool { return stream() > before })
	if d := statusOf(t, r, "orders").Waits.Delivery; d != 0 {
		t.Errorf("delivery wait %v with one event", d)
	}
}

// TestWatchWaitsKeptWhileDisabled: changehook_watch_wait_seconds_total is
// a counter, so a reload that disables a trigger keeps its figures (in
// /metrics and the status alike), which stand still while it is disabled
// and go on from there once a reload enables it again: never a fall to 0
// and a jump back, which Prometheus would read as a reset and then an
// increase of the whole total.
func TestWatchWaitsKeptWhileDisabled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		partitions string // the trigger's partitions line ("": none)
	}{
		{name: "one unit"},
		{name: "partitioned", partitions: "    ordering: per_document\n    partitions: 2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			reg := prometheus.NewRegistry()
			yaml := func(enabled bool) string {
				return fmt.Sprintf("\ntriggers:\n  - name: idle\n    database: shop\n    collection: a\n    enabled: %v\n%s    webhook: { url: \"${HOOK_URL}\" }\n",
					enabled, tc.partitions)
			}
			r := startRunner(t, parseTrigger(t, yaml(true), recv.srv.URL), client, runner.Options{Registry: reg})
			waitFor(t, "ready", r.Ready)
			counter := func() float64 {
				v, ok := metricValue(t, reg, "changehook_watch_wait_seconds_total", map[string]string{"trigger": "idle", "on": "stream"})
				if !ok {
					t.Fatal("no changehook_watch_wait_seconds_total{on=stream} series")
				}
				return v
			}
			stream := func() time.Duration {
				st := statusOf(t, r, "idle")
				if st.Waits == nil {
					t.Fatalf("status of the %s trigger has no waits", st.State)
				}
				return st.Waits.Stream
			}
			reload := func(enabled bool) {
				t.Helper()
				if _, err := r.Reload(t.Context(), parseTrigger(t, yaml(enabled), recv.srv.URL)); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "some stream wait counted", func() bool { return counter() > 0 })
			before, beforeStatus := counter(), stream()

			reload(false)
			waitFor(t, "disabled", func() bool { return statusOf(t, r, "idle").State == runner.StateDisabled })
			disabled := counter()
			if disabled < before {
				t.Errorf("disabled: counter %.6f, %.6f before: it went down", disabled, before)
			}
			if disabledStatus := stream(); disabledStatus < beforeStatus {
				t.Errorf("disabled: status waits.stream %v, %v before: it went down", disabledStatus, beforeStatus)
			}
			disabledStatus := stream()
			if again, againStatus := counter(), stream(); again != disabled || againStatus != disabledStatus {
				t.Errorf("still disabled: counter %.6f (status %v), then %.6f (%v): it moved with no watch loop", disabled, disabledStatus, again, againStatus)
			}

			reload(true)
			waitFor(t, "enabled again", func() bool { return statusOf(t, r, "idle").StreamOpen })
			if after := counter(); after < disabled {
				t.Errorf("enabled again: counter %.6f, %.6f while disabled: it went down", after, disabled)
			}
			waitFor(t, "the stream wait going on", func() bool { return counter() > disabled })
		})
	}
}

// TestWatchWaitsContinueAcrossRepartition: a reload that changes a
// trigger's partitions replaces its units, and the new ones' wait clocks
// start at zero; changehook_watch_wait_seconds_total, summed over the
// partitions, goes on from the old partitions' totals instead of falling
// back (which Prometheus would read as a reset), as events_received does.
func TestWatchWaitsContinueAcrossRepartition(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	reg := prometheus.NewRegistry()
	yaml := func(partitions int) string {
		return fmt.Sprintf("\ntriggers:\n  - name: idle\n    database: shop\n    collection: a\n    ordering: per_document\n    partitions: %d\n    webhook: { url: \"${HOOK_URL}\" }\n", partitions)
	}
	r := startRunner(t, parseTrigger(t, yaml(2), recv.srv.URL), client, runner.Options{Registry: reg})
	waitFor(t, "ready", r.Ready)
	counter := func() float64 {
		v, ok := metricValue(t, reg, "changehook_watch_wait_seconds_total", map[string]string{"trigger": "idle", "on": "stream"})
		if !ok {
			t.Fatal("no changehook_watch_wait_seconds_total{on=stream} series")
		}
		return v
	}
	waitFor(t, "the old partitions' stream waits counted", func() bool { return counter() > 0.5 })
	if _, err := r.Reload(t.Context(), parseTrigger(t, yaml(3), recv.srv.URL)); err != nil {
		t.Fatal(err)
	}
	// The new partitions wait for `changehook checkpoints repartition`:
	// their own clocks stand at zero.
	after, st := counter(), statusOf(t, r, "idle")
	if len(st.Partitions) != 3 {
		t.Fatalf("after the reload the trigger has %d partitions, want 3", len(st.Partitions))
	}
	if after < 0.5 {
		t.Errorf("after the repartition the counter is %.3f, above 0.5 before it: it went down", after)
	}
	if status := st.Waits; status == nil || status.Stream.Seconds() < 0.5 {
		t.Errorf("after the repartition the status' waits are %+v, want the old partitions' stream wait (> 0.5s) carried on", status)
	}
}
