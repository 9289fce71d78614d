package runner_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// testLease is a runner.Lease whose validity the test switches.
type testLease struct {
	key   string
	fence store.Fence
	mu    sync.Mutex
	valid bool
}

func (l *testLease) Key() string        { return l.key }
func (l *testLease) Fence() store.Fence { return l.fence }
func (l *testLease) Valid() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.valid
}
func (l *testLease) Deadline() time.Time {
	if l.Valid() {
		return time.Now().Add(time.Hour)
	}
	return time.Time{}
}
func (l *testLease) set(v bool) {
	l.mu.Lock()
	l.valid = v
	l.mu.Unlock()
}

func TestStartLeasedFencing(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: per_document
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	st := store.New(client, stateDB)
	r, err := runner.New(cfg, client, st, runner.Options{
		Logger:             slog.New(slog.NewTextHandler(t.Output(), nil)),
		CheckpointInterval: 20 * time.Millisecond, ShutdownGrace: 5 * time.Second, Version: "test",
		StartStopped: true, Clustered: true, Standby: func(string) bool { return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- r.Run(runCtx) }()
	defer func() {
		stopRun()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitFor(t, "runner ready", r.Ready)
	if st := r.Status()[0].State; st != runner.StateStandby {
		t.Fatalf("before any lease: state %s, want standby", st)
	}
	coll := client.Database("shop").Collection("orders")

	// Epoch 1 runs, delivers and checkpoints.
	l1 := &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}
	if err := r.StartLeased("orders", l1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream open", func() bool { return r.Status()[0].StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	recv.next(t)
	waitFor(t, "checkpoint with epoch 1 past event 1", func() bool {
		cp, ok, _ := st.LoadCheckpoint(context.Background(), "orders")
		return ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})

	// The lease becomes invalid (self-fenced): nothing more is delivered or
	// checkpointed, even though the watcher still reads until canceled.
	l1.set(false)
	cpBefore, _, _ := st.LoadCheckpoint(context.Background(), "orders")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	recv.none(t, 300*time.Millisecond)
	if err := r.Stop(context.Background(), "orders"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	cpAfter, _, _ := st.LoadCheckpoint(context.Background(), "orders")
	if string(cpAfter.Token) != string(cpBefore.Token) {
		t.Fatal("a fenced owner moved the checkpoint")
	}
	if s := r.Status()[0].State; s != runner.StateStandby {
		t.Fatalf("after Stop: state %s, want standby", s)
	}

	// Epoch 2 takes over from the checkpoint and delivers event 2; a late
	// write by epoch 1 is refused by the store.
	l2 := &testLease{key: "orders", fence: store.Fence{Owner: "b", Epoch: 2}, valid: true}
	if err := r.StartLeased("orders", l2); err != nil {
		t.Fatal(err)
	}
	if id := recv.next(t).Lookup("documentKey", "_id").Int32(); id != 2 {
		t.Fatalf("successor delivered %d first, want 2", id)
	}
	err = st.SaveFencedCheckpoint(context.Background(), store.Checkpoint{Trigger: "orders", Token: cpBefore.Token}, l1.fence)
	if !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale epoch write: %v, want ErrLeaseLost", err)
	}
	if err := r.Stop(context.Background(), "orders"); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := r.StartLeased("nope", l2); !errors.Is(err, runner.ErrUnknownTrigger) {
		t.Fatalf("StartLeased of an unknown trigger: %v", err)
	}
}
