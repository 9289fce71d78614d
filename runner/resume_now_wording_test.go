package runner_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestResumeFromNowSaysWhatBecomesOfTheChanges: `resume --from now` on a
// paused trigger moves its checkpoint over the changes written during the
// pause. They are not delivered, and not dead-lettered either (unlike what
// `skip` does to the event it skips): the result (what the CLI and the API
// print) and the log say exactly that, with the range, and no dead letter
// is stored; the change written next is delivered.
func TestResumeFromNowSaysWhatBecomesOfTheChanges(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	var logs syncbuf.Buffer
	r := startRunner(t, parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL), client, runner.Options{Controls: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	waitFor(t, "ready", r.Ready)
	coll := client.Database("shop").Collection("orders")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	if id := recv.next(t).Lookup("documentKey", "_id").Int32(); id != 1 {
		t.Fatalf("delivered %d, want 1", id)
	}
	pauseByControl(t, st, r, "orders", "hold")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}}, bson.D{{Key: "_id", Value: int32(3)}})

	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, From: "now", By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	const says = ": the changes in between that were not delivered yet are left undelivered, and not dead-lettered"
	if !strings.HasPrefix(msg, "resumed from now: checkpoint moved from ") || !strings.HasSuffix(msg, says) {
		t.Errorf("resume --from now = %q; want \"resumed from now: checkpoint moved from <checkpoint> to <now>%s\"", msg, says)
	}
	if rng := strings.TrimSuffix(strings.TrimPrefix(msg, "resumed from now: checkpoint moved from "), says); len(strings.Split(rng, " to ")) != 2 {
		t.Errorf("resume --from now = %q: no range", msg)
	} else {
		for _, at := range strings.Split(rng, " to ") {
			if _, err := time.Parse(time.RFC3339, at); err != nil {
				t.Errorf("resume --from now = %q: %q is not a time", msg, at)
			}
		}
	}
	waitFor(t, "running", func() bool { return statusOf(t, r, "orders").State == runner.StateRunning })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(4)}})
	if id := recv.next(t).Lookup("documentKey", "_id").Int32(); id != 4 {
		t.Fatalf("delivered %d after the resume, want 4 (2 and 3 left undelivered)", id)
	}
	if n, err := st.CountDeadLetters(ctx, "orders"); err != nil || n != 0 {
		t.Errorf("dead letters = %d, %v; want none: the resume dead-letters nothing", n, err)
	}
	if line := lineOf(logs.String(), "trigger resumed past"); !strings.Contains(line,
		`msg="trigger resumed past its checkpoint: the changes in between that were not delivered yet are left undelivered, and not dead-lettered" trigger=orders`) {
		t.Errorf("the resume's log line is %q", line)
	}
}
