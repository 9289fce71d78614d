package runner_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestLeasesDroppedNextHolderRuns: after the leases collection is dropped,
// the next holder's lease, acquired anew, still starts above the epoch the
// checkpoint carries, so it claims the checkpoint and delivers, instead of
// retrying "claim checkpoint … lease lost" for good; and the stale holder,
// a second runner still running on its old epoch, can no longer move the
// checkpoint.
func TestLeasesDroppedNextHolderRuns(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recvA, recvB := newReceiver(t), newReceiver(t)
	ra, st, _ := startClusteredRunner(t, client, recvA, "per_document", 2*time.Second)
	rb, _, _ := startClusteredRunner(t, client, recvB, "per_document", 2*time.Second)
	ctx := context.Background()
	coll := client.Database("shop").Collection("orders")

	// Holder a at epoch 2 (one acquisition before it): the checkpoint is
	// fenced at 2.
	first, err := st.AcquireLease(ctx, "orders", "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ReleaseLease(ctx, "orders", store.Fence{Owner: "a", Epoch: first.Epoch}); err != nil {
		t.Fatal(err)
	}
	la, err := st.AcquireLease(ctx, "orders", "a", time.Hour)
	if err != nil || la.Epoch != 2 {
		t.Fatalf("second acquisition = %+v, %v; want epoch 2", la, err)
	}
	leaseA := &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: la.Epoch}, valid: true}
	if err := ra.StartLeased("orders", leaseA); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a's stream open", func() bool { return ra.Status()[0].StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	recvA.next(t)
	waitFor(t, "checkpoint by a past event 1", func() bool {
		cp, ok, _ := st.LoadCheckpoint(ctx, "orders")
		return ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})

	if err := client.Database(stateDB).Collection(store.LeasesCollection).Drop(ctx); err != nil {
		t.Fatal(err)
	}
	lb, err := st.AcquireLease(ctx, "orders", "b", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if lb.Epoch <= la.Epoch {
		t.Errorf("lease acquired after the leases were dropped: epoch %d, want above the checkpoint's %d", lb.Epoch, la.Epoch)
	}
	leaseB := &testLease{key: "orders", fence: store.Fence{Owner: "b", Epoch: lb.Epoch}, valid: true}
	if err := rb.StartLeased("orders", leaseB); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's stream open", func() bool {
		s := rb.Status()[0]
		return s.StreamOpen && s.State == runner.StateRunning
	})

	// a still believes its lease valid (it has not renewed yet): it may
	// deliver, but no longer checkpoint; b delivers and checkpoints.
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	if id := recvB.next(t).Lookup("documentKey", "_id").Int32(); id != 2 {
		t.Fatalf("b delivered %d, want 2", id)
	}
	waitFor(t, "checkpoint by b past event 2", func() bool {
		cp, ok, _ := st.LoadCheckpoint(ctx, "orders")
		return ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})
	var doc struct {
		Owner string `bson:"owner"`
		Epoch int64  `bson:"epoch"`
	}
	if err := client.Database(stateDB).Collection(store.CheckpointsCollection).FindOne(ctx, bson.D{{Key: "_id", Value: "orders"}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Owner != "b" || doc.Epoch != lb.Epoch {
		t.Errorf("checkpoint fenced by %s/%d, want b/%d", doc.Owner, doc.Epoch, lb.Epoch)
	}
	cp, _, _ := st.LoadCheckpoint(ctx, "orders")
	if err := st.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: cp.Token}, leaseA.fence); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("the stale holder's save: %v, want ErrLeaseLost", err)
	}
	if _, _, err := st.ClaimCheckpoint(ctx, "orders", leaseA.fence); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("the stale holder's claim: %v, want ErrLeaseLost", err)
	}
	leaseA.set(false)
	if err := ra.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}

	// A stale holder started again on its old epoch is refused, and says
	// what to do.
	stale := &testLease{key: "orders", fence: leaseA.fence, valid: true}
	if err := ra.StartLeased("orders", stale); err != nil {
		t.Fatal(err)
	}
	var s runner.TriggerStatus
	waitFor(t, "the stale holder's claim refused", func() bool {
		s = ra.Status()[0]
		return strings.Contains(s.LastError, "lease lost")
	})
	if s.State != runner.StateRetrying || s.StreamOpen || !strings.Contains(s.WayOut, "a higher lease epoch than this member's is at the checkpoint of orders") {
		t.Errorf("stale holder: state %s, stream open %v, way_out %q", s.State, s.StreamOpen, s.WayOut)
	}
	if err := stale.lostErr(); !errors.Is(err, store.ErrLeaseLost) {
		t.Errorf("the stale holder's lease was told %v, want it lost (ErrLeaseLost)", err)
	}
	stale.set(false)
	if err := ra.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if err := rb.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
}

// TestStateDatabaseLostHolderRefusedAtCheckpointTellsItsLease: after the
// state database lost its documents, the lease was acquired anew at epoch
// 1, and a superseded holder, still on epoch 5 by its own clocks until its
// next renewal fails, saved the checkpoint with its epoch (the new
// holder's epoch-1 checkpoint does not fence out epoch 5). The new
// holder's renewals succeed (the lease document is its own), but every
// save of its checkpoint is refused: the runner tells its lease
// (Lease.Lost), so the holder stops it and acquires the lease again, above
// the checkpoint's epoch, and the checkpoint follows its deliveries from
// then on; the refused saves never moved it.
func TestStateDatabaseLostHolderRefusedAtCheckpointTellsItsLease(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, strings.Replace(partitionedYAML, "    partitions: 4\n", "", 1), recv.srv.URL)
	coll := client.Database("shop").Collection("orders")
	cps := client.Database(stateDB).Collection(store.CheckpointsCollection)
	ctx := t.Context()

	l1, err := st.AcquireLease(ctx, "orders", "b", time.Hour)
	if err != nil || l1.Epoch != 1 {
		t.Fatalf("acquire on an empty state database = %+v, %v; want epoch 1", l1, err)
	}
	r := startLeaseMember(t, cfg, client, st)
	lease := &testLease{key: "orders", fence: store.Fence{Owner: "b", Epoch: l1.Epoch}, valid: true}
	if err := r.StartLeased("orders", lease); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's stream open", func() bool { return statusOf(t, r, "orders").StreamOpen })
	waitFor(t, "b's first checkpoint", func() bool {
		var d bson.M
		return cps.FindOne(ctx, bson.D{{Key: "_id", Value: "orders"}}).Decode(&d) == nil && d["owner"] == "b"
	})
	// The superseded holder's save, at the position of event 1.
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	stale := bytes.Clone(recv.next(t).Lookup("_id").Document())
	if err := st.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: stale}, store.Fence{Owner: "a", Epoch: 5}); err != nil {
		t.Fatal(err)
	}

	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	recv.next(t)
	waitFor(t, "b's lease told lost", func() bool { return lease.lostErr() != nil })
	if err := lease.lostErr(); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("the lease was told %v, want ErrLeaseLost", err)
	}
	// The save tells the lease before its caller records the failure in
	// the status.
	waitFor(t, "the checkpoint failure in the status", func() bool { return statusOf(t, r, "orders").CheckpointFailure != nil })
	s := statusOf(t, r, "orders")
	if f := s.CheckpointFailure; f == nil || f.Reason != runner.CheckpointFailLeaseLost || !strings.Contains(f.Error, "carries epoch 5") {
		t.Errorf("checkpoint failure = %+v, want lease_lost naming the checkpoint's epoch 5", f)
	}
	var doc struct {
		Token bson.Raw `bson:"token"`
		Owner string   `bson:"owner"`
		Epoch int64    `bson:"epoch"`
	}
	if err := cps.FindOne(ctx, bson.D{{Key: "_id", Value: "orders"}}).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Owner != "a" || doc.Epoch != 5 || !bytes.Equal(doc.Token, stale) {
		t.Fatalf("refused saves moved the checkpoint: %s/%d", doc.Owner, doc.Epoch)
	}

	// The holder fences the lease and stops the unit; its lease lapses
	// (released here) and the next acquisition is above the checkpoint.
	lease.set(false)
	if err := r.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if err := st.ReleaseLease(ctx, "orders", lease.fence); err != nil {
		t.Fatal(err)
	}
	l2, err := st.AcquireLease(ctx, "orders", "b", time.Hour)
	if err != nil || l2.Epoch != 6 {
		t.Fatalf("acquire again = %+v, %v; want epoch 6, above the checkpoint's 5", l2, err)
	}
	again := &testLease{key: "orders", fence: store.Fence{Owner: "b", Epoch: l2.Epoch}, valid: true}
	if err := r.StartLeased("orders", again); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b's stream open again", func() bool { return statusOf(t, r, "orders").StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	for {
		if id := recv.next(t).Lookup("documentKey", "_id").Int32(); id == 3 {
			break
		}
	}
	waitFor(t, "b's checkpoint past event 3", func() bool {
		cp, ok, _ := st.LoadCheckpoint(ctx, "orders")
		return ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})
	if err := again.lostErr(); err != nil {
		t.Errorf("the new lease was told lost: %v", err)
	}
	if s := statusOf(t, r, "orders"); s.CheckpointFailure != nil {
		t.Errorf("checkpoint failure after the re-acquisition: %+v", s.CheckpointFailure)
	}
}
