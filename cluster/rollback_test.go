package cluster

import (
	"testing"
	"time"

	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestRollbackToAnotherPartitioningNeverOverlaps: a member runs trigger
// orders with 4 partitions; two members started with an older
// configuration, where it has 2, join (a rollback). Their definition is
// now the majority's, so the trigger moves to them, to its 2 partitions —
// but never while a unit of the 4-partition layout still runs: the two
// layouts' units have different leases, so the leases alone do not keep
// them apart, and two members would deliver the trigger's events at once.
// It then stays there (no flapping).
func TestRollbackToAnotherPartitioningNeverOverlaps(t *testing.T) {
	st := newTestStore(t)
	newer := testConfig(t, "orders")
	newer.Triggers[0].Partitions = 4
	older := testConfig(t, "orders")
	older.Triggers[0].Partitions = 2
	sup := newSharedSup()
	ms := startMembers(t, st, sup)
	ctx := t.Context()
	waitRunning := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			sup.mu.Lock()
			ok := len(sup.running) == n
			for key := range sup.running {
				_, _, kn, _ := triggers.ParsePartitionKey(key)
				ok = ok && kn == n
			}
			sup.mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				sup.mu.Lock()
				defer sup.mu.Unlock()
				t.Fatalf("%s: running %v", what, sup.running)
			}
			time.Sleep(20 * time.Millisecond) // polling the model
		}
	}
	ms.start(t, "new", newer)
	waitRunning("the 4 partitions on the newer member", 4)
	ms.start(t, "old1", older)
	ms.start(t, "old2", older)
	waitRunning("the 2 partitions of the older definition, the majority's", 2)
	sup.mu.Lock()
	starts := sup.starts["old1"] + sup.starts["old2"]
	if len(sup.overlap) > 0 {
		t.Errorf("two partitionings of one trigger ran at once on different members: %v", sup.overlap)
	}
	sup.mu.Unlock()
	// No flapping: after three more renewals of the 2 partitions' leases,
	// still the same units under the same epochs, not started again.
	settled, err := st.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	renewedAfter := func(key string, at time.Time, epoch int64) bool {
		for _, l := range settled {
			if l.Key == key {
				return l.Epoch == epoch && l.ExpiresAt.After(at)
			}
		}
		return false
	}
	first := map[string]store.Lease{}
	for _, l := range settled {
		if l.Owner != "" && l.RemainingMS > 0 {
			first[l.Key] = l
		}
	}
	for range 3 {
		prev := map[string]time.Time{}
		for key, l := range first {
			prev[key] = l.ExpiresAt
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if settled, err = st.ListLeases(ctx); err != nil {
				t.Fatal(err)
			}
			renewed := len(first) == 2
			for key, l := range first {
				renewed = renewed && renewedAfter(key, prev[key], l.Epoch)
			}
			if renewed {
				for _, l := range settled {
					if _, ok := first[l.Key]; ok {
						first[l.Key] = l
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the 2 partitions' leases %v were not renewed under the same epochs: %+v", first, settled)
			}
			time.Sleep(20 * time.Millisecond) // polling the leases
		}
	}
	sup.mu.Lock()
	defer sup.mu.Unlock()
	if got := sup.starts["old1"] + sup.starts["old2"]; got != starts || sup.starts["new"] != 4 {
		t.Errorf("starts after settling: %v (older members %d before), want no more", sup.starts, starts)
	}
}
