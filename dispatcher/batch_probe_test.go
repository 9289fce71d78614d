package dispatcher

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestBatchProbeRefusedAsTooLargeIsSplit: a batch whose failure opened the
// circuit is the probe; when the endpoint comes back and answers it 413
// (its body limit), the endpoint is up: the circuit closes and the batch
// is sent in halves, as a 413 outside the circuit is, instead of being
// probed again, as it is, forever — and instead of being dropped or taken
// as delivered when retry.drop_on or success_on lists 413.
func TestBatchProbeRefusedAsTooLargeIsSplit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		retry triggers.RetryPolicy // status rules
	}{
		{"default rules", triggers.RetryPolicy{}},
		{"4xx dropped", triggers.RetryPolicy{DropOn: triggers.StatusRules{"4xx"}}},
		{"413 dropped", triggers.RetryPolicy{DropOn: triggers.StatusRules{"413"}}},
		{"413 success", triggers.RetryPolicy{SuccessOn: triggers.StatusRules{"2xx", "413"}}},
	} {
		t.Run(tc.name, func(t *testing.T) { testBatchProbeRefusedAsTooLarge(t, tc.retry) })
	}
}

// testBatchProbeRefusedAsTooLarge is TestBatchProbeRefusedAsTooLargeIsSplit
// with the status rules of retry.
func testBatchProbeRefusedAsTooLarge(t *testing.T, retry triggers.RetryPolicy) {
	const events = 5
	evs := batchEvents(t, events, func(int) string { return "" })
	first, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var sizes []int    // events per request, in arrival order
	var accepted []int // seqs of the accepted requests, in order
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seqs := batchSeqs(t, body)
		if n == 1 {
			// Event 0, sent at once: the others are submitted meanwhile
			// and fill one batch.
			close(first)
			<-release
		}
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(seqs))
		switch {
		case n == 2:
			w.WriteHeader(http.StatusServiceUnavailable) // opens the circuit
		case len(seqs) > 1:
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		default:
			accepted = append(accepted, seqs...)
			w.WriteHeader(http.StatusNoContent)
		}
	})
	sink := &memSink{}
	retry.MaxAttempts, retry.InitialBackoff, retry.MaxBackoff = 1, time.Millisecond, time.Millisecond
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:  triggers.Webhook{URL: rc.srv.URL},
		Ordering: triggers.Strict, DeadLetter: true,
		Retry:   retry,
		Circuit: triggers.CircuitPolicy{Failures: 1, MaxProbeInterval: time.Millisecond},
		Batch:   &triggers.BatchPolicy{MaxEvents: events - 1, MaxWait: time.Hour},
	}, sink)
	for i, ev := range evs {
		if err := d.Submit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			<-first
		}
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if tok, ok := d.Watermark(); ok && bytes.Equal(tok, evs[events-1].Token) {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("the batch refused as too large by the probe was never split: %d requests, the first of %v events", len(sizes), sizes[:min(len(sizes), 6)])
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sizes) < 3 || sizes[0] != 1 || sizes[1] != events-1 || sizes[2] != events-1 {
		t.Errorf("requests of %v events, want 1, then the batch of %d failing and probed", sizes, events-1)
	}
	if !slices.Equal(accepted, []int{0, 1, 2, 3, 4}) {
		t.Errorf("accepted events %v, want each once, in order", accepted)
	}
	if dls := sink.All(); len(dls) != 0 {
		t.Errorf("%d dead letters, want none", len(dls))
	}
	if st, _ := d.Circuit(); st.State != CircuitClosed {
		t.Errorf("circuit %s, want closed", st.State)
	}
}
