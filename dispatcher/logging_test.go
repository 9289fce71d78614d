package dispatcher

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/triggers"
)

// TestDeliveryLogging: at info level a successful delivery logs nothing and
// a repeated failure is logged once; at debug level every delivery and
// every failed attempt is logged.
func TestDeliveryLogging(t *testing.T) {
	for _, tc := range []struct {
		level                slog.Level
		delivered, failedLog int
	}{
		{slog.LevelInfo, 0, 1},
		{slog.LevelDebug, 3, 3},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n <= 3 {
					w.WriteHeader(http.StatusServiceUnavailable) // the first event fails three times
					return
				}
				w.WriteHeader(http.StatusNoContent)
			})
			var buf syncbuf.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))
			d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}}, nil,
				WithClock(newFakeClock()), WithLogger(log))
			for i := range 3 {
				if err := d.Submit(context.Background(), testEvent(t, i, "k")); err != nil {
					t.Fatal(err)
				}
			}
			closeWithin(t, d, 10*time.Second)
			out := buf.String()
			if n := strings.Count(out, "event delivered"); n != tc.delivered {
				t.Errorf("%d \"event delivered\" lines, want %d:\n%s", n, tc.delivered, out)
			}
			if n := strings.Count(out, "delivery attempt failed"); n != tc.failedLog {
				t.Errorf("%d \"delivery attempt failed\" lines, want %d:\n%s", n, tc.failedLog, out)
			}
		})
	}
}
