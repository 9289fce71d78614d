package runner_test

import (
	"fmt"
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

// TestResumeFromNowBeforeAFutureCheckpoint: a checkpoint ahead of the
// server's clock (a clock fault stamped it an hour ahead) met by `resume
// --from now` moves the trigger back to now, which skips nothing: the
// result says so instead of printing a backwards range ("skipped the
// changes from <an hour ahead> to <now>"), Runner.Resume returns Back from
// the checkpoint's time and logs no range passed over, and the change
// written next is delivered.
func TestResumeFromNowBeforeAFutureCheckpoint(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"control request", "Runner.Resume"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			resumeFromNowBeforeAFutureCheckpoint(t, via)
		})
	}
}

// resumeFromNowBeforeAFutureCheckpoint is one case of
// TestResumeFromNowBeforeAFutureCheckpoint: the resume made via a control
// request or Runner.Resume.
func resumeFromNowBeforeAFutureCheckpoint(t *testing.T, via string) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	var logs syncbuf.Buffer
	r := startRunner(t, cfg, client, runner.Options{Controls: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	waitFor(t, "ready", r.Ready)
	ctx := t.Context()
	pauseByControl(t, st, r, "orders", "hold")

	// The checkpoint an hour ahead: its resume token and cluster time.
	now, err := runner.PositionAt(ctx, client, cfg.Triggers[0], time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	data := now.Token.Lookup("_data").StringValue()
	ahead := time.Now().Add(time.Hour).Truncate(time.Second).UTC()
	if !strings.HasPrefix(data, "82") || len(data) < 10 {
		t.Fatalf("resume token %q does not open with a timestamp", data)
	}
	future := store.Checkpoint{Trigger: "orders", UpdatedAt: time.Now(),
		Token:       bson.Raw(bsonDoc(t, bson.D{{Key: "_data", Value: data[:2] + fmt.Sprintf("%08X", ahead.Unix()) + data[10:]}})),
		ClusterTime: bson.Timestamp{T: uint32(ahead.Unix())}}
	if err := st.SaveCheckpoint(ctx, future); err != nil {
		t.Fatal(err)
	}
	if at, ok := runner.TokenTime(future.Token); !ok || !at.Equal(ahead) {
		t.Fatalf("future token's time = %v, %v; want %v", at, ok, ahead)
	}

	switch via {
	case "control request":
		msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, From: "now", By: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(msg, "checkpoint moved from") || !strings.Contains(msg, "nothing skipped") || !strings.Contains(msg, ahead.Format(time.RFC3339)) {
			t.Errorf("resume --from now before a checkpoint an hour ahead = %q; want it to say nothing was skipped, naming the checkpoint's time", msg)
		}
	case "Runner.Resume":
		sk, err := r.Resume(ctx, "orders", runner.ResumeFrom{Now: true})
		if err != nil {
			t.Fatal(err)
		}
		if !sk.Back || !sk.From.Equal(ahead) || sk.To.IsZero() || !sk.To.Before(ahead) {
			t.Errorf("resume --from now before a checkpoint an hour ahead = %+v; want Back from %v to now", sk, ahead)
		}
		// The pause recorded in the state database is lifted by a
		// request only; this process's resume moved the checkpoint.
		if _, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, By: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	if line := lineOf(logs.String(), "trigger resumed past"); line != "" {
		t.Errorf("the log says a range was passed over: %s", line)
	}
	waitFor(t, "running", func() bool {
		s := statusOf(t, r, "orders")
		return s.State == runner.StateRunning && s.StreamOpen
	})
	insert(t, client.Database("shop").Collection("orders"), bson.D{{Key: "_id", Value: int32(7)}})
	if id := recv.next(t).Lookup("documentKey", "_id").Int32(); id != 7 {
		t.Fatalf("delivered %d, want 7", id)
	}
}
