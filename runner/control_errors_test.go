package runner_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestControlErrorsNameTheControlAndTriggerOnce: a control request that
// fails returns the applier's reason after "KIND NAME: ", said once: the
// applier's own text names neither the control nor the trigger again, and
// a partitioned trigger's summary names each failed partition once.
func TestControlErrorsNameTheControlAndTriggerOnce(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	// Checkpoints whose resume token has no position to compare with a
	// redeliver's time: the redeliver of those units fails (see
	// TestRedeliverRefusesACheckpointItCannotCompare).
	odd := bson.Raw(bsonDoc(t, bson.D{{Key: "other", Value: "form"}}))
	for _, key := range []string{"odd", "parts/p0of2", "parts/p1of2"} {
		if err := st.SaveCheckpoint(ctx, store.Checkpoint{Trigger: key, Token: odd}); err != nil {
			t.Fatal(err)
		}
	}
	_, oddErr := runner.TokenPosition(odd)
	if oddErr == nil {
		t.Fatal("TokenPosition accepts a token without _data")
	}
	since := insertIDsBefore(t, client, client.Database("shop").Collection("other"), 1, 1)
	cfg := parseTrigger(t, `
triggers:
  - name: one
    database: shop
    collection: one
    webhook: { url: "${HOOK_URL}" }
  - name: odd
    database: shop
    collection: odd
    webhook: { url: "${HOOK_URL}" }
  - name: parts
    database: shop
    collection: parts
    ordering: per_document
    partitions: 2
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{Controls: true, ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger one running", func() bool {
		st := statusOf(t, r, "one")
		return st.State == runner.StateRunning && st.StreamOpen
	})

	cannotTell := fmt.Sprintf("cannot tell whether the checkpoint is before %s, so it was left as it is: checkpoint: %v",
		since.UTC().Format(time.RFC3339), oddErr)
	for _, tc := range []struct {
		name    string
		trigger string
		req     store.ControlRequest
		want    string
		// prefix: the error starts with want (the rest is a time as Go
		// prints it).
		prefix bool
	}{
		{name: "skip refused", trigger: "one", req: store.ControlRequest{Kind: store.RequestSkip},
			want: "skip one: not stuck on an event (state running: it holds no undelivered event), " + notStuckText},
		{name: "skip of a partitioned trigger's name", trigger: "parts", req: store.ControlRequest{Kind: store.RequestSkip},
			want: "skip parts: it has 2 partitions, each holding its own events: name one of them (parts/p0of2 … parts/p1of2)"},
		{name: "redeliver failed", trigger: "odd", req: store.ControlRequest{Kind: store.RequestRedeliver, Since: since},
			want: "redeliver odd: " + cannotTell},
		{name: "redeliver failed on every partition", trigger: "parts", req: store.ControlRequest{Kind: store.RequestRedeliver, Since: since},
			want: "redeliver parts: failed on 2 of 2 partitions (parts/p0of2: " + cannotTell + "; parts/p1of2: " + cannotTell + "); per partition:\n" +
				"  parts/p0of2: failed: " + cannotTell + "\n" +
				"  parts/p1of2: failed: " + cannotTell},
		{name: "redeliver from the future", trigger: "one", req: store.ControlRequest{Kind: store.RequestRedeliver, Since: time.Now().Add(time.Hour).UTC().Truncate(time.Second)},
			want: "redeliver one: time in the future: " + time.Now().Add(time.Hour).UTC().Format("2006-01-02T15"), prefix: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.By = "test"
			msg, err := runner.RequestControl(ctx, st, tc.trigger, "", tc.req)
			if err == nil || tc.prefix && !strings.HasPrefix(err.Error(), tc.want) || !tc.prefix && err.Error() != tc.want {
				t.Fatalf("%s %s = %q, %v;\nwant the error %q", tc.req.Kind, tc.trigger, msg, err, tc.want)
			}
			for _, again := range []string{"skip event", "redeliver trigger", "resume trigger", tc.req.Kind + " " + tc.trigger + ": " + tc.req.Kind} {
				if strings.Contains(err.Error(), again) {
					t.Errorf("%s %s: the error %q says %q again", tc.req.Kind, tc.trigger, err, again)
				}
			}
		})
	}

	// Through the Runner (the admin API's way), a skip naming the
	// partitioned trigger is refused before it is stored: the redeliver
	// recorded last stays the trigger's request.
	before, _, err := st.LoadControl(ctx, "parts")
	if err != nil || before.Request == nil {
		t.Fatalf("control of parts: %+v, %v", before.Request, err)
	}
	_, err = r.RequestControl(ctx, "parts", "", store.ControlRequest{Kind: store.RequestSkip, By: "test"})
	const want = "skip parts: it has 2 partitions, each holding its own events: name one of them (parts/p0of2 … parts/p1of2)"
	if err == nil || err.Error() != want {
		t.Fatalf("Runner.RequestControl skip parts: %v, want %q", err, want)
	}
	if after, _, err := st.LoadControl(ctx, "parts"); err != nil || after.Request == nil || after.Request.ID != before.Request.ID {
		t.Fatalf("request after the refused skip = %+v, %v; want %s kept", after.Request, err, before.Request.ID)
	}
}
