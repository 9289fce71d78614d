package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/triggers"
)

// TestSplitLogThrottled: the 413 split is logged at the first split of a
// trigger, then at most once a minute (on the dispatcher's clock) with the
// number of splits since the previous line; the counter counts every split.
func TestSplitLogThrottled(t *testing.T) {
	for _, tc := range []struct {
		name   string
		at     []time.Duration // when each split happens, from the start
		logged []int           // the splits field of each line logged
	}{
		{name: "one split", at: []time.Duration{0}, logged: []int{1}},
		{name: "a burst is one line", at: []time.Duration{0, 0, time.Second, 59 * time.Second}, logged: []int{1}},
		{name: "a line a minute with the splits since",
			at:     []time.Duration{0, 10 * time.Second, 30 * time.Second, 61 * time.Second, 62 * time.Second, 121 * time.Second, 10 * time.Minute},
			logged: []int{1, 3, 2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, statuses(http.StatusNoContent))
			var buf syncbuf.Buffer
			log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
			clock := newFakeClock()
			start := clock.Now()
			m := NewMetrics(nil)
			d := newTestDispatcher(t, &triggers.Trigger{
				Name: "orders", Webhook: triggers.Webhook{URL: rc.srv.URL},
				Batch: &triggers.BatchPolicy{MaxEvents: 2, MaxWait: time.Millisecond},
			}, nil, WithClock(clock), WithLogger(log), WithMetrics(m))

			for i, at := range tc.at {
				clock.mu.Lock()
				clock.now = start.Add(at)
				clock.mu.Unlock()
				evs := []Event{testEvent(t, 2*i+1, ""), testEvent(t, 2*i+2, "")}
				tr := NewTracker[job](triggers.None, len(evs))
				var tks []*Ticket[job]
				for _, ev := range evs {
					tk, err := tr.Track(context.Background(), ev.Token, ev.Key, job{ev: ev})
					if err != nil {
						t.Fatal(err)
					}
					tks = append(tks, tk)
				}
				body := fmt.Sprintf("[%s,%s]", mustBody(t, evs[0]), mustBody(t, evs[1]))
				if !d.splitPart(context.Background(), tks, 0, Message{ID: "batch_x", Body: []byte(body)}, nil) {
					t.Fatalf("split %d: events not done", i)
				}
			}

			var logged []int
			for line := range strings.Lines(buf.String()) {
				var rec struct {
					Msg    string `json:"msg"`
					Splits int    `json:"splits"`
				}
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				if !strings.Contains(rec.Msg, "refused a batch as too large (413)") {
					t.Fatalf("unexpected log line %q", line)
				}
				logged = append(logged, rec.Splits)
			}
			if !slices.Equal(logged, tc.logged) {
				t.Errorf("split lines with splits %v, want %v:\n%s", logged, tc.logged, buf.String())
			}
			if got := m.Counts("orders").BatchSplits; got != uint64(len(tc.at)) {
				t.Errorf("BatchSplits = %d, want %d", got, len(tc.at))
			}
		})
	}
}
