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

// TestStartAtInTheFutureWaits: a trigger without a checkpoint whose
// start_at is after the server's current time is a planned start. Until
// then it shows waiting, with starts_at, instead of running with nothing
// happening; the runner stays ready (it does what it was told); nothing is
// read and no checkpoint is written. Once the server's clock reaches
// start_at it runs and delivers the changes from then on (not those
// before, as start_at says). And since no checkpoint was pinned at the
// future position, a reload that moves start_at to now applies at once.
func TestStartAtInTheFutureWaits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		ahead  time.Duration // start_at - the server's time
		reload bool          // then reload with start_at now
	}{
		{name: "reaches start_at", ahead: 3 * time.Second},
		{name: "reload moves start_at to now", ahead: time.Hour, reload: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			coll := client.Database("shop").Collection("orders")
			insert(t, coll, bson.D{{Key: "_id", Value: int32(0)}}) // the oplog starts before start_at
			at := serverTime(t, client).Truncate(time.Second).Add(tc.ahead)
			cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, "    start_at: "+at.Format(time.RFC3339)+"\n"), recv.srv.URL)
			r := startRunner(t, cfg, client, runner.Options{Controls: true})
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()

			waitFor(t, "trigger waiting", func() bool { return statusOf(t, r, "orders").State == runner.StateWaiting })
			s := statusOf(t, r, "orders")
			if !s.StartsAt.Equal(at) || s.StreamOpen {
				t.Errorf("waiting status: starts_at %v, stream open %v; want starts_at %v, stream closed", s.StartsAt, s.StreamOpen, at)
			}
			if !r.Ready() {
				t.Error("a trigger waiting for its start_at makes the runner unready")
			}
			insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}}) // before start_at: not delivered
			if _, found, err := st.LoadCheckpoint(ctx, "orders"); err != nil || found {
				t.Fatalf("checkpoint while waiting: found %v (%v); want none (a future position would stay pinned)", found, err)
			}

			if tc.reload {
				cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL)
				if _, err := r.Reload(ctx, cfg); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "trigger running", func() bool {
				s := statusOf(t, r, "orders")
				return s.State == runner.StateRunning && s.StreamOpen
			})
			if s := statusOf(t, r, "orders"); !s.StartsAt.IsZero() {
				t.Errorf("running trigger still shows starts_at %v", s.StartsAt)
			}
			insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
			if got := receiveThrough(t, recv, 2); len(got) != 1 {
				t.Errorf("delivered %v, want only 2 (1 was written before start_at, or before the reload's now)", got)
			}
		})
	}
}
