package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestLeaseLostAtCheckpointFencesAndReacquiresAbove: after the state
// database lost its documents, this member acquired the lease anew at
// epoch 1 while a superseded holder, still on epoch 5, saved the
// checkpoint with its epoch. The member's renewals go on succeeding (the
// lease document is its own), but its checkpoint writes are refused; told
// so (Ownership.Lost), it fences the ownership at once, counts the
// transition as lost, does not release or renew the lease, says in the
// lease wait that it waits for its own lease to lapse and why, does not
// acquire it again before that (no tight loop), and then acquires it above
// the checkpoint's epoch, whose saves succeed.
func TestLeaseLostAtCheckpointFencesAndReacquiresAbove(t *testing.T) {
	srv, _ := devdbtest.Start(t)
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetTimeout(10*time.Second))
	st := store.New(client, "changehook_state")
	reg := prometheus.NewRegistry()
	clock := newFakeClock()
	m, err := New(st, testConfig(t, "orders"), Options{InstanceID: "b", Clock: clock, Version: "test", Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	got := await(ctx, m, "orders")
	waitRegistered(t, m, 1)
	m.round(ctx)
	o := <-got
	if o == nil || o.Fence().Epoch != 1 {
		t.Fatalf("ownership = %+v, want epoch 1", o)
	}
	tok, err := bson.Marshal(bson.D{{Key: "_data", Value: "82AA"}})
	if err != nil {
		t.Fatal(err)
	}
	cp := store.Checkpoint{Trigger: "orders", Token: tok}
	if err := st.SaveFencedCheckpoint(ctx, cp, o.Fence()); err != nil {
		t.Fatal(err)
	}
	// The superseded holder's save: epoch 1 does not fence out 5.
	if err := st.SaveFencedCheckpoint(ctx, cp, store.Fence{Owner: "a", Epoch: 5}); err != nil {
		t.Fatal(err)
	}
	refused := st.SaveFencedCheckpoint(ctx, cp, o.Fence())
	if !errors.Is(refused, store.ErrLeaseLost) {
		t.Fatalf("the holder's save: %v, want ErrLeaseLost", refused)
	}
	m.round(ctx)
	if !o.Valid() || o.Context().Err() != nil {
		t.Fatal("the ownership lost its lease at a renewal: this test needs renewals to succeed")
	}

	o.Lost(refused)
	if !errors.Is(context.Cause(o.Context()), ErrFenced) || o.Valid() {
		t.Fatalf("after Lost: cause %v, valid %v; want ErrFenced, invalid", context.Cause(o.Context()), o.Valid())
	}
	if n := clusterSeries(t, reg)[seriesKey{"changehook_lease_transitions_total", "orders", "0", "lost"}]; n != 1 {
		t.Errorf("lost transitions = %v, want 1", n)
	}
	o.Release(ctx) // the runner stopped the unit: lost, nothing is released

	got = await(ctx, m, "orders")
	waitRegistered(t, m, 1)
	for range 3 {
		clock.Advance(m.opts.RenewEvery)
		m.round(ctx)
		if again := acquired(t, m, "orders", got); again != nil {
			t.Fatalf("acquired again (epoch %d) while its fenced lease had not lapsed", again.Fence().Epoch)
		}
	}
	leases, err := st.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 1 || leases[0].Owner != "b" || leases[0].Epoch != 1 || leases[0].RemainingMS <= 0 {
		t.Fatalf("leases = %+v, want b's epoch 1, unexpired (neither released nor taken)", leases)
	}
	member, until, reason := m.LeaseWait("orders")
	for _, want := range []string{"fenced its lease (epoch 1", "lease lost at the checkpoint", "once that one lapses"} {
		if !strings.Contains(reason, want) {
			t.Errorf("lease wait reason %q, want it to say %q", reason, want)
		}
	}
	if member != "b" || until.IsZero() {
		t.Errorf("lease wait member %q until %v, want b and when its lease lapses", member, until)
	}

	// The lease lapses at the state database (moved there, as its clock
	// would): the next round acquires it above the checkpoint's epoch.
	if _, err := client.Database("changehook_state").Collection(store.LeasesCollection).UpdateOne(ctx, bson.D{{Key: "_id", Value: "orders"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "expiresAt", Value: time.Now().Add(-time.Second)}}}}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(m.opts.RenewEvery)
	m.round(ctx)
	again := acquired(t, m, "orders", got)
	if again == nil || again.Fence().Epoch != 6 {
		t.Fatalf("after the lapse: ownership %+v, want epoch 6 (above the checkpoint's 5)", again)
	}
	if _, _, err := st.ClaimCheckpoint(ctx, "orders", again.Fence()); err != nil {
		t.Fatalf("claim with epoch 6: %v", err)
	}
	if err := st.SaveFencedCheckpoint(ctx, cp, again.Fence()); err != nil {
		t.Fatalf("save with epoch 6: %v", err)
	}
	if _, _, reason := m.LeaseWait("orders"); reason != "" {
		t.Errorf("lease wait while held: %q, want none", reason)
	}
	again.Release(ctx)
}
