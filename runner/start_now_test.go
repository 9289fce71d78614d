package runner_test

import (
	"context"
	"strings"
	"sync"
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

// slowFirstLoad is a checkpoint store whose first LoadCheckpoint runs
// before first (a state database slow to answer the first read, during
// which the watched collection is written).
type slowFirstLoad struct {
	*store.Store
	once  sync.Once
	first func()
}

func (s *slowFirstLoad) LoadCheckpoint(ctx context.Context, key string) (store.Checkpoint, bool, error) {
	s.once.Do(s.first)
	return s.Store.LoadCheckpoint(ctx, key)
}

// TestStartNowPinnedBeforeEventsAreRead: with start_at: now, a change made
// between the moment "now" is read and the moment the stream opens comes
// in the stream's first read. The start is pinned before it is read, so
// that a trigger stopped before delivering it (the endpoint is down) starts
// again before it, not at a new "now" that skips it.
func TestStartNowPinnedBeforeEventsAreRead(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	coll := client.Database("lessons").Collection("inventory")
	st := store.New(client, stateDB)
	var insErr error
	cps := &slowFirstLoad{Store: st, first: func() {
		_, insErr = coll.InsertOne(context.Background(), item(1, 1))
	}}
	release := recv.failRequests() // nothing is delivered before the stop
	w, stop := runWatcher(t, cfg.Triggers[0], client, cps)
	if insErr != nil {
		t.Fatal(insErr)
	}
	waitFor(t, "event 1 read", func() bool { return w.Status().EventsReceived >= 1 })
	<-recv.arrived
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	release()
	if _, found, err := st.LoadCheckpoint(context.Background(), "low_stock"); err != nil || !found {
		t.Fatalf("no checkpoint after the stop (found %v, error %v): a restart would start at a new now", found, err)
	}
	_, stop2 := runWatcher(t, cfg.Triggers[0], client, st) // a new process: a new "now"
	defer func() { _ = stop2() }()
	insert(t, coll, item(2, 2))
	// per_document: the two documents' events may arrive in either order.
	got := map[int32]bool{}
	for range 2 {
		got[recv.next(t).Lookup("id").Int32()] = true
	}
	if !got[1] || !got[2] {
		t.Fatalf("after the restart delivered %v, want 1 and 2", got)
	}
}
