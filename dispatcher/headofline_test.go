package dispatcher

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestHeadOfLine follows the oldest undelivered event through its
// attempts: each failure's status, reason and error, when the next attempt
// is due, whether the failure is permanent, and FailingSince from the first
// failure until a success clears it.
func TestHeadOfLine(t *testing.T) {
	tests := []struct {
		name       string
		statuses   []int // the responses before a 204
		wantReason string
		permanent  bool
	}{
		{"transient 503s", []int{503, 503, 503}, ReasonServerError, false},
		{"permanent 410 without dead letters", []int{410, 410}, ReasonClientError, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n <= len(tc.statuses) {
					w.WriteHeader(tc.statuses[n-1])
					return
				}
				w.WriteHeader(http.StatusNoContent)
			})
			clock := newFakeClock()
			var d *Dispatcher
			var mu sync.Mutex
			var seen []HeadOfLine
			var failing []time.Time
			var now []time.Time
			clock.onSleep = func(int) {
				h, ok := d.HeadOfLine()
				if !ok {
					t.Errorf("HeadOfLine: none while an event is being retried")
					return
				}
				mu.Lock()
				seen = append(seen, h)
				failing = append(failing, d.FailingSince())
				now = append(now, clock.Now())
				mu.Unlock()
			}
			d = newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}}, nil, WithClock(clock))
			if _, ok := d.HeadOfLine(); ok {
				t.Fatal("HeadOfLine of an empty dispatcher is set")
			}
			ev := testEvent(t, 1, "k")
			start := clock.Now()
			if err := d.Submit(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			closeWithin(t, d, 10*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != len(tc.statuses) {
				t.Fatalf("%d backoff waits observed, want %d", len(seen), len(tc.statuses))
			}
			for i, h := range seen {
				if h.WebhookID != WebhookID("orders", ev.Token) || !h.Submitted.Equal(start) ||
					h.Attempts != i+1 || h.LastStatus != tc.statuses[i] || h.LastReason != tc.wantReason ||
					!strings.Contains(h.LastError, "HTTP") || h.Permanent != tc.permanent {
					t.Errorf("wait %d: HeadOfLine = %+v", i+1, h)
				}
				// The fake Sleep advanced Now to the end of the wait.
				if !h.NextAttemptAt.Equal(now[i]) {
					t.Errorf("wait %d: NextAttemptAt = %v, want the end of the wait %v", i+1, h.NextAttemptAt, now[i])
				}
				if !failing[i].Equal(start) {
					t.Errorf("wait %d: FailingSince = %v, want the first failure at %v", i+1, failing[i], start)
				}
			}
			if _, ok := d.HeadOfLine(); ok {
				t.Error("HeadOfLine still set after the event was delivered")
			}
			if fs := d.FailingSince(); !fs.IsZero() {
				t.Errorf("FailingSince = %v after a success, want zero", fs)
			}
		})
	}
}

// TestHeadOfLineOfABatchSentInParts: the head of line of a batched trigger
// is its oldest sealed batch, with the batch's id, its first event's own
// id and its number of events. When the endpoint refuses the batch as too
// large and it is sent in parts, the head of line says which part the
// attempts describe: here, after the batch of events 1 to 3 was split and
// event 1 delivered, event 2 refused alone (the second of the batch),
// retried without dead letters.
func TestHeadOfLineOfABatchSentInParts(t *testing.T) {
	evs := batchEvents(t, 4, func(i int) string { return fmt.Sprintf("k%d", i) })
	arrived0, release0 := make(chan struct{}, 1), make(chan struct{})
	var mu sync.Mutex
	alone2 := 0
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seqs := batchSeqs(t, body)
		switch {
		case slices.Contains(seqs, 0):
			arrived0 <- struct{}{}
			select {
			case <-release0:
			case <-r.Context().Done():
				return
			}
		case slices.Contains(seqs, 2):
			if len(seqs) == 1 {
				mu.Lock()
				alone2++
				mu.Unlock()
			}
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	trig := &triggers.Trigger{
		Name:     "orders",
		Webhook:  triggers.Webhook{URL: rc.srv.URL},
		Ordering: triggers.Strict, Concurrency: 1,
		Retry: triggers.RetryPolicy{InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
		Batch: &triggers.BatchPolicy{MaxEvents: 3, MaxWait: time.Hour},
	}
	d := newTestDispatcher(t, trig, nil)
	for i, ev := range evs {
		if err := d.Submit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			<-arrived0
		}
	}
	// The batch of 1 to 3 is sealed (full) while event 0 is in flight.
	waitFor(t, func() bool {
		d.batcher.mu.Lock()
		defer d.batcher.mu.Unlock()
		return d.batcher.inflight == 2
	})
	close(release0)
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return alone2 >= 2
	})
	h, ok := d.HeadOfLine()
	want := HeadOfLine{WebhookID: BatchWebhookID("orders", evs[1].Token, evs[3].Token), EventID: WebhookID("orders", evs[1].Token),
		Events: 3, PartFrom: 1, PartEvents: 1, PartWebhookID: BatchWebhookID("orders", evs[2].Token, evs[2].Token),
		LastStatus: http.StatusRequestEntityTooLarge, LastReason: ReasonClientError, Permanent: true}
	if !ok || h.WebhookID != want.WebhookID || h.EventID != want.EventID || h.Events != want.Events ||
		h.PartFrom != want.PartFrom || h.PartEvents != want.PartEvents || h.PartWebhookID != want.PartWebhookID || h.LastStatus != want.LastStatus ||
		h.LastReason != want.LastReason || !h.Permanent || h.Attempts < 1 {
		t.Fatalf("HeadOfLine = %+v, %v; want %+v", h, ok, want)
	}
	// Event 2 is retried forever: cut it off.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_ = d.Close(ctx)
}

// TestHeadOfLineAfterAProbeCutOff: without dead letters, an event's
// rejection (400) opened the circuit, a first probe was rejected too, and
// the second is in flight when Close's grace period ends. The head of
// line the closed dispatcher still holds describes the attempts that
// ended — their number, the last one's status, reason, error and response
// body, the first one's time — not the probe Close cut off: a skip of the
// event dead-letters it with them.
func TestHeadOfLineAfterAProbeCutOff(t *testing.T) {
	probing := make(chan struct{})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n >= 3 {
			if n == 3 {
				close(probing)
			}
			<-r.Context().Done()
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"sku unknown"}`))
	})
	clock := newFakeClock()
	start := clock.Now()
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook: triggers.Webhook{URL: rc.srv.URL},
		Retry:   triggers.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
		Circuit: triggers.CircuitPolicy{Failures: 1, MaxProbeInterval: time.Millisecond},
	}, nil, WithClock(clock))
	if err := d.Submit(context.Background(), testEvent(t, 1, "k")); err != nil {
		t.Fatal(err)
	}
	<-probing
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.Close(ctx); err == nil {
		t.Fatal("Close = nil, want the grace period's end: the probe never ends on its own")
	}
	h, ok := d.HeadOfLine()
	if !ok || h.Attempts != 2 || h.LastStatus != http.StatusBadRequest || h.LastReason != ReasonClientError ||
		h.LastError != "client_error: HTTP 400 Bad Request" || h.LastResponse != `{"error":"sku unknown"}` || !h.FirstAttemptAt.Equal(start) {
		t.Errorf("HeadOfLine after Close = %+v, %v; want the 2 attempts that ended (400, its body), the first at %v", h, ok, start)
	}
}
