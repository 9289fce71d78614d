package runner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestSkipRequestAppliedBeforeIsNotRepeated: a skip request whose id the
// checkpoint already carries was applied by a previous holder that could
// not record its result; applying it again would dead-letter the next
// event too, so it skips nothing and says so. A new request skips.
func TestSkipRequestAppliedBeforeIsNotRepeated(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	coll := client.Database("lessons").Collection("inventory")
	release := recv.holdRequests()
	t.Cleanup(release)
	// A skip stops the trigger, whose held delivery then ends at once.
	r := startRunner(t, cfg, client, runner.Options{Controls: true, ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	waitFor(t, "start pinned", func() bool { _, ok, _ := st.LoadCheckpoint(ctx, "low_stock"); return ok })
	insert(t, coll, item(1, 3)) // held by the receiver
	<-recv.arrived

	// The previous holder applied request "s-before": its checkpoint says so.
	cp, _, err := st.LoadCheckpoint(ctx, "low_stock")
	if err != nil {
		t.Fatal(err)
	}
	cp.Control = "s-before"
	if err := st.SaveCheckpoint(ctx, cp); err != nil {
		t.Fatal(err)
	}
	msg, err := runner.RequestControl(ctx, st, "low_stock", "", store.ControlRequest{ID: "s-before", Kind: store.RequestSkip, By: "test"})
	if err != nil || !strings.Contains(msg, "already applied") {
		t.Fatalf("skip applied before = %q, %v; want it reported as already applied", msg, err)
	}
	if n, err := st.CountDeadLetters(ctx, "low_stock"); err != nil || n != 0 {
		t.Fatalf("%d dead letters (%v) after a skip applied before, want none", n, err)
	}

	msg, err = runner.RequestControl(ctx, st, "low_stock", "", store.ControlRequest{ID: "s-new", Kind: store.RequestSkip, By: "test"})
	if err != nil || !strings.Contains(msg, "skipped and dead-lettered") {
		t.Fatalf("new skip = %q, %v", msg, err)
	}
	dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "low_stock"})
	if err != nil || len(dls) != 1 || dls[0].Event.Lookup("documentKey", "_id").Int32() != 1 {
		t.Fatalf("dead letters %v (%v), want item 1's", dls, err)
	}
	if cp, _, err := st.LoadCheckpoint(ctx, "low_stock"); err != nil || cp.Control != "s-new" {
		t.Fatalf("checkpoint control %q (%v), want the new request's id", cp.Control, err)
	}
	release()
}
