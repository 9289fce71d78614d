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

			ctx, cancel := context.WithCancel(t.Context())
			cancel() // the reload gives up while the trigger is stopping
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
