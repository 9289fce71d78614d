package dispatcher

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestBatchWaitsForTheRestOfARead: an event submitted with More (the rest
// of the same read from the stream follows at once) does not go alone
// when nothing is in flight and nothing is queued behind it yet: the batch
// waits for the next event, so that a read's events are one batch, cut the
// same way each time the read is made again (after a restart, say).
// Without More, the same event is sent at once (a trickle is not delayed).
func TestBatchWaitsForTheRestOfARead(t *testing.T) {
	for _, more := range []bool{true, false} {
		rc := newReceiver(t, nil)
		d := newTestDispatcher(t, &triggers.Trigger{
			Webhook:  triggers.Webhook{URL: rc.srv.URL},
			Ordering: triggers.None, Concurrency: 4,
			Batch: &triggers.BatchPolicy{MaxEvents: 10, MaxWait: time.Hour},
		}, nil)
		evs := batchEvents(t, 2, func(int) string { return "" })
		evs[0].More = more
		if err := d.Submit(context.Background(), evs[0]); err != nil {
			t.Fatal(err)
		}
		if !more {
			// Sent alone, at once, with the second not submitted.
			waitFor(t, func() bool { return len(rc.deliveries()) == 1 })
		} else {
			// The batcher has taken the first event: without More it
			// would seal it now, alone.
			waitFor(t, func() bool { return len(d.tracker.Ready()) == 0 })
		}
		if err := d.Submit(context.Background(), evs[1]); err != nil {
			t.Fatal(err)
		}
		closeWithin(t, d, 10*time.Second)
		var got [][]int
		for _, r := range rc.deliveries() {
			got = append(got, batchSeqs(t, r.body))
		}
		want := [][]int{{0, 1}}
		if !more {
			want = [][]int{{0}, {1}}
		}
		if !slices.EqualFunc(got, want, slices.Equal[[]int]) {
			t.Errorf("More %v: batches %v, want %v", more, got, want)
		}
	}
}

// TestBatchDoesNotWaitForAReadsNextEventThatWaitsForIt: when the next
// event of a read cannot be admitted until the batch waiting for it is
// delivered (here it does not fit in max_inflight_bytes beside the first
// one), the batch is sent after a short wait, not after max_wait (an hour
// here), and the next event after it.
func TestBatchDoesNotWaitForAReadsNextEventThatWaitsForIt(t *testing.T) {
	rc := newReceiver(t, nil)
	evs := batchEvents(t, 2, func(i int) string { return "" })
	evs[0].More = true
	size := int64(len(evs[0].Raw) + len(evs[0].Token))
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:  triggers.Webhook{URL: rc.srv.URL},
		Ordering: triggers.None, Concurrency: 4,
		// Room for one event at a time.
		MaxInflightBytes: size + size/2,
		Batch:            &triggers.BatchPolicy{MaxEvents: 10, MaxBytes: 1 << 10, MaxWait: time.Hour},
	}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ev := range evs {
		if err := d.Submit(ctx, ev); err != nil {
			t.Fatalf("submit: %v (the next event waited for a batch waiting for it)", err)
		}
	}
	closeWithin(t, d, 10*time.Second)
	var got [][]int
	for _, r := range rc.deliveries() {
		got = append(got, batchSeqs(t, r.body))
	}
	if want := [][]int{{0}, {1}}; !slices.EqualFunc(got, want, slices.Equal[[]int]) {
		t.Errorf("batches %v, want %v", got, want)
	}
}
