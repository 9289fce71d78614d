package cli

import (
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestSkipOfPartitionedTriggerRefusedBeforeStoring: `skip NAME` naming a
// partitioned trigger (the stuck event is one partition's) is refused
// before anything is recorded, so a request still pending on the trigger
// (a redeliver no running changehook applied yet) is not replaced.
func TestSkipOfPartitionedTriggerRefusedBeforeStoring(t *testing.T) {
	_, st, cfg := devdbConfig(t, `
triggers:
  - name: parts
    database: shop
    collection: parts
    ordering: per_document
    partitions: 2
    webhook: { url: "http://127.0.0.1:1/hook" }
`)
	ctx := t.Context()
	pending, err := st.RequestControl(ctx, "parts", "", store.ControlRequest{Kind: store.RequestRedeliver, Since: time.Now().Add(-time.Hour).UTC(), By: "test"})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, nil, "", "skip", "-c", cfg, "parts")
	const want = "skip parts: it has 2 partitions, each holding its own events: name one of them (parts/p0of2 … parts/p1of2)"
	if code != ExitUsage || !strings.Contains(errOut, want) {
		t.Fatalf("skip of a partitioned trigger's name: code %d, stdout %q, stderr %q; want %d and %q", code, out, errOut, ExitUsage, want)
	}
	c, ok, err := st.LoadControl(ctx, "parts")
	if err != nil || !ok || c.Request == nil || c.Request.ID != pending || c.Request.Kind != store.RequestRedeliver {
		t.Fatalf("control after the refused skip = %+v, %v, %v; want the pending redeliver %s kept", c.Request, ok, err, pending)
	}
}

// TestRewriteOfADisabledTriggerRefusedBeforeStoring: `skip`, `redeliver`
// and `resume --from` of a trigger disabled in the configuration are
// refused (exit 1, saying to enable it first) before anything is
// recorded: no changehook runs a disabled trigger to apply them, and a
// pending one would refuse every other control of the trigger. `pause`
// is still recorded.
func TestRewriteOfADisabledTriggerRefusedBeforeStoring(t *testing.T) {
	_, st, cfg := devdbConfig(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    enabled: false
    webhook: { url: "http://127.0.0.1:1/hook" }
`)
	for _, args := range [][]string{
		{"skip"},
		{"redeliver", "--since", time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)},
		{"resume", "--from", "now"},
	} {
		t.Run(args[0], func(t *testing.T) {
			code, out, errOut := run(t, nil, "", append([]string{args[0], "-c", cfg, "orders"}, args[1:]...)...)
			want := args[0] + " orders: disabled (enabled: false), so no changehook runs it"
			if code != ExitFailure || !strings.Contains(errOut, want) || !strings.Contains(errOut, "enable it first") {
				t.Fatalf("%s of a disabled trigger: code %d, stdout %q, stderr %q; want %d and %q… enable it first", args[0], code, out, errOut, ExitFailure, want)
			}
			if c, ok, err := st.LoadControl(t.Context(), "orders"); err != nil || ok {
				t.Fatalf("control after the refused %s = %+v, %v, %v; want nothing recorded", args[0], c, ok, err)
			}
		})
	}
}

// TestControlNotRecordedFails: a control request the state database does
// not store within the command's wait (every update blocks longer, then
// fails) exits 1 saying it was not recorded, not "recorded … applies
// when changehook runs the trigger" with exit 0: nothing would apply it.
// A request recorded and not applied in time still says so and exits 0;
// when no changehook runs at all (no live cluster member, no recorded
// dev) it says so at once instead of waiting.
// Not parallel: it shortens controlWait.
func TestControlNotRecordedFails(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
	cfg := writeConfig(t, "\nmongodb: { uri: \""+srv.URI()+"\" }\n"+`
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "http://127.0.0.1:1/hook" }
`)
	st := store.New(client, triggers.DefaultStateDatabase)
	defer func(w time.Duration) { controlWait = w }(controlWait)
	controlWait = time.Second
	failPoint := func(mode any, data bson.D) {
		cmd := bson.D{{Key: "configureFailPoint", Value: "failCommand"}, {Key: "mode", Value: mode}}
		if data != nil {
			cmd = append(cmd, bson.E{Key: "data", Value: data})
		}
		if err := client.Database("admin").RunCommand(t.Context(), cmd).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		blocked  bool // every update blocks 2 s, then fails
		member   bool // a live cluster member is registered (which applies nothing here)
		code     int
		stdout   string
		stderr   string
		recorded bool
	}{
		{"not recorded", true, false, ExitFailure, "",
			"changehook pause: pause orders: not recorded, so nothing applies it: send it again once the state database answers " +
				"(if this write landed after all, a redeliver, skip or resume --from sent again is refused as already pending): ", false},
		{"not recorded, a member live", true, true, ExitFailure, "",
			"changehook pause: pause orders: not recorded, so nothing applies it: send it again once the state database answers " +
				"(if this write landed after all, a redeliver, skip or resume --from sent again is refused as already pending): ", false},
		{"recorded, a live member does not apply it", false, true, ExitOK,
			"orders: pause recorded; no running changehook applied it within 1s, so it applies when changehook runs the trigger.\n", "", true},
		{"recorded, no changehook runs", false, false, ExitOK,
			"orders: pause recorded; no changehook is running (no live cluster member, no recorded dev on this deployment), " +
				"so it applies when changehook runs the trigger.\n", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := st.DeleteControl(t.Context(), "orders"); err != nil {
				t.Fatal(err)
			}
			if err := st.RemoveMember(t.Context(), "m1"); err != nil {
				t.Fatal(err)
			}
			if tc.member {
				if err := st.Heartbeat(t.Context(), store.Member{ID: "m1", Triggers: map[string]string{"orders": "h"}}, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			if tc.blocked {
				failPoint("alwaysOn", bson.D{{Key: "failCommands", Value: bson.A{"update"}}, {Key: "blockConnection", Value: true},
					{Key: "blockTimeMS", Value: 2000}, {Key: "errorCode", Value: 2}})
			}
			start := time.Now()
			code, out, errOut := run(t, nil, "", "pause", "-c", cfg, "orders")
			took := time.Since(start)
			failPoint("off", nil)
			if waited := took >= controlWait; !tc.blocked && waited != tc.member {
				t.Errorf("pause took %v; want it to wait the %v for a running changehook: %v", took, controlWait, tc.member)
			}
			if code != tc.code || out != tc.stdout || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("pause: exit %d, stdout %q, stderr %q; want %d, %q and %q", code, out, errOut, tc.code, tc.stdout, tc.stderr)
			}
			if _, found, err := st.LoadControl(t.Context(), "orders"); err != nil || found != tc.recorded {
				t.Errorf("control of orders recorded = %v (%v), want %v", found, err, tc.recorded)
			}
		})
	}
}
