package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/runner"
)

// TestResumeFromAndResetToRefuseRewindsAndFutureTimes: `resume NAME --from
// T` with T before the trigger's checkpoint (which would deliver again what
// was delivered, reported as a skip) or in the future (which would drop
// every change until then), and `checkpoints reset --to` a future time,
// are refused before anything is recorded or written: the error says why
// (the server's current time for a future one; `changehook redeliver NAME
// --since T` for a rewind), no control request is stored (a stored resume
// lifts the pause) and the checkpoint stays.
func TestResumeFromAndResetToRefuseRewindsAndFutureTimes(t *testing.T) {
	client, st, cfg := devdbConfig(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "http://127.0.0.1:1/hook" }
`)
	ctx := t.Context()
	coll := client.Database("shop").Collection("orders")
	// before: a time still in the oplog (after id 0) and before id 1.
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	first, err := runner.ServerTime(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	before := first.Truncate(time.Second).Add(time.Second)
	var now time.Time
	for deadline := time.Now().Add(10 * time.Second); now.Before(before); {
		if time.Now().After(deadline) {
			t.Fatalf("the server's clock did not reach %s", before)
		}
		if now, err = runner.ServerTime(ctx, client); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	// The checkpoint: after the insert, so after before.
	if code, out, errOut := run(t, nil, "", "checkpoints", "reset", "-c", cfg, "--trigger", "orders"); code != ExitOK {
		t.Fatalf("checkpoints reset = %d\n%s%s", code, out, errOut)
	}
	cp, _, err := st.LoadCheckpoint(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	future := now.Add(time.Hour).Truncate(time.Second).Format(time.RFC3339)
	futureSays := future + " is after the server's current time, " + now.Format("2006-01-02T")
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{name: "resume before the checkpoint", args: []string{"resume", "-c", cfg, "orders", "--from", before.Format(time.RFC3339)},
			want: []string{"resume orders: refused, resume never moves a checkpoint back: " + before.Format(time.RFC3339) + " is before the trigger's checkpoint",
				"`changehook redeliver orders --since " + before.Format(time.RFC3339) + "`"}},
		{name: "resume from the future", args: []string{"resume", "-c", cfg, "orders", "--from", future},
			want: []string{"resume orders: time in the future: " + futureSays}},
		{name: "reset to the future", args: []string{"checkpoints", "reset", "-c", cfg, "--trigger", "orders", "--to", future},
			want: []string{"checkpoints reset: time in the future: " + futureSays}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			done := make(chan struct{})
			var code int
			var out, errOut string
			go func() {
				defer close(done)
				code, out, errOut = run(t, nil, "", tc.args...)
			}()
			select {
			case <-done:
			case <-wctx.Done():
				t.Fatalf("%v did not return: it was recorded and waits for a running changehook", tc.args)
			}
			if code != ExitFailure {
				t.Errorf("%v = %d, want %d (refused)\n%s%s", tc.args, code, ExitFailure, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("%v: stderr %q does not say %q", tc.args, errOut, w)
				}
			}
			if testing.Verbose() {
				t.Log(errOut)
			}
			if c, found, err := st.LoadControl(ctx, "orders"); err != nil || found {
				t.Errorf("control after the refusal = %+v, %v, %v; want none recorded", c.Request, found, err)
			}
			if got, _, err := st.LoadCheckpoint(ctx, "orders"); err != nil || !bytes.Equal(got.Token, cp.Token) {
				t.Errorf("checkpoint after the refusal = %v (%v), want it unchanged", got.Token, err)
			}
		})
	}
}
