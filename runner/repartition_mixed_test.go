package runner_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
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
	cp, err := runner.PositionAt(ctx, client, unit, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cp.Trigger = "orders/p1of2" // as if it ran with partitions: 2
	if err := st.SaveCheckpoint(ctx, cp); err != nil {
		t.Fatal(err)
	}
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
