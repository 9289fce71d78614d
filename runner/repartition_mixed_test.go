package runner_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// listFailingStore is the real checkpoint store whose listing of a
// trigger's checkpoints under every partitioning fails its first n calls,
// as a state database that drops a connection between two reads does.
type listFailingStore struct {
	*store.Store
	mu    sync.Mutex
	fails int
	calls int
}

func (s *listFailingStore) TriggerCheckpoints(ctx context.Context, trigger string) ([]store.Checkpoint, error) {
	s.mu.Lock()
	s.calls++
	fail := s.calls <= s.fails
	s.mu.Unlock()
	if fail {
		return nil, errors.New("connection reset by peer")
	}
	return s.Store.TriggerCheckpoints(ctx, trigger)
}

// TestNewPartitionDoesNotStartWhenTheListingFails: a partition without a
// checkpoint of its own, whose trigger has checkpoints under another
// partitioning (its partitions changed, or a repartition stopped half-way),
// must not start at start_at when the listing of those checkpoints fails
// once: that would skip every change since them, and the checkpoint it then
// writes would make the skip permanent. It retries the listing and refuses
// to start, naming the other partitioning.
func TestNewPartitionDoesNotStartWhenTheListingFails(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	ctx := t.Context()
	cfg := parseTrigger(t, partitionedYAML, recv.srv.URL)
	unit := cfg.Triggers[0].Partition(1)
	saveCheckpointAs(t, client, st, unit, "orders/p1of2") // as if it ran with partitions: 2
	cps := &listFailingStore{Store: st, fails: 2}
	w, stop := runWatcher(t, unit, client, cps)
	waitFor(t, "partition failed or running", func() bool {
		s := w.Status()
		return s.State == runner.StateFailed && !s.Retrying || s.StreamOpen
	})
	s := w.Status()
	if s.StreamOpen || !strings.Contains(s.LastError, "orders/p1of2") || !strings.Contains(s.WayOut, "checkpoints repartition --trigger orders --partitions 4") {
		t.Fatalf("after a failed listing: state %s, stream open %v, last error %q, way out %q; want failed naming orders/p1of2",
			s.State, s.StreamOpen, s.LastError, s.WayOut)
	}
	var te *runner.TriggerError
	if err := stop(); !errors.As(err, &te) {
		t.Errorf("Run = %v, want a *TriggerError", err)
	}
	if _, ok, _ := st.LoadCheckpoint(ctx, unit.Key()); ok {
		t.Errorf("%s wrote a checkpoint; it must not start", unit.Key())
	}
}

// TestRepartitionKilledHalfWayLosesNothing: `checkpoints repartition`
// from 4 partitions to 2 that dies half-way — after writing the new
// partitions' checkpoints, before removing the old ones (a fail point
// fails its first removal), or after writing only the first new one — leaves
// both partitionings' checkpoints side by side. Started with 2 partitions,
// a partition with a checkpoint of its own runs from it (the oldest old
// one, so nothing is skipped) and one without refuses to start, naming
// the old partitioning and the way out; repartitioning again converges to
// the new partitioning alone, and every change written while nothing ran
// is delivered.
func TestRepartitionKilledHalfWayLosesNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		onlyFirst bool // the run died after writing the first new checkpoint
	}{
		{"before removing the old checkpoints", false},
		{"after the first new checkpoint", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, admin := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
			client := devdbtest.Connect(t, srv.URI(), options.Client())
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			ctx := t.Context()
			coll := client.Database("shop").Collection("orders")

			deliverWith4ThenStop(t, client, st, recv, slog.New(slog.NewTextHandler(t.Output(), nil)))

			// The repartition dies at its first removal of an old
			// checkpoint: its updates after the 4 claims of the old
			// checkpoints and the 2 saves of the new ones fail. The new
			// checkpoints are written, the old ones all still there.
			const app, owner = "repartition", "repartition-test"
			repClient := devdbtest.Connect(t, srv.URI(), options.Client().SetAppName(app))
			configureFailPoint(t, admin, "failCommand", bson.D{{Key: "skip", Value: 6}},
				bson.D{{Key: "failCommands", Value: bson.A{"update"}}, {Key: "appName", Value: app}, {Key: "errorCode", Value: 2}})
			if _, err := runner.Repartition(ctx, store.New(repClient, stateDB), "orders", 2, runner.RepartitionOptions{Owner: owner, LeaseTTL: time.Second}); err == nil {
				t.Fatal("Repartition succeeded through a failing removal")
			}
			// Its releases of the leases failed too: released here.
			configureFailPoint(t, admin, "failCommand", "off", nil)
			leases, err := st.ListLeases(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range leases {
				if l.Owner == owner {
					if err := st.ReleaseLease(ctx, l.Key, store.Fence{Owner: owner, Epoch: l.Epoch}); err != nil {
						t.Fatal(err)
					}
				}
			}
			cps, err := st.TriggerCheckpoints(ctx, "orders")
			if err != nil || len(cps) != 6 {
				t.Fatalf("checkpoints after the failed repartition = %d, %v; want 4 old and 2 new", len(cps), err)
			}
			if tc.onlyFirst {
				if err := st.DeleteCheckpoint(ctx, "orders/p1of2"); err != nil {
					t.Fatal(err)
				}
			}

			cfg2 := parseTrigger(t, strings.Replace(partitionedYAML, "partitions: 4", "partitions: 2", 1), recv.srv.URL)
			got := map[int32]int{}
			var logs syncbuf.Buffer
			r2, err := runner.New(cfg2, client, st, runner.Options{CheckpointInterval: 20 * time.Millisecond, ShutdownGrace: 5 * time.Second,
				Logger: slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), &logs), nil))})
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			t.Cleanup(cancel)
			done := make(chan error, 1)
			go func() { done <- r2.Run(rctx) }()
			if tc.onlyFirst {
				waitFor(t, "partition 1 refuses", func() bool {
					st, err := r2.TriggerStatus("orders")
					return err == nil && st.Partitions[1].State == runner.StateFailed && !st.Partitions[1].StreamOpen
				})
				p1 := statusOf(t, r2, "orders").Partitions[1]
				if !strings.Contains(p1.LastError, "orders/p0of4") || !strings.Contains(p1.WayOut, "checkpoints repartition --trigger orders --partitions 2") {
					t.Errorf("partition 1: last error %q, way out %q; want the old partitioning and the way out named", p1.LastError, p1.WayOut)
				}
				// Partition 0 delivers its share of 40..79 meanwhile: its
				// checkpoint passes every change of partition 0, each
				// delivered before.
				waitFor(t, "partition 0 past its changes", func() bool {
					cp, ok, _ := st.LoadCheckpoint(ctx, "orders/p0of2")
					if !ok {
						return false
					}
					for _, id := range eventsAfter(t, coll, cp.Token) {
						if h := mql.HashedIndexKey(id) % 2; h == 0 {
							return false
						}
					}
					return true
				})
				for drained := false; !drained; {
					select {
					case b := <-recv.got:
						got[b.Lookup("documentKey", "_id").Int32()]++
					default:
						drained = true
					}
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				res, err := runner.Repartition(ctx, st, "orders", 2, runner.RepartitionOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Old) != 5 {
					t.Errorf("the second repartition found %d checkpoints, want 5 (4 old, 1 new)", len(res.Old))
				}
				r2 = startRunner(t, cfg2, client, runner.Options{})
			}
			for !every(got, 40, 80) {
				select {
				case b := <-recv.got:
					got[b.Lookup("documentKey", "_id").Int32()]++
				case <-time.After(waitTimeout):
					t.Fatalf("changes written while nothing ran not all delivered: got %v", got)
				}
			}
			// The mixed state is reported where it is not refused: the
			// partitions that resume say the old checkpoints remain.
			if line := lineOf(logs.String(), "checkpoints of another partitioning remain"); !strings.Contains(line, "orders/p0of4") ||
				!strings.Contains(line, "stop every changehook that has the trigger in its configuration (this one included), "+
					"run `changehook checkpoints repartition --trigger orders --partitions 2` again to remove them, then start them again") {
				t.Errorf("no warning naming the old checkpoints and the way out: %q", line)
			}
			if !tc.onlyFirst {
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if _, err := runner.Repartition(ctx, st, "orders", 2, runner.RepartitionOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			cps, err = st.TriggerCheckpoints(ctx, "orders")
			if err != nil || len(cps) != 2 || cps[0].Trigger != "orders/p0of2" || cps[1].Trigger != "orders/p1of2" {
				t.Errorf("checkpoints after repartitioning again = %+v, %v; want the 2 new ones only", cps, err)
			}
		})
	}
}

// every reports whether got has every id from lo up to hi (excluded).
func every(got map[int32]int, lo, hi int32) bool {
	for id := lo; id < hi; id++ {
		if got[id] == 0 {
			return false
		}
	}
	return true
}
