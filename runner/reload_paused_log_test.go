package runner_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
)

// TestReloadOfAPausedTriggerSaysPaused: a reload that changes a paused
// trigger leaves it paused, and its log says so rather than "restarted".
func TestReloadOfAPausedTriggerSaysPaused(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	var logs syncbuf.Buffer
	one := strings.Replace(partitionedYAML, "    partitions: 4\n", "", 1)
	r := startRunner(t, parseTrigger(t, one, recv.srv.URL), client, runner.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	waitFor(t, "orders ready", r.Ready)
	if err := r.Pause("orders", "maintenance", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "orders paused", func() bool { return statusOf(t, r, "orders").State == runner.StatePaused })
	changed := strings.Replace(one, "concurrency: 4", "concurrency: 2", 1)
	if res, err := r.Reload(t.Context(), parseTrigger(t, changed, recv.srv.URL)); err != nil || len(res.Changed) != 1 {
		t.Fatalf("reload = %+v, %v; want orders changed", res, err)
	}
	if s := statusOf(t, r, "orders"); s.State != runner.StatePaused {
		t.Errorf("orders %s after the reload, want paused", s.State)
	}
	line := lineOf(logs.String(), "trigger changed by reload")
	if want := `msg="trigger changed by reload; paused: the new definition starts from its checkpoint when the trigger is resumed" trigger=orders`; !strings.Contains(line, want) {
		t.Errorf("the reload's log line is %q, want %q", line, want)
	}
}
