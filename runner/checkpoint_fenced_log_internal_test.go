package runner

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestCheckpointSaveFencedOutDoesNotSayDeliveriesContinue: a checkpoint
// save refused because this member's lease is gone comes with the
// member's self-fencing, which stops its deliveries: its warning and the
// way out say that the next holder continues from the last save, not that
// deliveries continue; any other failed save says they do.
func TestCheckpointSaveFencedOutDoesNotSayDeliveriesContinue(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		err     error
		wantLog string
		wantWay string
	}{
		{name: "lease lost", err: fmt.Errorf("save checkpoint of %q: %w", "orders", ErrFenced),
			wantLog: `level=WARN msg="cannot save checkpoint: this member no longer holds the trigger's lease; it stops reading and delivering, and the member that runs the trigger next continues from the last saved checkpoint, delivering again every event since then"`,
			wantWay: "checkpoint saves of orders fail since 2026-01-02T03:04:05Z (lease_lost; 1 failed try): this member no longer delivers; nothing is lost, " +
				"but the checkpoint stays at the last successful save, so the member that runs the unit next delivers again every event since then. This member lost the lease of orders"},
		{name: "other", err: errors.New("save checkpoint: disk full"),
			wantLog: `level=WARN msg="cannot save checkpoint; deliveries continue, a restart would deliver again every event since the last save; will retry"`,
			wantWay: "checkpoint saves of orders fail since 2026-01-02T03:04:05Z (other; 1 failed try): deliveries continue and nothing is lost, " +
				"but the checkpoint stays at the last successful save, so a restart delivers again every event since then. Make the state database take the write"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWatcher(&triggers.Trigger{Name: "orders"}, nil, nil, nil, WatcherOptions{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
			w.saveFailed(tc.err, since)
			if lines := strings.Split(strings.TrimSpace(buf.String()), "\n"); len(lines) != 1 || !strings.Contains(lines[0], tc.wantLog) {
				t.Errorf("log = %q, want one line with %q", buf.String(), tc.wantLog)
			}
			w.mu.Lock()
			f := w.status.CheckpointFailure
			w.mu.Unlock()
			if f == nil {
				t.Fatal("no checkpoint failure recorded")
			}
			if got := checkpointWayOut(*f, "orders"); !strings.HasPrefix(got, tc.wantWay) {
				t.Errorf("way out = %q\nwant it to start with %q", got, tc.wantWay)
			}
		})
	}
}
