package runner_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestResumeFromNowAfterPartitionsChangeSkipsFromThePriorCheckpoint: after
// the partitions of a trigger changed without its checkpoints carried over
// (it fails to start, and `resume --from now` is its way out under dev),
// no checkpoint of the new partitioning exists; the range the resume
// passes over starts where the runner would have resumed from, the oldest
// checkpoint of the previous partitioning (or the single one from before
// partitioning), and so say the returned range, the result (what the CLI
// and the API print) and the log — not the zero time. With no checkpoint
// at all, no start is named: skipped_from is left out.
func TestResumeFromNowAfterPartitionsChangeSkipsFromThePriorCheckpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		prior []string // keys given checkpoints, the first the oldest
		via   string
	}{
		{"previous partitioning via Runner.Resume", []string{"orders/p1of3", "orders/p0of3"}, "runner"},
		{"previous partitioning via control request", []string{"orders/p1of3", "orders/p0of3"}, "control"},
		{"unpartitioned before via Runner.Resume", []string{"orders"}, "runner"},
		{"unpartitioned before via control request", []string{"orders"}, "control"},
		{"no checkpoint at all via Runner.Resume", nil, "runner"},
		{"no checkpoint at all via control request", nil, "control"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, partitionedYAML)
			client, st, ctx, cfg, coll := f.client, f.st, f.ctx, f.cfg, f.coll
			// Checkpoints a second apart, the oldest first.
			var oldest time.Time
			for i, key := range tc.prior {
				at := insertIDsBefore(t, client, coll, int32(i), int32(i))
				cp, err := runner.PositionAt(ctx, client, cfg.Triggers[0].Partition(0), at)
				if err != nil {
					t.Fatal(err)
				}
				cp.Trigger = key
				if err := st.SaveCheckpoint(ctx, cp); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					oldest = at
				}
			}
			if tc.prior == nil {
				// Held before it starts, so that no partition pins a
				// checkpoint of its own.
				if _, err := st.RequestControl(ctx, "orders", "hold", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
					t.Fatal(err)
				}
			}
			var logs syncbuf.Buffer
			r := startRunner(t, cfg, client, runner.Options{Dev: true, Controls: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			want := runner.StateFailed
			if tc.prior == nil {
				want = runner.StatePaused
			}
			waitFor(t, "trigger "+string(want), func() bool { return statusOf(t, r, "orders").State == want })

			var msg string
			switch tc.via {
			case "runner":
				sk, err := r.Resume(ctx, "orders", runner.ResumeFrom{Now: true})
				if err != nil {
					t.Fatalf("resume --from now: %v", err)
				}
				if !sk.From.Equal(oldest) {
					t.Errorf("skipped range from %v, want %v (the oldest checkpoint before the change of partitions; zero for none)", sk.From, oldest)
				}
			case "control":
				var err error
				msg, err = runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, From: "now", By: "test"})
				if err != nil {
					t.Fatalf("resume --from now: %v", err)
				}
				wantMsg := "checkpoint moved from " + oldest.Format(time.RFC3339) + " to "
				if oldest.IsZero() {
					wantMsg = "with no checkpoint before it to skip from"
				}
				if !strings.Contains(msg, wantMsg) || strings.Contains(msg, "the start") {
					t.Errorf("resume --from now = %q, want it to say %q", msg, wantMsg)
				}
			}
			line := lineOf(logs.String(), "trigger resumed past")
			if line == "" {
				t.Fatalf("no log line of the resume:\n%s", logs.String())
			}
			if strings.Contains(line, "0001-01-01") {
				t.Errorf("the resume's log line names the zero time: %s", line)
			}
			_, from, named := strings.Cut(line, "skipped_from=")
			switch {
			case oldest.IsZero() && named:
				t.Errorf("the resume's log line names a skipped_from, with no checkpoint before: %s", line)
			case !oldest.IsZero() && !strings.HasPrefix(from, oldest.Format("2006-01-02T15:04:05.000Z07:00")):
				t.Errorf("the resume's log line does not name skipped_from=%s: %s", oldest.Format(time.RFC3339), line)
			}
		})
	}
}
