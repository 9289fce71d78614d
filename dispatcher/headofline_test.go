package dispatcher

import (
	"context"
	"net/http"
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
