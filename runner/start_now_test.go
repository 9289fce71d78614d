package runner_test

import (
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestStartNowIsWhenTheTriggerStarted: a trigger without a checkpoint
// (start_at: now) whose checkpoint cannot be read at first (the state
// database refuses or does not answer) starts at the time its watcher
// started, not when the state database first answered: a change written
// in between is delivered.
func TestStartNowIsWhenTheTriggerStarted(t *testing.T) {
	t.Parallel()
	srv, client := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
	stClient := devdbtest.Connect(t, srv.URI(), options.Client().SetAppName(stateApp))
	st := store.New(stClient, stateDB)
	recv := newReceiver(t)
	coll := client.Database("shop").Collection("orders")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(0)}}) // before the start: not delivered

	configureFailPoint(t, client, "failCommand", "alwaysOn", bson.D{{Key: "failCommands", Value: bson.A{"find"}},
		{Key: "appName", Value: stateApp}, {Key: "errorCode", Value: 13}})
	r := startRunnerOn(t, parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL), client, st, runner.Options{})
	waitFor(t, "the failing checkpoint read in the status", func() bool {
		return strings.Contains(statusOf(t, r, "orders").LastError, "load checkpoint")
	})
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}}) // after the start, before the stream opens
	configureFailPoint(t, client, "failCommand", "off", nil)
	waitFor(t, "ready", r.Ready)
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	for _, want := range []int32{1, 2} {
		if id := recv.next(t).Lookup("documentKey", "_id").Int32(); id != want {
			t.Fatalf("delivered %d, want %d", id, want)
		}
	}
	recv.none(t, 100*time.Millisecond)
}
