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
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestForeignCheckpointWayOut: a checkpoint that is the resume token of
// another collection's change (a state database shared by mistake, a
// trigger pointed at another collection under the same name) makes the
// server refuse the stream with ChangeStreamFatalError "the resume token
// was not found". Resuming from that checkpoint fails the same way every
// time, so the status says where the checkpoint comes from and its way out
// moves it (resume --from, checkpoints reset) instead of reopening it.
func TestForeignCheckpointWayOut(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	st := store.New(client, stateDB)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	other := client.Database("lessons").Collection("other")
	cs, err := other.Watch(ctx, []bson.D{}, options.ChangeStream().SetMaxAwaitTime(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	insert(t, other, item(100, 1))
	if !cs.Next(ctx) {
		t.Fatalf("no event on the other collection: %v", cs.Err())
	}
	foreign := append(bson.Raw(nil), cs.Current.Lookup("_id").Document()...)
	_ = cs.Close(ctx)
	insert(t, client.Database("lessons").Collection("inventory"), item(1, 1))
	if err := st.SaveCheckpoint(ctx, store.Checkpoint{Trigger: "low_stock", Token: foreign, UpdatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	w, _ := runWatcher(t, cfg.Triggers[0], client, st)
	waitFor(t, "trigger failed", func() bool { s := w.Status(); return s.State == runner.StateFailed && !s.Retrying })
	s := w.Status()
	if !strings.Contains(s.LastError, "does not belong to this collection or deployment") {
		t.Errorf("last error %q does not say the checkpoint is another stream's", s.LastError)
	}
	for _, want := range []string{"changehook resume low_stock --from now", "checkpoints reset --trigger low_stock"} {
		if !strings.Contains(s.WayOut, want) {
			t.Errorf("way out %q, want it to name %q (resuming from the same checkpoint fails again)", s.WayOut, want)
		}
	}
}
