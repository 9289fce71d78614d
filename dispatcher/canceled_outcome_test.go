package dispatcher

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestCanceledDeliveryRecordsNoOutcome: a delivery cut off by Close's grace
// (a pause, reload, shutdown or lease loss) is neither delivered nor given
// up on, so it records no outcome; when a second dispatcher (the resumed
// trigger) delivers the event, it is counted once, as delivered.
func TestCanceledDeliveryRecordsNoOutcome(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch *triggers.BatchPolicy
	}{
		{name: "one event per request"},
		{name: "batched", batch: &triggers.BatchPolicy{MaxEvents: 2, MaxWait: time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(nil)
			trig := func(url string) *triggers.Trigger {
				return &triggers.Trigger{Webhook: triggers.Webhook{URL: url}, Batch: tc.batch}
			}
			ev := testEvent(t, 1, "")

			entered := make(chan struct{}, 1)
			cut := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
				entered <- struct{}{}
				<-r.Context().Done()
			})
			first := newTestDispatcher(t, trig(cut.srv.URL), nil, WithMetrics(m))
			if err := first.Submit(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			<-entered
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // no grace: the delivery is cut off
			if err := first.Close(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Close = %v, want the grace context's error", err)
			}
			if got := m.Counts("orders").Deliveries; len(got) != 0 {
				t.Fatalf("deliveries after the cut-off = %v, want none", got)
			}

			ok := newReceiver(t, statuses(http.StatusNoContent))
			second := newTestDispatcher(t, trig(ok.srv.URL), nil, WithMetrics(m))
			if err := second.Submit(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
			closeWithin(t, second, 10*time.Second)

			c := m.Counts("orders")
			if want := map[string]uint64{OutcomeDelivered: 1}; !maps.Equal(c.Deliveries, want) {
				t.Errorf("deliveries = %v, want %v", c.Deliveries, want)
			}
			// The cut-off attempt has no result: only the delivery counts.
			if want := map[string]uint64{"ok": 1}; !maps.Equal(c.Attempts, want) {
				t.Errorf("attempts = %v, want %v", c.Attempts, want)
			}
		})
	}
}
