package runner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestResumeFromRefusesRewindsAndFutureTimes: resume --from only skips
// forward, to a time that has come. A time before the trigger's checkpoint
// would deliver again what was delivered while reporting (and recording) a
// skipped range; a time in the future would drop every change until then
// while the trigger shows running. Both are refused, through a control
// request (the CLI's and the API's way) as through Runner.Resume: the error
// says why and what to do (redeliver --since for a rewind; the server's time
// for a future time), the checkpoint and the pause stay, and the resume
// from the checkpoint that follows delivers the next change, not an old one.
func TestResumeFromRefusesRewindsAndFutureTimes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		future bool
		old    bool // also older than the oplog: refused for the checkpoint all the same
		via    string
	}{
		{name: "rewind via control request", via: "control"},
		{name: "rewind via Runner.Resume", via: "runner"},
		{name: "future via control request", future: true, via: "control"},
		{name: "future via Runner.Resume", future: true, via: "runner"},
		{name: "rewind via Runner.RequestControl", via: "request"},
		{name: "future via Runner.RequestControl", future: true, via: "request"},
		{name: "before the oplog via Runner.Resume", old: true, via: "runner"},
		{name: "before the oplog via Runner.RequestControl", old: true, via: "request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			r := startRunner(t, parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL), client, runner.Options{Controls: true})
			waitFor(t, "runner ready", r.Ready)
			coll := client.Database("shop").Collection("orders")
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()

			// from: a time before id 2, which is delivered and checkpointed.
			from := insertIDsBefore(t, client, coll, 1, 1)
			receiveThrough(t, recv, 1)
			insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
			ev := recv.next(t)
			if id := ev.Lookup("documentKey", "_id").Int32(); id != 2 {
				t.Fatalf("delivered %d, want 2", id)
			}
			delivered, err := runner.TokenPosition(ev.Lookup("_id").Document())
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Pause("orders", "test", "test"); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "trigger paused", func() bool { return statusOf(t, r, "orders").State == runner.StatePaused })
			// checkpointOK: the checkpoint is at or after id 2's event and
			// not in the future (a refused resume moved it neither back
			// nor forward).
			checkpointOK := func() (string, bool) {
				cp, _, err := st.LoadCheckpoint(ctx, "orders")
				if err != nil {
					t.Fatal(err)
				}
				pos, err := runner.TokenPosition(cp.Token)
				if err != nil {
					t.Fatal(err)
				}
				at, _ := runner.TokenTime(cp.Token)
				return at.Format(time.RFC3339), pos >= delivered && !at.After(serverTime(t, client))
			}
			waitFor(t, "id 2 checkpointed", func() bool { _, ok := checkpointOK(); return ok })
			want := []string{"before the trigger's checkpoint", "changehook redeliver orders --since " + from.Format(time.RFC3339)}
			wantErr := runner.ErrRewind
			if tc.old {
				// Older than the oplog too: refused for the checkpoint, whose
				// way out holds, not sent to the oplog's earliest time, which
				// is before the checkpoint as well.
				from = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
				want = []string{"before the trigger's checkpoint", "changehook redeliver orders --since 2020-01-01T00:00:00Z"}
			}
			if tc.future {
				from = serverTime(t, client).Add(time.Hour).Truncate(time.Second)
				want = []string{from.Format(time.RFC3339) + " is after the server's current time"}
				wantErr = runner.ErrFutureTime
			}

			var got error
			switch tc.via {
			case "control":
				var msg string
				msg, got = runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, From: from.Format(time.RFC3339), By: "test"})
				if got == nil {
					t.Fatalf("resume --from %s = %q, want it refused", from.Format(time.RFC3339), msg)
				}
			case "request": // the admin API's way: refused before it is stored
				var msg string
				msg, got = r.RequestControl(ctx, "orders", "", store.ControlRequest{Kind: store.RequestResume, From: from.Format(time.RFC3339), By: "api"})
				if got == nil {
					t.Fatalf("RequestControl resume --from %s = %q, want it refused", from.Format(time.RFC3339), msg)
				}
				if !errors.Is(got, wantErr) {
					t.Errorf("RequestControl error %v, want one wrapping %v", got, wantErr)
				}
			case "runner":
				var sk runner.Skipped
				sk, got = r.Resume(ctx, "orders", runner.ResumeFrom{Time: from})
				if got == nil {
					t.Fatalf("Resume from %s = skipped %+v, want it refused", from.Format(time.RFC3339), sk)
				}
				if !errors.Is(got, wantErr) {
					t.Errorf("Resume error %v, want one wrapping %v", got, wantErr)
				}
			}
			for _, w := range want {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("resume --from %s: error %q does not say %q", from.Format(time.RFC3339), got, w)
				}
			}
			if tc.future && !strings.Contains(got.Error(), time.Now().UTC().Format("2006-01-02T")) {
				t.Errorf("error %q does not name the server's current time", got)
			}
			if at, ok := checkpointOK(); !ok {
				t.Errorf("the refused resume moved the checkpoint (to %s)", at)
			}
			if s := statusOf(t, r, "orders"); tc.via != "control" && s.State != runner.StatePaused {
				// A resume request lifts the pause once recorded (the
				// trigger then continues from its checkpoint); the CLI
				// refuses such a time before recording anything.
				t.Errorf("after the refused resume the trigger is %s, want still paused", s.State)
			}

			if _, err := r.Resume(ctx, "orders", runner.ResumeFrom{}); err != nil {
				t.Fatal(err)
			}
			insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
			if got := receiveThrough(t, recv, 3); len(got) != 1 {
				t.Errorf("after the refused resume and a resume from the checkpoint, delivered %v, want only 3", got)
			}
		})
	}
}
