package runner_test

import (
	"context"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestResumeFromTheCheckpointSaysWhetherItChangedAnything: a resume (from
// the checkpoint) of a trigger that is paused resumes it; of one that is
// neither paused nor failed it changes nothing and says so, naming the
// state, and the trigger keeps running. Alike for every partition of a
// partitioned trigger, and in a cluster, where the unit's lease holder
// applies it.
func TestResumeFromTheCheckpointSaysWhetherItChangedAnything(t *testing.T) {
	t.Parallel()
	const notPaused = "not paused or failed (state running), so nothing changed"
	for _, tc := range []struct {
		name       string
		partitions int
		clustered  bool
		pause      bool
		want       string
	}{
		{name: "running", want: notPaused},
		{name: "paused", pause: true, want: "resumed from the checkpoint"},
		{name: "partitions running", partitions: 2, want: notPaused + " (all 2 partitions)"},
		{name: "partitions paused", partitions: 2, pause: true, want: "resumed from the checkpoint (all 2 partitions)"},
		{name: "lease holder running", clustered: true, want: notPaused},
		{name: "lease holder paused", clustered: true, pause: true, want: "resumed from the checkpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			r := startOrdersForControls(t, client, recv, tc.partitions, tc.clustered)
			running := func() bool {
				st := statusOf(t, r, "orders")
				return st.State == runner.StateRunning && st.StreamOpen
			}
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			coll := client.Database("shop").Collection("orders")
			insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
			recv.next(t)
			if tc.pause {
				pauseByControl(t, st, r, "orders", "test")
			}
			insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})

			msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, By: "test"})
			if err != nil || msg != tc.want {
				t.Fatalf("resume = %q, %v; want %q", msg, err, tc.want)
			}
			// Delivered once either way: by the trigger that kept running,
			// or after the resume.
			if got := recv.next(t).Lookup("documentKey", "_id").Int32(); got != 2 {
				t.Fatalf("delivered document %d after the resume, want 2", got)
			}
			waitFor(t, "trigger running", running)
			recv.none(t, 200*time.Millisecond)
		})
	}
}
