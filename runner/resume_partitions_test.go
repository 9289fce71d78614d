package runner_test

import (
	"context"
	"errors"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestResumeRefusedOnOnePartitionChangesNoPartition: a resume from a time
// before one partition's checkpoint is refused, and the other partitions,
// whose checkpoints are before the time, are neither moved nor unpaused:
// every partition is checked before any moves.
func TestResumeRefusedOnOnePartitionChangesNoPartition(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: per_document
    partitions: 2
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	st := store.New(client, stateDB)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	coll := client.Database("shop").Collection("orders")
	t0 := insertIDsBefore(t, client, coll, 0, 0)
	t1 := insertIDsBefore(t, client, coll, 1, 1)
	t2 := insertIDsBefore(t, client, coll, 2, 2)
	units := cfg.Triggers[0].Units()
	cp0, err := runner.PositionAt(ctx, client, units[0], t0)
	if err != nil {
		t.Fatal(err)
	}
	cp1, err := runner.PositionAt(ctx, client, units[1], t2)
	if err != nil {
		t.Fatal(err)
	}
	for _, cp := range []store.Checkpoint{cp0, cp1} {
		if err := st.SaveCheckpoint(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}
	// Paused before it starts, as an operator holds it before a resume --from.
	if _, err := st.RequestControl(ctx, "orders", "hold", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
		t.Fatal(err)
	}
	r := startRunner(t, cfg, client, runner.Options{Controls: true})
	waitFor(t, "trigger paused", func() bool { return statusOf(t, r, "orders").State == runner.StatePaused })
	_, err = r.Resume(ctx, "orders", runner.ResumeFrom{Time: t1})
	if !errors.Is(err, runner.ErrRewind) {
		t.Fatalf("Resume from t1 = %v, want ErrRewind (p1's checkpoint is after t1)", err)
	}
	after, _, err := st.LoadCheckpoint(context.Background(), units[0].Key())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := runner.TokenPosition(after.Token)
	b, _ := runner.TokenPosition(cp0.Token)
	if a != b {
		t.Errorf("the refused Resume moved %s's checkpoint from %s to %s (its doc: refused and changes nothing)", units[0].Key(), b, a)
	}
	for _, p := range statusOf(t, r, "orders").Partitions {
		if p.State != runner.StatePaused {
			t.Errorf("after the refused Resume partition %s is %s, want still paused", p.Key, p.State)
		}
	}
}
