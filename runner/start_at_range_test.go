package runner_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/triggers"
)

// TestStartAtOutsideTimestampsFails: a trigger whose start_at no MongoDB
// timestamp holds (Parse refuses it; a trigger built in code can carry
// it) fails to open its stream with an error naming the range, instead of
// opening it at a wrapped-around timestamp (1925 is 2061 in 32 bits) where
// it would silently wait for decades.
func TestStartAtOutsideTimestampsFails(t *testing.T) {
	t.Parallel()
	for _, at := range []time.Time{
		time.Date(1925, 1, 31, 12, 0, 0, 0, time.UTC),
		time.Unix(-1, 0),
	} {
		t.Run(at.Format(time.RFC3339), func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, "    start_at: 2025-01-31T12:00:00Z\n"), recv.srv.URL)
			cfg.Triggers[0].StartAt = triggers.StartAt{Time: at}
			r := startRunner(t, cfg, client, runner.Options{})
			waitFor(t, "the open's error", func() bool {
				return strings.Contains(statusOf(t, r, "orders").LastError, triggers.ErrOutsideTimestamps.Error())
			})
			if s := statusOf(t, r, "orders"); s.StreamOpen {
				t.Errorf("stream open at start_at %s; want it refused", at.Format(time.RFC3339))
			}
		})
	}
}
