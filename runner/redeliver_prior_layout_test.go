package runner_test

import (
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestRedeliverAfterAPartitionsChangeNeverSkipsForward: the trigger ran
// unpartitioned (its checkpoint "orders" after changes 0..5), then its
// configuration gained partitions without the checkpoints carried over,
// so its partitions have none of their own and would resume from that
// one. A redeliver from a time after it (changes 6..10 written in between)
// must hold them to it as to their own checkpoint: every partition starts
// from it, the result says so, and once resumed, changes
// 6..10 are delivered with those since the time, through the control
// request as through Runner.Redeliver. A redeliver from a time before it
// (after change 0) moves every partition back to that time, as with a
// checkpoint of its own: changes 1..13 are delivered.
func TestRedeliverAfterAPartitionsChangeNeverSkipsForward(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		via    string // "control" (a request) or "runner" (Runner.Redeliver)
		before bool   // since before the prior checkpoint, else after it
	}{
		{"since after it, via control request", "control", false},
		{"since after it, via Runner.Redeliver", "runner", false},
		{"since before it, via control request", "control", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, partitionedYAML)
			client, recv, st, ctx, cfg, coll := f.client, f.recv, f.st, f.ctx, f.cfg, f.coll

			early := insertIDsBefore(t, client, coll, 0, 0)
			t0 := insertIDsBefore(t, client, coll, 1, 5)
			prior, err := runner.PositionAt(ctx, client, cfg.Triggers[0].Partition(0), t0)
			if err != nil {
				t.Fatal(err)
			}
			prior.Trigger = "orders" // the unpartitioned trigger's checkpoint, after 0..5
			if err := st.SaveCheckpoint(ctx, prior); err != nil {
				t.Fatal(err)
			}
			// Changes 6..10 follow it; since is after them, or after 0.
			since, first := insertIDsBefore(t, client, coll, 6, 10), int32(6)
			if tc.before {
				since, first = early, 1
			}
			for id := int32(11); id <= 13; id++ {
				insert(t, coll, bson.D{{Key: "_id", Value: id}})
			}

			r := startRunner(t, cfg, client, runner.Options{Dev: true, Controls: true})
			waitFor(t, "trigger failed (no checkpoint of the new partitioning)", func() bool { return statusOf(t, r, "orders").State == runner.StateFailed })

			switch tc.via {
			case "control":
				msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestRedeliver, Since: since, By: "test"})
				if err != nil {
					t.Fatal(err)
				}
				want := "redelivering every change since " + since.Format(time.RFC3339)
				if !tc.before {
					want = "checkpoint of the previous partitioning (partitions changed without the checkpoints carried over) is before " + since.Format(time.RFC3339)
				}
				if !strings.HasPrefix(msg, want) {
					t.Errorf("redeliver --since %s = %q, want %q…", since.Format(time.RFC3339), msg, want)
				}
			case "runner":
				if err := r.Redeliver(ctx, "orders", since); err != nil {
					t.Fatal(err)
				}
			}
			// Running again (the redeliver gave every partition a
			// position) or still failed: a resume runs it either way.
			if _, err := r.Resume(ctx, "orders", runner.ResumeFrom{}); err != nil {
				t.Fatal(err)
			}
			seen := map[int32]bool{}
			deadline := time.After(waitTimeout)
			for len(missingFrom(seen, first, 13)) > 0 {
				select {
				case d := <-recv.got:
					seen[d.Lookup("documentKey", "_id").Int32()] = true
				case <-deadline:
					t.Fatalf("after redeliver --since %s and resume, changes %v were never delivered (nor dead-lettered): "+
						"the partitions were moved past the previous partitioning's checkpoint", since.Format(time.RFC3339), missingFrom(seen, first, 13))
				}
			}
		})
	}
}

// missingFrom returns the ids of from..to not in seen.
func missingFrom(seen map[int32]bool, from, to int32) []int32 {
	var out []int32
	for id := from; id <= to; id++ {
		if !seen[id] {
			out = append(out, id)
		}
	}
	return out
}
