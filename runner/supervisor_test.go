package runner_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// startRunner runs a Runner for cfg until the test ends, its state in
// the same deployment.
func startRunner(t *testing.T, cfg *triggers.Config, client *mongo.Client, opts runner.Options) *runner.Runner {
	t.Helper()
	return startRunnerOn(t, cfg, client, store.New(client, stateDB), opts)
}

// startOrdersForControls runs trigger orders (shop.orders, per_document,
// with partitions partitions when partitions > 0; its webhook recv's)
// with Controls on client, the state on client too. Clustered, the Runner
// is a cluster member's (StartStopped) and runs the trigger under a lease
// of member a, epoch 1, as its lease holder. It returns once the trigger
// runs with its stream open.
func startOrdersForControls(t *testing.T, client *mongo.Client, recv *receiver, partitions int, clustered bool) *runner.Runner {
	t.Helper()
	yaml := `
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: per_document
    webhook: { url: "${HOOK_URL}" }
`
	if partitions > 0 {
		yaml += fmt.Sprintf("    partitions: %d\n", partitions)
	}
	opts := runner.Options{Controls: true}
	if clustered {
		opts.Clustered, opts.StartStopped = true, true
	}
	r := startRunner(t, parseTrigger(t, yaml, recv.srv.URL), client, opts)
	if clustered {
		l := &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}
		if err := r.StartLeased("orders", l); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "trigger running", func() bool {
		st := statusOf(t, r, "orders")
		return st.State == runner.StateRunning && st.StreamOpen
	})
	return r
}

// pauseByControl pauses trigger (every partition of it) with a control
// request stored in st, with reason, as the CLI does, and waits until r
// shows it paused.
func pauseByControl(t *testing.T, st *store.Store, r *runner.Runner, trigger, reason string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if _, err := runner.RequestControl(ctx, st, trigger, reason, store.ControlRequest{Kind: store.RequestPause, By: "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger paused", func() bool { return statusOf(t, r, trigger).State == runner.StatePaused })
}

// startRunnerOn runs cfg in a Runner reading with client and keeping its
// state in st (a store on the same client, or on one of its own), until
// the test ends; opts' CheckpointInterval defaults to 20ms.
func startRunnerOn(t *testing.T, cfg *triggers.Config, client *mongo.Client, st *store.Store, opts runner.Options) *runner.Runner {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = 20 * time.Millisecond
	}
	if opts.ShutdownGrace == 0 {
		opts.ShutdownGrace = 5 * time.Second
	}
	opts.Version = "test"
	r, err := runner.New(cfg, client, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

func statusOf(t *testing.T, r *runner.Runner, name string) runner.TriggerStatus {
	t.Helper()
	st, err := r.TriggerStatus(name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

const twoTriggersYAML = `
triggers:
  - name: held
    database: shop
    collection: a
    webhook: { url: "${HOOK_URL}/held" }
  - name: other
    database: shop
    collection: b
    webhook: { url: "${HOOK_URL}/other" }
`

func docID(raw bson.Raw) int32 { return raw.Lookup("documentKey", "_id").Int32() }

func TestPauseHoldsEventsAndResumeDeliversThemInOrder(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, twoTriggersYAML, recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{})
	waitFor(t, "runner ready", r.Ready)
	db := client.Database("shop")

	insert(t, db.Collection("a"), bson.D{{Key: "_id", Value: int32(1)}})
	if id := docID(recv.next(t)); id != 1 {
		t.Fatalf("first delivery %d, want 1", id)
	}
	if err := r.Pause("held", "maintenance", "test"); err != nil {
		t.Fatal(err)
	}
	st := statusOf(t, r, "held")
	if st.State != runner.StatePaused || st.Paused == nil || st.Paused.Reason != "maintenance" || st.Paused.By != "test" {
		t.Fatalf("status after Pause = %+v", st)
	}
	waitFor(t, "paused watcher stopped", func() bool { return !statusOf(t, r, "held").StreamOpen })
	if !r.Ready() {
		t.Error("a paused trigger made the runner unready")
	}
	for i := int32(2); i <= 6; i++ {
		insert(t, db.Collection("a"), bson.D{{Key: "_id", Value: i}})
	}
	// The other trigger keeps delivering while held is paused.
	insert(t, db.Collection("b"), bson.D{{Key: "_id", Value: int32(100)}})
	if id := docID(recv.next(t)); id != 100 {
		t.Fatalf("delivery while paused = %d, want only the other trigger's 100", id)
	}
	recv.none(t, 200*time.Millisecond)
	if err := r.Pause("held", "second", "test"); err != nil {
		t.Fatal(err)
	}
	if p := statusOf(t, r, "held").Paused; p.Reason != "maintenance" {
		t.Errorf("second Pause replaced the first: %+v", p)
	}

	if _, err := r.Resume(context.Background(), "held", runner.ResumeFrom{}); err != nil {
		t.Fatal(err)
	}
	for want := int32(2); want <= 6; want++ {
		if id := docID(recv.next(t)); id != want {
			t.Fatalf("after resume got %d, want %d (in order)", id, want)
		}
	}
	waitFor(t, "running again", func() bool { return statusOf(t, r, "held").State == runner.StateRunning })
}

func TestResumeFromNowSkipsHeldEvents(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, twoTriggersYAML, recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{})
	waitFor(t, "runner ready", r.Ready)
	coll := client.Database("shop").Collection("a")
	if err := r.Pause("held", "", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "paused watcher stopped", func() bool { return !statusOf(t, r, "held").StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "_id", Value: int32(2)}})
	skipped, err := r.Resume(context.Background(), "held", runner.ResumeFrom{Now: true})
	if err != nil {
		t.Fatal(err)
	}
	if skipped.From.IsZero() || skipped.To.Before(skipped.From) {
		t.Errorf("skipped range = %+v", skipped)
	}
	waitFor(t, "running again", func() bool { return statusOf(t, r, "held").StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	if id := docID(recv.next(t)); id != 3 {
		t.Fatalf("first delivery after resume from now = %d, want 3 (1 and 2 skipped)", id)
	}
}

func TestStopStartAndStartStopped(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, twoTriggersYAML, recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{StartStopped: true})
	// Nothing runs before Start.
	if st := statusOf(t, r, "held"); st.State != runner.StateStopped {
		t.Fatalf("state before Start = %s, want stopped", st.State)
	}
	if err := r.Start("held"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "held open", func() bool { return statusOf(t, r, "held").StreamOpen })
	coll := client.Database("shop").Collection("a")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	if id := docID(recv.next(t)); id != 1 {
		t.Fatalf("delivery = %d, want 1", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := r.Stop(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	if st := statusOf(t, r, "held"); st.State != runner.StateStopped || st.StreamOpen {
		t.Fatalf("after Stop: %+v", st)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	recv.none(t, 200*time.Millisecond)
	if err := r.Start("held"); err != nil {
		t.Fatal(err)
	}
	if id := docID(recv.next(t)); id != 2 {
		t.Fatalf("delivery after restart = %d, want 2 (from the checkpoint)", id)
	}
	if err := r.Restart(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "held open after Restart", func() bool { return statusOf(t, r, "held").StreamOpen })
	if err := r.Pause("nope", "", ""); err == nil {
		t.Error("Pause of an unknown trigger succeeded")
	}
}

// TestResumeWhileFailedWatcherFinishesDeliveries resumes a trigger whose
// stream failed permanently while its watcher still waits for a delivery
// in flight (the status already shows it failed): the resume must not be
// lost when that watcher then ends — a new one starts from the checkpoint.
func TestResumeWhileFailedWatcherFinishesDeliveries(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{EnableTestCommands: true})
	recv := newReceiver(t)
	cfg := parseTrigger(t, `
triggers:
  - name: held
    database: shop
    collection: a
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{IdleCheckpointInterval: 50 * time.Millisecond})
	waitFor(t, "held open", func() bool { return statusOf(t, r, "held").StreamOpen })
	release := recv.holdRequests()
	t.Cleanup(release)
	coll := client.Database("shop").Collection("a")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	select {
	case <-recv.arrived:
	case <-time.After(waitTimeout):
		t.Fatal("delivery of 1 not attempted")
	}
	// The next getMore fails with an error that is not resumable.
	configureFailPoint(t, client, "failCommand", bson.D{{Key: "times", Value: 1}},
		bson.D{{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "errorCode", Value: int32(2)}})
	waitFor(t, "held failed", func() bool { return statusOf(t, r, "held").State == runner.StateFailed })

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := r.Resume(ctx, "held", runner.ResumeFrom{}); err != nil {
		t.Fatal(err)
	}
	release()
	if id := docID(recv.next(t)); id != 1 {
		t.Fatalf("delivery = %d, want 1", id)
	}
	waitFor(t, "held running again", func() bool {
		st := statusOf(t, r, "held")
		return st.State == runner.StateRunning && st.StreamOpen
	})
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	for {
		id := docID(recv.next(t))
		if id == 2 {
			break
		}
		if id != 1 {
			t.Fatalf("delivery = %d, want 2 (or 1 again)", id)
		}
	}
}
