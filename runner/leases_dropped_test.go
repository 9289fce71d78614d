package runner_test

import (
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
	if s.State != runner.StateRetrying || s.StreamOpen || !strings.Contains(s.WayOut, "a newer lease epoch than this member's claimed the checkpoint of orders") {
		t.Errorf("stale holder: state %s, stream open %v, way_out %q", s.State, s.StreamOpen, s.WayOut)
	}
	stale.set(false)
	if err := ra.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if err := rb.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
}
