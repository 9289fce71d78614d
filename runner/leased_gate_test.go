package runner_test

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestLeaseGateRefusalIsNoAttempt: once the lease is no longer valid, the
// lease gate refuses to send. Nothing left the process, so the refusal is no
// failed attempt: not counted in the attempt metrics (it was counted as
// reason "connection"), not retried, and the observers (the delivery
// history) learn of it as a canceled attempt naming the lease; the event
// stays undone for the member holding the lease now.
func TestLeaseGateRefusalIsNoAttempt(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	var mu sync.Mutex
	var seen []dispatcher.Attempt
	cfg := parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: strict
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	st := store.New(client, stateDB)
	r := startRunnerOn(t, cfg, client, st, runner.Options{
		ShutdownGrace: 100 * time.Millisecond, StartStopped: true, Clustered: true, Standby: func(string) bool { return true },
		DispatcherOptions: func(*triggers.Trigger) []dispatcher.Option {
			return []dispatcher.Option{dispatcher.WithObserver(func(a dispatcher.Attempt) {
				mu.Lock()
				seen = append(seen, a)
				mu.Unlock()
			})}
		},
	})
	waitFor(t, "runner ready", r.Ready)
	coll := client.Database("shop").Collection("orders")
	l := &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}
	if err := r.StartLeased("orders", l); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "orders").StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	recv.next(t)
	waitFor(t, "the first delivery counted", func() bool { return statusOf(t, r, "orders").Attempts["ok"] == 1 })
	before := maps.Clone(statusOf(t, r, "orders").Attempts)

	l.set(false) // self-fenced: nothing may be sent any more
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	waitFor(t, "an attempt observed for event 2", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= 2
	})
	recv.none(t, 200*time.Millisecond)
	mu.Lock()
	refused := seen[1]
	mu.Unlock()
	if refused.Reason != dispatcher.ReasonCanceled || !errors.Is(refused.Err, runner.ErrFenced) {
		t.Errorf("attempt observed after the lease lapsed: reason %q, err %v; want %q wrapping ErrFenced", refused.Reason, refused.Err, dispatcher.ReasonCanceled)
	}
	if after := statusOf(t, r, "orders").Attempts; !maps.Equal(after, before) {
		t.Errorf("the trigger's attempts went from %v to %v, want them unchanged: nothing was sent", before, after)
	}
	_ = r.Stop(context.Background(), "orders")
}
