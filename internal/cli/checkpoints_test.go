package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
)

// TestResetFenced: checkpoints reset is refused while a member holds the
// trigger's lease, and once it wrote, a member whose lease lapsed cannot
// overwrite the reset; the next member reads it.
func TestResetFenced(t *testing.T) {
	_, client := devdbtest.Start(t)
	st := store.New(client, "state")
	ctx := t.Context()
	cp := func(n int32) store.Checkpoint {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: n}})
		return store.Checkpoint{Trigger: "orders", Token: tok, ClusterTime: bson.Timestamp{T: uint32(n), I: 1}}
	}
	// Member m1 runs the trigger and checkpoints.
	l1, err := st.AcquireLease(ctx, "orders", "m1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f1 := store.Fence{Owner: "m1", Epoch: l1.Epoch}
	if _, _, err := st.ClaimCheckpoint(ctx, "orders", f1); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveFencedCheckpoint(ctx, cp(10), f1); err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	err = resetFenced(ctx, st, []store.Checkpoint{cp(100)}, time.Minute, &warn)
	if err == nil || !strings.Contains(err.Error(), "trigger orders is running on cluster member m1") ||
		!strings.Contains(err.Error(), "changehook resume orders --from now|TIME") {
		t.Fatalf("reset while m1 holds the lease: %v; want refused naming m1 and the way out", err)
	}
	if got, _, _ := st.LoadCheckpoint(ctx, "orders"); got.ClusterTime.T != 10 {
		t.Fatalf("refused reset moved the checkpoint to %v", got.ClusterTime)
	}

	// m1's lease lapses (it is paused, say); the reset goes through.
	if err := st.ReleaseLease(ctx, "orders", f1); err != nil {
		t.Fatal(err)
	}
	if err := resetFenced(ctx, st, []store.Checkpoint{cp(100)}, time.Minute, &warn); err != nil {
		t.Fatalf("reset with the lease free: %v", err)
	}
	if warn.Len() > 0 {
		t.Errorf("warnings: %s", warn.String())
	}
	// m1 wakes up and tries to save its old position: fenced.
	if err := st.SaveFencedCheckpoint(ctx, cp(11), f1); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale member's checkpoint after the reset: %v, want ErrLeaseLost", err)
	}
	// The lease is free again, and the next member starts from the reset.
	l2, err := st.AcquireLease(ctx, "orders", "m2", time.Hour)
	if err != nil {
		t.Fatalf("lease after the reset: %v (reset must release it)", err)
	}
	got, ok, err := st.ClaimCheckpoint(ctx, "orders", store.Fence{Owner: "m2", Epoch: l2.Epoch})
	if err != nil || !ok || got.ClusterTime.T != 100 {
		t.Fatalf("next member's checkpoint = %v, %v, %v; want the reset position", got.ClusterTime, ok, err)
	}
}

// TestResetFencedPartitions: a partitioned trigger's partitions are reset
// together or not at all.
func TestResetFencedPartitions(t *testing.T) {
	_, client := devdbtest.Start(t)
	st := store.New(client, "state")
	ctx := t.Context()
	cp := func(key string, n int32) store.Checkpoint {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: n}})
		return store.Checkpoint{Trigger: key, Token: tok, ClusterTime: bson.Timestamp{T: uint32(n), I: 1}}
	}
	p0, p1 := "orders/p0of2", "orders/p1of2"
	l1, err := st.AcquireLease(ctx, p1, "m1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var warn bytes.Buffer
	err = resetFenced(ctx, st, []store.Checkpoint{cp(p0, 100), cp(p1, 100)}, time.Minute, &warn)
	if err == nil || !strings.Contains(err.Error(), "trigger orders/p1of2 is running on cluster member m1") ||
		!strings.Contains(err.Error(), "nothing was reset") || !strings.Contains(err.Error(), "changehook resume orders --from") {
		t.Fatalf("reset with one partition held: %v", err)
	}
	if _, ok, _ := st.LoadCheckpoint(ctx, p0); ok {
		t.Error("partition 0 was reset although partition 1 was refused")
	}
	if _, err := st.AcquireLease(ctx, p0, "m2", time.Hour); err != nil {
		t.Errorf("partition 0's lease not released after the refusal: %v", err)
	}
	if err := st.ReleaseLease(ctx, p1, store.Fence{Owner: "m1", Epoch: l1.Epoch}); err != nil {
		t.Fatal(err)
	}
}
