package runner_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestRedeliverOfAPausedTriggerSaysItWaits: a redeliver applied to a
// paused trigger moves (or keeps) its checkpoint, but the pause holds, so
// nothing is delivered until a resume: its result says so, whether the
// checkpoint was kept before the time or moved back to it; a running
// trigger's does not. After the resume the changes since the time arrive.
func TestRedeliverOfAPausedTriggerSaysItWaits(t *testing.T) {
	const note = "; paused: delivered once the trigger is resumed"
	for _, tc := range []struct {
		name   string
		paused bool
		// writtenPaused: changes written during the pause, before the
		// redeliver's time, so that the checkpoint is kept before it.
		writtenPaused bool
	}{
		{"paused, checkpoint before the time", true, true},
		{"paused, checkpoint moved back", true, false},
		{"running", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			r := startRunner(t, parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL), client, runner.Options{Controls: true})
			waitFor(t, "runner ready", r.Ready)
			coll := client.Database("shop").Collection("orders")
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()

			var since time.Time
			if tc.writtenPaused {
				insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
				receiveThrough(t, recv, 1)
			} else {
				since = insertIDsBefore(t, client, coll, 100, 100)
				insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
				receiveThrough(t, recv, 1)
			}
			if tc.paused {
				if err := r.Pause("orders", "test", "test"); err != nil {
					t.Fatal(err)
				}
			}
			var want string
			if tc.writtenPaused {
				since = insertIDsBefore(t, client, coll, 2, 10)
				cp, _, err := st.LoadCheckpoint(ctx, "orders")
				if err != nil || cp.ClusterTime.T == 0 {
					t.Fatalf("checkpoint %+v (%v): want one with a cluster time", cp, err)
				}
				want = fmt.Sprintf("checkpoint is before %s; delivering everything since the checkpoint (%s), every change since %s included",
					since.Format(time.RFC3339), time.Unix(int64(cp.ClusterTime.T), 0).UTC().Format(time.RFC3339), since.Format(time.RFC3339))
			} else {
				want = "redelivering every change since " + since.Format(time.RFC3339)
			}
			if tc.paused {
				want += note
			}
			msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{ID: "r1", Kind: store.RequestRedeliver, Since: since, By: "cli"})
			if err != nil {
				t.Fatal(err)
			}
			if msg != want {
				t.Errorf("redeliver = %q, want %q", msg, want)
			}
			if tc.paused {
				if _, err := r.Resume(ctx, "orders", runner.ResumeFrom{}); err != nil {
					t.Fatal(err)
				}
			}
			insert(t, coll, bson.D{{Key: "_id", Value: int32(20)}})
			got := receiveThrough(t, recv, 20)
			first := int32(1)
			if tc.writtenPaused {
				first = 2
			}
			if len(got) == 0 || got[0] != first {
				t.Errorf("after the redeliver, delivered %v, want from id %d on", got, first)
			}
		})
	}
}
