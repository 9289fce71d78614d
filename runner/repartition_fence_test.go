package runner_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestRepartitionFencesOutFormerOwners: Repartition claims the old
// partitioning's checkpoints with a newer epoch than any former owner's
// and removes them, with their lease documents. A former owner's fenced
// save still in flight (it passed its lease check, then paused while its
// lease lapsed) that lands afterwards is refused: it does not bring the
// old partitioning's checkpoint back, with its stale position, beside the
// new ones. Repartitioning back to the old partitioning then works as
// usual.
func TestRepartitionFencesOutFormerOwners(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ from, to int }{{1, 2}, {2, 1}, {2, 3}} {
		t.Run(fmt.Sprintf("%d to %d partitions", tc.from, tc.to), func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			st := store.New(client, stateDB)
			ctx := t.Context()
			tok := func(pos int) bson.Raw {
				b, err := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", pos)}})
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			keys := func(n int) []string {
				var ks []string
				for i := range n {
					ks = append(ks, triggers.PartitionKey("orders", i, n))
				}
				return ks
			}
			// Member a runs every old partition and checkpoints; then it
			// pauses and its leases lapse (released here, which
			// AcquireLease treats alike).
			stale := map[string]store.Fence{}
			for i, key := range keys(tc.from) {
				l, err := st.AcquireLease(ctx, key, "a", time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				f := store.Fence{Owner: "a", Epoch: l.Epoch}
				if _, _, err := st.ClaimCheckpoint(ctx, key, f); err != nil {
					t.Fatal(err)
				}
				if err := st.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: key, Token: tok(16 + i)}, f); err != nil {
					t.Fatal(err)
				}
				if err := st.ReleaseLease(ctx, key, f); err != nil {
					t.Fatal(err)
				}
				stale[key] = f
			}
			if _, err := runner.Repartition(ctx, st, "orders", tc.to, runner.RepartitionOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
			// a wakes up, and its saves, sent before it paused, arrive.
			for key, f := range stale {
				if slices.Contains(keys(tc.to), key) {
					continue // the new partitioning's key: claimed with a newer epoch
				}
				err := st.SaveFencedCheckpoint(ctx, store.Checkpoint{Trigger: key, Token: tok(8)}, f)
				if !errors.Is(err, store.ErrLeaseLost) {
					t.Errorf("%s: the superseded owner's save after the repartition: err = %v, want ErrLeaseLost", key, err)
				}
			}
			checkKeys := func(want []string) {
				t.Helper()
				cps, err := st.TriggerCheckpoints(ctx, "orders")
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, cp := range cps {
					got = append(got, cp.Trigger)
					if string(cp.Token) != string(tok(16)) {
						t.Errorf("%s: checkpoint at %s, want the oldest old one's, %s", cp.Trigger, cp.Token, tok(16))
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("checkpoints %v, want %v", got, want)
				}
			}
			checkKeys(keys(tc.to))
			// Back to the old partitioning.
			if _, err := runner.Repartition(ctx, st, "orders", tc.from, runner.RepartitionOptions{Force: true}); err != nil {
				t.Fatalf("repartition back to %d: %v", tc.from, err)
			}
			checkKeys(keys(tc.from))
		})
	}
}
