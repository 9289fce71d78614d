package dispatcher

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/changehook/changehook/triggers"
)

// TestPassedEventsAreNotKept: once the watermark passes an event, the
// dispatcher keeps no reference to its bytes, so the byte budgets bound
// what it holds. Tickets are allocated in chunks, and a chunk lives while
// any of its tickets does (the tracker's current chunk, at least): a
// passed ticket that kept its event kept up to a chunk of delivered
// events in memory, beyond max_inflight_bytes, with or without batching.
func TestPassedEventsAreNotKept(t *testing.T) {
	const events = 5
	for _, tc := range []struct {
		name  string
		batch *triggers.BatchPolicy
	}{
		{"unbatched", nil},
		{"batched", &triggers.BatchPolicy{MaxEvents: 2, MaxWait: time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, nil)
			d := newTestDispatcher(t, &triggers.Trigger{
				Webhook:  triggers.Webhook{URL: rc.srv.URL},
				Ordering: triggers.Strict, Batch: tc.batch,
			}, nil)
			var released atomic.Int32
			var kept []weak.Pointer[byte]
			for i := range events {
				ev := testEvent(t, i, "")
				kept = append(kept, weak.Make(&ev.Raw[0]), weak.Make(&ev.Token[0]))
				ev.Release = func() { released.Add(1) }
				if err := d.SubmitOwned(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for released.Load() < events {
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d events passed by the watermark", released.Load(), events)
				}
				time.Sleep(time.Millisecond)
			}
			runtime.GC()
			runtime.GC()
			for i, p := range kept {
				if p.Value() != nil {
					what := "event"
					if i%2 == 1 {
						what = "resume token"
					}
					t.Errorf("the %s of event %d is still referenced after the watermark passed it", what, i/2)
				}
			}
			runtime.KeepAlive(d)
		})
	}
}
