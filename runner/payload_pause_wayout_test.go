package runner_test

import (
	"context"
	"strings"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// payloadPauseYAML is a trigger whose first payload error pauses it; %s is
// the payload's text expression.
const payloadPauseYAML = `
triggers:
  - name: orders
    database: shop
    collection: orders
    payload_errors: { max_consecutive: 1 }
    webhook:
      url: "${HOOK_URL}"
      payload: { id: "$fullDocument._id", text: %s }
`

// TestPayloadErrorPauseWayOutIsTrue: a trigger paused by its payload errors
// shows a way_out saying what gets it going (fix webhook.payload, reload,
// then `changehook resume NAME`), and following it works: the reload
// leaves the pause (the held event stays held), and the resume (a control
// request, as the CLI sends it) delivers the held event with the fixed
// payload, then the next one.
func TestPayloadErrorPauseWayOutIsTrue(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	broken := parseTrigger(t, strings.Replace(payloadPauseYAML, "%s", `{ $concat: ["n=", "$fullDocument.n"] }`, 1), recv.srv.URL)
	fixed := parseTrigger(t, strings.Replace(payloadPauseYAML, "%s", `{ $concat: ["n=", { $toString: "$fullDocument.n" }] }`, 1), recv.srv.URL)
	r := startRunner(t, broken, client, runner.Options{Controls: true})
	waitFor(t, "runner ready", r.Ready)
	coll := client.Database("shop").Collection("orders")
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()

	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(7)}})
	waitFor(t, "trigger paused by payload_errors", func() bool {
		s := statusOf(t, r, "orders")
		return s.State == runner.StatePaused && s.Paused != nil && s.Paused.By == runner.PauseByPayloadErrors
	})
	const wayOut = "fix webhook.payload in the configuration, reload (kill -HUP, or POST /api/reload), then run `changehook resume orders`"
	if s := statusOf(t, r, "orders"); !strings.HasPrefix(s.WayOut, wayOut) {
		t.Fatalf("way_out of the payload-error pause = %q, want %q…", s.WayOut, wayOut)
	}

	if _, err := r.Reload(ctx, fixed); err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, r, "orders"); s.State != runner.StatePaused || !strings.HasPrefix(s.WayOut, wayOut) {
		t.Fatalf("after the reload: state %s, way_out %q; want still paused (the held event waits for a resume) with the same way out", s.State, s.WayOut)
	}
	if msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, By: "cli"}); err != nil {
		t.Fatalf("resume = %q, %v", msg, err)
	}
	got := recv.next(t)
	if id, text := got.Lookup("id").Int32(), got.Lookup("text").StringValue(); id != 1 || text != "n=7" {
		t.Fatalf("after the resume delivered %v, want the held event 1 with the fixed payload (text n=7)", got)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}, {Key: "n", Value: int32(8)}})
	if got := recv.next(t); got.Lookup("id").Int32() != 2 {
		t.Fatalf("next delivery %v, want 2", got)
	}
	if s := statusOf(t, r, "orders"); s.State != runner.StateRunning || s.WayOut != "" {
		t.Errorf("after the resume: state %s, way_out %q; want running without a way out", s.State, s.WayOut)
	}
}
