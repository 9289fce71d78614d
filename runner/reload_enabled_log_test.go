package runner_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
)

// TestReloadLogSaysWhatEnabledChanges: the log line of a reload that
// changes a trigger says what became of it: a trigger the reload disables
// is stopped with its checkpoint kept (not "restarted"), one it leaves
// disabled stays so, one it enables is started, and one that stays
// enabled is restarted.
func TestReloadLogSaysWhatEnabledChanges(t *testing.T) {
	t.Parallel()
	type def struct {
		enabled     bool
		concurrency int
		partitions  int
	}
	yaml := func(d def) string {
		return fmt.Sprintf("\ntriggers:\n  - name: idle\n    database: shop\n    collection: a\n    enabled: %v\n    ordering: per_document\n"+
			"    concurrency: %d\n    partitions: %d\n    webhook: { url: \"${HOOK_URL}\" }\n", d.enabled, d.concurrency, d.partitions)
	}
	for _, tc := range []struct {
		name       string
		from, to   def
		want       runner.State
		wantLine   string
		notInLines []string
	}{
		{name: "disabled", from: def{true, 1, 1}, to: def{false, 1, 1}, want: runner.StateDisabled,
			wantLine:   `level=INFO msg="trigger disabled by reload; stopped, its checkpoint is kept" trigger=idle`,
			notInLines: []string{"restarted", "started"}},
		{name: "disabled with another definition", from: def{true, 1, 1}, to: def{false, 2, 1}, want: runner.StateDisabled,
			wantLine:   `level=INFO msg="trigger disabled by reload; stopped, its checkpoint is kept" trigger=idle`,
			notInLines: []string{"restarted", "started"}},
		{name: "disabled with other partitions", from: def{true, 1, 2}, to: def{false, 1, 3}, want: runner.StateDisabled,
			wantLine:   `level=INFO msg="trigger disabled by reload; stopped, its checkpoint is kept" trigger=idle`,
			notInLines: []string{"restarted", "started"}},
		{name: "still disabled", from: def{false, 1, 1}, to: def{false, 2, 1}, want: runner.StateDisabled,
			wantLine:   `level=INFO msg="trigger changed by reload; still disabled: the new definition starts from its checkpoint when a reload enables it" trigger=idle`,
			notInLines: []string{"restarted", "started from"}},
		{name: "enabled", from: def{false, 1, 1}, to: def{true, 1, 1}, want: runner.StateRunning,
			wantLine:   `level=INFO msg="trigger enabled by reload; started from its checkpoint" trigger=idle`,
			notInLines: []string{"restarted"}},
		{name: "changed", from: def{true, 1, 1}, to: def{true, 2, 1}, want: runner.StateRunning,
			wantLine: `level=INFO msg="trigger changed by reload; restarted from its checkpoint" trigger=idle`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			var logs syncbuf.Buffer
			r := startRunner(t, parseTrigger(t, yaml(tc.from), recv.srv.URL), client, runner.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			waitFor(t, "ready", r.Ready)
			if res, err := r.Reload(t.Context(), parseTrigger(t, yaml(tc.to), recv.srv.URL)); err != nil || len(res.Changed) != 1 {
				t.Fatalf("reload = %+v, %v; want idle changed", res, err)
			}
			waitFor(t, "idle "+string(tc.want), func() bool { return statusOf(t, r, "idle").State == tc.want })
			var lines []string
			for line := range strings.Lines(logs.String()) {
				if strings.Contains(line, "by reload") {
					lines = append(lines, line)
				}
			}
			if len(lines) != 1 || !strings.Contains(lines[0], tc.wantLine) {
				t.Fatalf("the reload's log lines are %q, want one with %q", lines, tc.wantLine)
			}
			for _, not := range tc.notInLines {
				if strings.Contains(lines[0], not) {
					t.Errorf("the reload's log line says %q: %s", not, lines[0])
				}
			}
		})
	}
}
