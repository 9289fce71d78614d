package runner_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// twoPartitionsYAML is the trigger orders in two partitions (per_document,
// as partitions need), its webhook at ${HOOK_URL}.
const twoPartitionsYAML = `
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: per_document
    partitions: 2
    webhook: { url: "${HOOK_URL}" }
`

// TestResumeRefusedOnOnePartitionChangesNoPartition: a resume from a time
// before one partition's checkpoint is refused, and the other partitions,
// whose checkpoints are before the time, are neither moved nor unpaused:
// every partition is checked before any moves.
func TestResumeRefusedOnOnePartitionChangesNoPartition(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, twoPartitionsYAML, recv.srv.URL)
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

// TestResumeOfTriggerClearsAPartitionsStoredPause: `pause orders/p0of2`
// stores the pause under that partition's key; `resume orders` answers
// that the partition is resumed, so it must not be paused again when a
// process reads the controls later: after a restart both partitions run
// (before, partition 0 came back paused).
func TestResumeOfTriggerClearsAPartitionsStoredPause(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, twoPartitionsYAML, recv.srv.URL)
	r1, err := runner.New(cfg, client, st, runner.Options{Controls: true, CheckpointInterval: 20 * time.Millisecond,
		ShutdownGrace: 5 * time.Second, Version: "test", Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r1.Run(rctx) }()
	waitFor(t, "runner ready", r1.Ready)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if _, err := runner.RequestControl(ctx, st, "orders/p0of2", "one partition", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
		stop()
		t.Fatal(err)
	}
	waitFor(t, "partition 0 paused", func() bool { return statusOf(t, r1, "orders").Partitions[0].State == runner.StatePaused })
	msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, By: "cli"})
	if err != nil || !strings.Contains(msg, "orders/p0of2: resumed") {
		stop()
		t.Fatalf("resume orders = %q, %v; want it to say orders/p0of2 resumed", msg, err)
	}
	waitFor(t, "both partitions running", func() bool {
		s := statusOf(t, r1, "orders")
		return s.Partitions[0].State == runner.StateRunning && s.Partitions[1].State == runner.StateRunning
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	r2 := startRunnerOn(t, cfg, client, st, runner.Options{Controls: true})
	waitFor(t, "controls read", func() bool {
		s := statusOf(t, r2, "orders")
		return s.Partitions[0].State != runner.StateStarting && s.Partitions[1].State != runner.StateStarting
	})
	if s := statusOf(t, r2, "orders"); s.Partitions[0].State != runner.StateRunning {
		c, _, _ := st.LoadControl(ctx, "orders/p0of2")
		t.Fatalf("after `resume orders` answered %q, a restart shows partition 0 %s (its document: paused %v, reason %q)",
			msg, s.Partitions[0].State, c.Paused, c.Reason)
	}
}
