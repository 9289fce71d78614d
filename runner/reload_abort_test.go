package runner_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestReloadThatDoesNotFinishKeepsTheTriggersItWasStopping: a reload that
// removes a trigger, or changes its partitions, stops its watcher for good;
// when the reload's context ends while an in-flight delivery still holds
// that watcher, the reload removes and repartitions nothing, so the trigger
// runs again as before, and a later reload with its definition (unchanged)
// finds it running, instead of leaving it stopped for good.
func TestReloadThatDoesNotFinishKeepsTheTriggersItWasStopping(t *testing.T) {
	t.Parallel()
	const onlyOther = `
triggers:
  - name: other
    database: shop
    collection: b
    webhook: { url: "${HOOK_URL}/other" }
`
	for _, tc := range []struct {
		name, yaml string
	}{
		{"removed", onlyOther},
		{"repartitioned", strings.Replace(twoTriggersYAML, "collection: a\n", "collection: a\n    ordering: none\n    partitions: 2\n", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			r := startRunner(t, parseTrigger(t, twoTriggersYAML, recv.srv.URL), client, runner.Options{ShutdownGrace: time.Minute})
			waitFor(t, "runner ready", r.Ready)
			coll := client.Database("shop").Collection("a")

			// An in-flight delivery keeps the watcher from stopping.
			release := recv.holdRequests()
			t.Cleanup(release)
			insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
			<-recv.arrived

			// The reload gives up while the trigger is stopping: its
			// in-flight delivery is held for longer than this.
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			if _, err := r.Reload(ctx, parseTrigger(t, tc.yaml, recv.srv.URL)); err == nil {
				t.Fatal("reload with an ended context succeeded")
			}
			release()
			if got := docID(recv.next(t)); got != 1 {
				t.Fatalf("delivered document %d, want 1", got)
			}
			waitFor(t, "trigger held running again", func() bool { return statusOf(t, r, "held").StreamOpen })

			res, err := r.Reload(t.Context(), parseTrigger(t, twoTriggersYAML, recv.srv.URL))
			if err != nil || !slices.Equal(res.Unchanged, []string{"held", "other"}) {
				t.Fatalf("reload of the running definitions = %+v, %v; want both unchanged", res, err)
			}
			insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
			if got := docID(recv.next(t)); got != 2 {
				t.Fatalf("delivered document %d, want 2", got)
			}
		})
	}
}

// TestReloadStopsTheChangedTriggersTogether: a reload that changes several
// triggers, each with an in-flight delivery the endpoint does not answer,
// stops them in parallel, so it takes one grace period however many
// triggers change, not one per trigger (with many triggers that outlasts
// the caller's deadline: the admin API's write timeout, the reload's own).
// The endpoint holds the deliveries until the test ends: each stop ends
// with the grace period, and both must have ended once the first has.
func TestReloadStopsTheChangedTriggersTogether(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	const grace = 3 * time.Second
	r := startRunner(t, parseTrigger(t, twoTriggersYAML, recv.srv.URL), client, runner.Options{ShutdownGrace: grace})
	waitFor(t, "runner ready", r.Ready)
	release := recv.holdRequests()
	t.Cleanup(release)
	insert(t, client.Database("shop").Collection("a"), bson.D{{Key: "_id", Value: int32(1)}})
	insert(t, client.Database("shop").Collection("b"), bson.D{{Key: "_id", Value: int32(1)}})
	<-recv.arrived
	<-recv.arrived

	// Each stop waits for the grace period: a reload given less than two
	// of them finishes only when the stops overlap.
	ctx, cancel := context.WithTimeout(t.Context(), 2*grace-grace/3)
	defer cancel()
	changed := parseTrigger(t, strings.ReplaceAll(twoTriggersYAML, "webhook: { url: \"${HOOK_URL}/", "webhook: { url: \"${HOOK_URL}/v2/"), recv.srv.URL)
	res, err := r.Reload(ctx, changed)
	if err != nil || !slices.Equal(res.Changed, []string{"held", "other"}) {
		t.Fatalf("reload = %+v, %v; want held and other changed, within the time of one stop", res, err)
	}
}

// TestReloadGoneBeforeItBeganTouchesNothing: a reload whose caller is gone
// before it begins (an API client that gave up while another reload ran)
// stops no trigger: a changed trigger's watcher goes on reading, so an
// event after the one it delivers is sent meanwhile, instead of waiting
// for a stop and restart the reload does not apply.
func TestReloadGoneBeforeItBeganTouchesNothing(t *testing.T) {
	t.Parallel()
	const concurrent = `
triggers:
  - name: held
    database: shop
    collection: a
    ordering: none
    concurrency: 4
    webhook: { url: "${HOOK_URL}/held", timeout: 1m }
`
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	r := startRunner(t, parseTrigger(t, concurrent, recv.srv.URL), client, runner.Options{ShutdownGrace: time.Minute})
	waitFor(t, "runner ready", r.Ready)
	coll := client.Database("shop").Collection("a")
	release := recv.holdRequests()
	t.Cleanup(release)
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	<-recv.arrived

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := r.Reload(ctx, parseTrigger(t, strings.Replace(concurrent, "/held", "/held2", 1), recv.srv.URL)); err == nil {
		t.Fatal("reload with an ended context succeeded")
	}
	// Still reading: the next event is sent while the first is held.
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	select {
	case <-recv.arrived:
	case <-time.After(waitTimeout):
		t.Fatal("the trigger stopped reading: a reload that never began stopped it")
	}
}
