package runner_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestResumeNeverMovesBackFromThePriorCheckpoint: after the partitions of
// a trigger changed without its checkpoints carried over, its units have
// no checkpoint of their own but would resume from the previous
// partitioning's, and a resume holds them to it as to their own. A time
// before it is refused as a rewind, in the words a unit with its own
// checkpoint gets (naming the checkpoint and `changehook redeliver`), by
// the command's check before it records anything (CheckResumeFrom), by
// Runner.Resume and by the process applying a request, and nothing is
// changed: no checkpoint written, no `skipped` record. A resume from now
// that finds it ahead of the server's clock moves back and says nothing
// was skipped, as with a checkpoint of the unit's own, rather than "with
// no checkpoint before it to skip from", and records or logs no range
// either.
func TestResumeNeverMovesBackFromThePriorCheckpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		now  bool   // resume from now, the prior checkpoint an hour ahead; else from a time before it
		via  string // "check" (CheckResumeFrom), "runner" (Runner.Resume), "control" (a request)
	}{
		{"time before it, the command's check", false, "check"},
		{"time before it, via Runner.Resume", false, "runner"},
		{"time before it, via control request", false, "control"},
		{"now with it ahead, via Runner.Resume", true, "runner"},
		{"now with it ahead, via control request", true, "control"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, partitionedYAML)
			client, st, ctx, cfg, coll := f.client, f.st, f.ctx, f.cfg, f.coll

			// The single checkpoint from before partitioning: at a second
			// after a first insert or, for a resume from now, an hour
			// ahead of the server's clock (a clock fault).
			var from runner.ResumeFrom
			var prior store.Checkpoint
			var priorAt time.Time
			if tc.now {
				from.Now = true
				now, err := runner.PositionAt(ctx, client, cfg.Triggers[0].Partition(0), time.Time{})
				if err != nil {
					t.Fatal(err)
				}
				data := now.Token.Lookup("_data").StringValue()
				if !strings.HasPrefix(data, "82") || len(data) < 10 {
					t.Fatalf("resume token %q does not open with a timestamp", data)
				}
				priorAt = time.Now().Add(time.Hour).Truncate(time.Second).UTC()
				prior = store.Checkpoint{UpdatedAt: time.Now(),
					Token:       bson.Raw(bsonDoc(t, bson.D{{Key: "_data", Value: data[:2] + fmt.Sprintf("%08X", priorAt.Unix()) + data[10:]}})),
					ClusterTime: bson.Timestamp{T: uint32(priorAt.Unix())}}
			} else {
				from.Time = insertIDsBefore(t, client, coll, 0, 0)
				priorAt = insertIDsBefore(t, client, coll, 1, 1)
				var err error
				if prior, err = runner.PositionAt(ctx, client, cfg.Triggers[0].Partition(0), priorAt); err != nil {
					t.Fatal(err)
				}
			}
			prior.Trigger = "orders"
			if err := st.SaveCheckpoint(ctx, prior); err != nil {
				t.Fatal(err)
			}

			hist := store.NewHistoryWriter(st, store.HistoryWriterOptions{})
			t.Cleanup(func() { _ = hist.Close(context.Background()) }) // after the runner stops
			var logs syncbuf.Buffer
			r := startRunner(t, cfg, client, runner.Options{Dev: true, Controls: true, History: hist, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			waitFor(t, "trigger failed", func() bool { return statusOf(t, r, "orders").State == runner.StateFailed })

			var msg string
			var err error
			switch tc.via {
			case "check":
				err = runner.CheckResumeFrom(ctx, client, st, cfg.Triggers[0], from)
			case "runner":
				var sk runner.Skipped
				sk, err = r.Resume(ctx, "orders", from)
				if tc.now && (!sk.Back || !sk.From.Equal(priorAt)) {
					t.Errorf("resume --from now = %+v, want Back from %v (the prior checkpoint, ahead of the server's clock)", sk, priorAt)
				}
			case "control":
				req := store.ControlRequest{Kind: store.RequestResume, From: from.String(), By: "test"}
				msg, err = runner.RequestControl(ctx, st, "orders", "", req)
			}

			if tc.now {
				if err != nil {
					t.Fatalf("resume --from now: %v", err)
				}
				if tc.via == "control" && (!strings.Contains(msg, "nothing skipped") || !strings.Contains(msg, priorAt.Format(time.RFC3339)) ||
					strings.Contains(msg, "no checkpoint before it")) {
					t.Errorf("resume --from now = %q, want it to say nothing was skipped, naming the prior checkpoint's time %s", msg, priorAt.Format(time.RFC3339))
				}
				if line := lineOf(logs.String(), "trigger resumed past"); line != "" {
					t.Errorf("the log says a range was passed over: %s", line)
				}
			} else {
				wantErr := fmt.Sprintf("%s is before the trigger's checkpoint (%s)", from, priorAt.Format(time.RFC3339))
				switch {
				case err == nil:
					t.Fatalf("resume --from %s before the prior checkpoint (%s) = %q, want it refused as a rewind", from, priorAt.Format(time.RFC3339), msg)
				case tc.via != "control" && !errors.Is(err, runner.ErrRewind):
					t.Errorf("resume --from %s: %v, want an error wrapping ErrRewind", from, err)
				case !strings.Contains(err.Error(), wantErr) || !strings.Contains(err.Error(), "changehook redeliver orders --since"):
					t.Errorf("resume --from %s: %v, want it to say %q and name `changehook redeliver`", from, err, wantErr)
				}
				for _, u := range cfg.Triggers[0].Units() {
					if _, found, err := st.LoadCheckpoint(ctx, u.Key()); err != nil || found {
						t.Errorf("checkpoint of %s after a refused resume: found %v, %v; want none written", u.Key(), found, err)
					}
				}
			}

			if err := hist.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			recs, _, err := st.ListAttempts(ctx, store.AttemptFilter{Trigger: "orders"})
			if err != nil {
				t.Fatal(err)
			}
			for _, rec := range recs {
				if rec.Kind == store.KindSkipped {
					t.Errorf("history records a skipped range %v … %v (%s): nothing was passed over", rec.SkippedFrom, rec.SkippedTo, rec.Reason)
				}
			}
		})
	}
}
