package runner_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/connendpoint"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// testLease is a runner.Lease whose validity the test switches. Lost
// records the first error it is given and leaves the validity alone.
type testLease struct {
	key   string
	fence store.Fence
	mu    sync.Mutex
	valid bool
	lost  error
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
func (l *testLease) Lost(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost == nil {
		l.lost = err
	}
}

// lostErr returns the first error Lost was given (nil: none).
func (l *testLease) lostErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
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
	r, st, _ := startClusteredRunner(t, client, recv, "per_document", 5*time.Second)
	waitFor(t, "runner ready", r.Ready)
	if st := r.Status()[0]; st.State != runner.StateStandby || st.Since.IsZero() {
		t.Fatalf("before any lease: state %s since %v, want standby since the runner started", st.State, st.Since)
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
	// checkpointed, even though the watcher still reads until canceled;
	// the status no longer says running (a successor runs the trigger).
	l1.set(false)
	if s := r.Status()[0].State; s != runner.StateStandby {
		t.Errorf("lease no longer valid, watcher not stopped yet: state %s, want standby", s)
	}
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
	err := st.SaveFencedCheckpoint(context.Background(), store.Checkpoint{Trigger: "orders", Token: cpBefore.Token}, l1.fence)
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

// TestSkipIsFencedByTheLease: a skip (what a lease holder applies for
// `changehook skip`) by a member whose lease lapsed — its successor at a
// newer epoch claimed the checkpoint and advanced it — is refused before
// anything is written: no dead letter, and the newer checkpoint stays. Both
// the member that knows its lease lapsed and the one that still believes it
// valid are refused. The holder of the current lease skips normally.
func TestSkipIsFencedByTheLease(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	r, st, cfg := startClusteredRunner(t, client, recv, "strict", 100*time.Millisecond)
	waitFor(t, "runner ready", r.Ready)
	coll := client.Database("shop").Collection("orders")
	ctx := context.Background()

	// Epoch 1 (member a) delivers event 1 and checkpoints past it, then
	// its lease lapses and the driver stops the unit.
	l1 := &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}
	if err := r.StartLeased("orders", l1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stream open", func() bool { return r.Status()[0].StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	recv.next(t)
	waitFor(t, "checkpoint past event 1", func() bool {
		cp, ok, _ := st.LoadCheckpoint(ctx, "orders")
		return ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})
	l1.set(false)
	if err := r.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}

	// Epoch 2 (member b) claims the checkpoint and advances it past event
	// 2; event 3 is its next.
	f2 := store.Fence{Owner: "b", Epoch: 2}
	if _, _, err := st.ClaimCheckpoint(ctx, "orders", f2); err != nil {
		t.Fatal(err)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	cpB, err := runner.PositionAt(ctx, client, cfg.Triggers[0], time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SaveFencedCheckpoint(ctx, cpB, f2); err != nil {
		t.Fatal(err)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})

	unchanged := func(what string) {
		t.Helper()
		cp, _, err := st.LoadCheckpoint(ctx, "orders")
		if err != nil {
			t.Fatal(err)
		}
		if string(cp.Token) != string(cpB.Token) {
			t.Errorf("%s: the checkpoint moved from epoch 2's to one with events %v after it", what, eventsAfter(t, coll, cp.Token))
		}
		if n, err := st.CountDeadLetters(ctx, "orders"); err != nil || n != 0 {
			t.Errorf("%s: %d dead letters (%v), want none", what, n, err)
		}
	}

	// Member a, knowing its lease lapsed, is refused.
	id, err := r.Skip(ctx, "orders", "stale member")
	const lapsed = `skip event orders: claim checkpoint of "orders": cluster lease no longer held; refusing to deliver or checkpoint`
	if !errors.Is(err, runner.ErrFenced) || err.Error() != lapsed {
		t.Errorf("skip under a lapsed lease = %q, %v; want the error %q", id, err, lapsed)
	}
	unchanged("skip under a lapsed lease")

	// Member a, still believing its lease valid (its clock ran slow), is
	// refused by the epoch 2 claim.
	l1.set(true)
	id, err = r.Skip(ctx, "orders", "stale member")
	const superseded = `skip event orders: cluster lease no longer held; refusing to deliver or checkpoint: claim checkpoint of "orders" with epoch 1: lease lost`
	if !errors.Is(err, runner.ErrFenced) || !errors.Is(err, store.ErrLeaseLost) || err.Error() != superseded {
		t.Errorf("skip under a superseded epoch = %q, %v; want the error %q", id, err, superseded)
	}
	unchanged("skip under a superseded epoch")

	// The epoch 2 holder runs the unit; it is stuck on event 3 (the
	// endpoint fails it) and the skip dead-letters it and moves the
	// checkpoint past it under epoch 2.
	stopFailing := recv.failRequests()
	t.Cleanup(stopFailing)
	l2 := &testLease{key: "orders", fence: f2, valid: true}
	if err := r.StartLeased("orders", l2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stuck on event 3", func() bool {
		h := r.Status()[0].HeadOfLine
		return h != nil && h.LastReason != ""
	})
	id, err = r.Skip(ctx, "orders", "owner")
	if err != nil {
		t.Fatalf("skip by the lease holder: %v", err)
	}
	stopFailing()
	cp, _, err := st.LoadCheckpoint(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if after := eventsAfter(t, coll, cp.Token); len(after) != 0 {
		t.Errorf("after the holder's skip, events %v follow the checkpoint, want none", after)
	}
	dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].WebhookID != id || dls[0].Event.Lookup("documentKey", "_id").Int32() != 3 {
		t.Errorf("after the holder's skip, dead letters %v, want event 3 as %s", dls, id)
	}
	if _, _, err := st.ClaimCheckpoint(ctx, "orders", f2); err != nil {
		t.Errorf("the skip's checkpoint is not epoch 2's: claim at epoch 2: %v", err)
	}
}

// startClusteredRunner runs a clustered runner (every trigger on standby
// until a lease starts it) with one trigger, orders on shop.orders with
// ordering, delivering to recv, stopped at the test's end.
func startClusteredRunner(t *testing.T, client *mongo.Client, recv *receiver, ordering string, grace time.Duration) (*runner.Runner, *store.Store, *triggers.Config) {
	t.Helper()
	cfg := parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: `+ordering+`
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	st := store.New(client, stateDB)
	r := startRunnerOn(t, cfg, client, st, runner.Options{
		ShutdownGrace: grace, StartStopped: true, Clustered: true, Standby: func(string) bool { return true },
	})
	return r, st, cfg
}

// TestLeasedStartsKeepConnectionsBounded: a trigger started and stopped
// under a lease again and again (each acquisition, handoff back, control
// or reload restart) leaves no connections behind: the dispatcher's own
// transport is closed at each stop, and a caller's client
// (Options.HTTPClient, with or without a Transport) is wrapped in the
// lease gate, never copied, so its one pool keeps at most its idle limit.
// Each start used to clone http.DefaultTransport for a client without a
// Transport, which nobody closed: one connection per start, held 90 s.
func TestLeasedStartsKeepConnectionsBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client func() *http.Client
		max    int64 // connections open after the starts
	}{
		{"no HTTPClient", func() *http.Client { return nil }, 0},
		{"HTTPClient without Transport", func() *http.Client { return &http.Client{Timeout: time.Minute} }, http.DefaultMaxIdleConnsPerHost},
		{"HTTPClient with Transport", func() *http.Client { return &http.Client{Transport: &http.Transport{}} }, http.DefaultMaxIdleConnsPerHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := startDB(t, devdb.Options{})
			srv := connendpoint.Start(t)
			cfg := parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "${HOOK_URL}" }
`, srv.URL+"/hook")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r, err := runner.New(cfg, client, store.New(client, stateDB), runner.Options{Logger: slog.New(slog.DiscardHandler),
				StartStopped: true, Clustered: true, HTTPClient: tc.client(), ShutdownGrace: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
			}()
			coll := client.Database("shop").Collection("orders")
			const starts = 8
			for i := range starts {
				l := &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: int64(i + 1)}, valid: true}
				if err := r.StartLeased("orders", l); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "stream open", func() bool { return r.Status()[0].StreamOpen })
				want := srv.Received() + 1
				if _, err := coll.InsertOne(ctx, bson.D{{Key: "i", Value: i}}); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "delivery", func() bool { return srv.Received() >= want })
				if err := r.Stop(ctx, "orders"); err != nil {
					t.Fatal(err)
				}
			}
			// The server sees a connection the client closed as closed a
			// moment later.
			deadline := time.Now().Add(5 * time.Second)
			for srv.Open() > tc.max {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections open after %d starts under a lease, each delivering one event; want at most %d",
						srv.Open(), starts, tc.max)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
