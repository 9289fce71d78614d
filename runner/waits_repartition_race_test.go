package runner_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
)

// TestWatchWaitsNeverFallDuringRepartition: changehook_watch_wait_seconds_total
// is a counter (it is read from TriggerStatus at every scrape), so no read of
// a trigger's waits may be smaller than an earlier one, not even while a
// reload changes the trigger's partitions. A repartitioning Reload moves
// the old partitions' totals into what the trigger counted before and drops
// their slots; a read that took the slots before the move and the totals
// after it counted the old partitions twice, and the next read fell back.
func TestWatchWaitsNeverFallDuringRepartition(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	yaml := func(partitions int) string {
		return fmt.Sprintf("\ntriggers:\n  - name: idle\n    database: shop\n    collection: a\n    ordering: per_document\n    partitions: %d\n    webhook: { url: \"${HOOK_URL}\" }\n", partitions)
	}
	r := startRunner(t, parseTrigger(t, yaml(2), recv.srv.URL), client, runner.Options{})
	waitFor(t, "ready", r.Ready)
	stream := func() time.Duration {
		st, err := r.TriggerStatus("idle")
		if err != nil || st.Waits == nil {
			return -1
		}
		return st.Waits.Stream
	}
	waitFor(t, "the partitions' stream waits counted", func() bool { return stream() > 300*time.Millisecond })

	var stop atomic.Bool
	var mu sync.Mutex
	var falls []string
	var wg sync.WaitGroup
	wg.Go(func() {
		last := time.Duration(0)
		for !stop.Load() {
			v := stream()
			if v < 0 {
				continue
			}
			if v < last {
				mu.Lock()
				falls = append(falls, fmt.Sprintf("%v after %v", v, last))
				mu.Unlock()
			}
			last = v
		}
	})
	for i := range 10 {
		if _, err := r.Reload(t.Context(), parseTrigger(t, yaml(2+(i+1)%2), recv.srv.URL)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // pacing: the new partitions run a while before the next reload
	}
	stop.Store(true)
	wg.Wait()
	if len(falls) > 0 {
		t.Errorf("the trigger's stream wait total (changehook_watch_wait_seconds_total{on=stream}) went down %d times across 10 repartitioning reloads, e.g. %s",
			len(falls), falls[0])
	}
}
