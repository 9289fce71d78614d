package dispatcher

import (
	"context"
	"errors"
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

// TestCanceledDeliveryLogsCloseCause: a delivery Close cuts off is logged
// as a shutdown's when Close's context ends with no cause of its own, and
// with the cause when it has one (the runner's "skip by cli" when a skip
// restarts the trigger), which Close's error names too. Events alone and
// batches alike.
func TestCanceledDeliveryLogsCloseCause(t *testing.T) {
	for _, tc := range []struct {
		name           string
		batch          bool
		cause          error
		wantLog, wantE string
	}{
		{"shutdown", false, nil, `level=INFO msg="delivery canceled by shutdown" trigger=orders webhook_id=msg_`,
			"close dispatcher: grace period ended with 1 events unfinished: context deadline exceeded"},
		{"skip", false, errors.New("skip by cli"), `level=INFO msg="delivery canceled" trigger=orders cause="skip by cli" webhook_id=msg_`,
			"close dispatcher for skip by cli: grace period ended with 1 events unfinished: context deadline exceeded"},
		{"batch shutdown", true, nil, `level=INFO msg="batch delivery canceled by shutdown" trigger=orders webhook_id=`, "grace period ended"},
		{"batch skip", true, errors.New("skip by cli"), `level=INFO msg="batch delivery canceled" trigger=orders cause="skip by cli" webhook_id=`, "close dispatcher for skip by cli: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			arrived := make(chan struct{}, 1)
			rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
				select {
				case arrived <- struct{}{}:
				default:
				}
				<-r.Context().Done() // until Close cuts it off
			})
			var buf syncbuf.Buffer
			cfg := &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}}
			if tc.batch {
				cfg.Batch = &triggers.BatchPolicy{MaxEvents: 2, MaxWait: time.Millisecond}
			}
			d := newTestDispatcher(t, cfg, nil, WithLogger(slog.New(slog.NewTextHandler(&buf, nil))))
			if err := d.Submit(context.Background(), testEvent(t, 1, "k")); err != nil {
				t.Fatal(err)
			}
			<-arrived
			ctx, cancel := context.WithTimeoutCause(context.Background(), 10*time.Millisecond, tc.cause)
			defer cancel()
			err := d.Close(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.wantE) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Close = %v, want an error wrapping the deadline, with %q", err, tc.wantE)
			}
			if ue, ok := errors.AsType[*UnfinishedError](err); !ok || ue.Events != 1 {
				t.Errorf("Close = %#v, want an *UnfinishedError counting 1 event", err)
			}
			if out := buf.String(); !strings.Contains(out, tc.wantLog) {
				t.Errorf("log\n%s\nwant a line with %q", out, tc.wantLog)
			}
		})
	}
}
