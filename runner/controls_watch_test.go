package runner_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// Dropping the controls collection ends its change stream: the log says
// so (not error=<nil>), and the controls are watched again.
func TestControlsDroppedLogsWhyWatchEnded(t *testing.T) {
	client := startDB(t, devdb.Options{})
	st := store.New(client, stateDB)
	var logs syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r := startRunnerWithStore(t, unreadOrdersYAML, "http://127.0.0.1:1", client, st, runner.Options{Controls: true, Logger: logger})
	waitFor(t, "ready", r.Ready)
	pause := func(reason string) {
		t.Helper()
		if _, err := st.RequestControl(t.Context(), "orders", reason, store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "paused: "+reason, func() bool {
			p := statusOf(t, r, "orders").Paused
			return p != nil && p.Reason == reason
		})
	}
	pause("read from the stream") // the controls' change stream is open
	if err := client.Database(stateDB).Collection("controls").Drop(context.Background()); err != nil {
		t.Fatal(err)
	}
	var line string
	waitFor(t, "the watch's end logged", func() bool {
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, "cannot watch the runtime controls") {
				line = l
				return true
			}
		}
		return false
	})
	if strings.Contains(line, "error=<nil>") || !strings.Contains(line, "controls collection was dropped or renamed") {
		t.Errorf("log line %q does not say that the controls collection was dropped", line)
	}
	pause("read from the reopened stream")
}
