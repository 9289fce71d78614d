package runner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestStartAtBeforeTheOplogSavesNoCheckpoint: a trigger whose start_at is
// a time the oplog no longer reaches fails with history lost and saves no
// checkpoint, so that correcting start_at takes effect. (Pinned as the
// checkpoint by an empty first batch, which reads no oplog, the lost start
// would make every later start_at ignored.)
func TestStartAtBeforeTheOplogSavesNoCheckpoint(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{OplogMaxBytes: 16 << 10})
	recv := newReceiver(t)
	coll := client.Database("lessons").Collection("inventory")
	before := serverTime(t, client).Add(-time.Hour).Truncate(time.Second)
	pad := strings.Repeat("x", 1024)
	for i := int32(1); i < 80; i++ {
		insert(t, coll, append(item(i, 100), bson.E{Key: "pad", Value: pad}))
	}
	written := serverTime(t, client).Truncate(time.Second)
	waitFor(t, "the server's clock past "+written.Format(time.RFC3339), func() bool { return serverTime(t, client).After(written.Add(time.Second)) })

	yaml := strings.Replace(lowStockYAML, "    ordering: per_document\n",
		"    ordering: per_document\n    start_at: \""+before.UTC().Format(time.RFC3339)+"\"\n", 1)
	cfg := parseTrigger(t, yaml, recv.srv.URL)
	st := store.New(client, stateDB)
	w, stop := runWatcher(t, cfg.Triggers[0], client, st)
	waitFor(t, "trigger failed", func() bool { s := w.Status(); return s.State == runner.StateFailed && !s.Retrying })
	_ = stop()
	if cp, found, err := st.LoadCheckpoint(context.Background(), "low_stock"); err != nil || found {
		t.Fatalf("a start_at the oplog no longer reaches was saved as the checkpoint (found %v, err %v, cluster time %v)", found, err, cp.ClusterTime)
	}
}
