package runner_test

import (
	"context"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// TestCheckpointVanishedWhileHeld: a checkpoint deleted (its collection
// dropped) while the trigger is paused or stopped is written again at the
// position this process last saved, instead of the next watcher starting
// at start_at (now): the change written while the trigger was held is
// delivered.
func TestCheckpointVanishedWhileHeld(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		hold, unhold func(t *testing.T, r *runner.Runner)
		want         runner.State
	}{
		{"paused",
			func(t *testing.T, r *runner.Runner) {
				if err := r.Pause("orders", "maintenance", "test"); err != nil {
					t.Fatal(err)
				}
			},
			func(t *testing.T, r *runner.Runner) {
				if _, err := r.Resume(t.Context(), "orders", runner.ResumeFrom{}); err != nil {
					t.Fatal(err)
				}
			}, runner.StatePaused},
		{"stopped",
			func(t *testing.T, r *runner.Runner) {
				if err := r.Stop(t.Context(), "orders"); err != nil {
					t.Fatal(err)
				}
			},
			func(t *testing.T, r *runner.Runner) {
				if err := r.Start("orders"); err != nil {
					t.Fatal(err)
				}
			}, runner.StateStopped},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, recv, r, st, coll := runOrdersPastOne(t)
			tc.hold(t, r)
			waitFor(t, "held", func() bool { return statusOf(t, r, "orders").State == tc.want })
			insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
			dropCheckpoints(t, client)
			tc.unhold(t, r)
			if id := recv.next(t).Lookup("documentKey", "_id").Int32(); id != 2 {
				t.Fatalf("delivered %d after the checkpoint vanished, want 2 (written while held)", id)
			}
			waitFor(t, "checkpoint written again, past event 2", func() bool {
				cp, ok, _ := st.LoadCheckpoint(t.Context(), "orders")
				return ok && len(eventsAfter(t, coll, cp.Token)) == 0
			})
		})
	}
}

// runOrdersPastOne runs a trigger "orders" on shop.orders delivering to
// recv, inserts document 1 and returns once it is delivered and the
// checkpoint is past it.
func runOrdersPastOne(t *testing.T) (*mongo.Client, *receiver, *runner.Runner, *store.Store, *mongo.Collection) {
	t.Helper()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	r := startRunner(t, parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL), client, runner.Options{})
	waitFor(t, "ready", r.Ready)
	st := store.New(client, stateDB)
	coll := client.Database("shop").Collection("orders")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	recv.next(t)
	waitFor(t, "checkpoint past event 1", func() bool {
		cp, ok, _ := st.LoadCheckpoint(t.Context(), "orders")
		return ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})
	return client, recv, r, st, coll
}

// dropCheckpoints drops the state database's checkpoints collection.
func dropCheckpoints(t *testing.T, client *mongo.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := client.Database(stateDB).Collection(store.CheckpointsCollection).Drop(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestCheckpointVanishedAfterAControl: a control's checkpoint (here resume
// from now, skipping a change) becomes the position written again when the
// checkpoint then vanishes, not the one the last watcher saved before it:
// the skipped change stays skipped.
func TestCheckpointVanishedAfterAControl(t *testing.T) {
	t.Parallel()
	client, recv, r, _, coll := runOrdersPastOne(t)
	if err := r.Stop(t.Context(), "orders"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "stopped", func() bool { return statusOf(t, r, "orders").State == runner.StateStopped })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	if _, err := r.Resume(t.Context(), "orders", runner.ResumeFrom{Now: true}); err != nil {
		t.Fatal(err)
	}
	dropCheckpoints(t, client)
	if err := r.Start("orders"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "running", func() bool { return statusOf(t, r, "orders").State == runner.StateRunning })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	if id := recv.next(t).Lookup("documentKey", "_id").Int32(); id != 3 {
		t.Fatalf("delivered %d first, want 3 (2 was skipped by resume from now)", id)
	}
}
