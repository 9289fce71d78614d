package runner_test

import (
	"context"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestCaughtUpCheckpointRecordsItsOwnTime: a checkpoint saved while the
// trigger is caught up with its stream moves past the changes the trigger
// filtered out since its last delivery; the cluster time it records (what
// the console measures the oplog headroom with, and checkpoints list
// shows) is its token's, not that delivered event's, so a rarely matching
// trigger does not look far behind.
func TestCaughtUpCheckpointRecordsItsOwnTime(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, `
triggers:
  - name: low
    database: shop
    collection: stock
    operations: [insert]
    match: { fullDocument.quantity: { $lt: 20 } }
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	st := store.New(client, stateDB)
	coll := client.Database("shop").Collection("stock")
	_, stop := runWatcher(t, cfg.Triggers[0], client, st)
	defer func() { _ = stop() }()
	insert(t, coll, item(1, 1)) // matches: delivered
	delivered := recv.next(t).Lookup("clusterTime")
	deliveredT, deliveredI := delivered.Timestamp()
	// Changes the trigger filters out, until a caught-up checkpoint's token
	// is in a later second than the delivered event.
	var cp store.Checkpoint
	id := int32(2)
	waitFor(t, "a caught-up checkpoint in a later second", func() bool {
		insert(t, coll, item(id, 100))
		id++
		var found bool
		var err error
		cp, found, err = st.LoadCheckpoint(context.Background(), "low")
		if err != nil || !found {
			return false
		}
		at, ok := runner.TokenTime(cp.Token)
		return ok && at.Unix() > int64(deliveredT)
	})
	at, _ := runner.TokenTime(cp.Token)
	if ct := cp.ClusterTime; ct.T < deliveredT || ct.T == deliveredT && ct.I <= deliveredI || int64(ct.T) > at.Unix() {
		t.Errorf("checkpoint's cluster time %d.%d, want one after the delivered event's %d.%d and not after its token's %s",
			ct.T, ct.I, deliveredT, deliveredI, at.Format(time.RFC3339))
	}
}
