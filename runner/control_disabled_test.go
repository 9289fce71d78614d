package runner_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestRewriteOfADisabledTriggerRefusedBeforeRecording: no member runs a
// disabled trigger, so a skip, a redeliver or a resume from a position of
// it, once recorded, would never be applied: the caller would be told it
// "applies when changehook runs the trigger", and while pending it would
// refuse every pause, resume and redeliver of the trigger until someone
// enabled it. RequestControl refuses them before recording anything,
// saying to enable the trigger first, in a cluster as outside one; a pause
// is still recorded (it says what the trigger is to be once enabled).
func TestRewriteOfADisabledTriggerRefusedBeforeRecording(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		clustered bool
		req       store.ControlRequest
	}{
		{"skip, clustered", true, store.ControlRequest{Kind: store.RequestSkip}},
		{"redeliver, clustered", true, store.ControlRequest{Kind: store.RequestRedeliver, Since: time.Now().Add(-time.Minute).UTC()}},
		{"resume --from now, clustered", true, store.ControlRequest{Kind: store.RequestResume, From: "now"}},
		{"redeliver", false, store.ControlRequest{Kind: store.RequestRedeliver, Since: time.Now().Add(-time.Minute).UTC()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, "    enabled: false\n"), recv.srv.URL)
			opts := runner.Options{Controls: true}
			if tc.clustered {
				opts.StartStopped, opts.Clustered, opts.Standby = true, true, func(string) bool { return true }
			}
			r := startRunnerOn(t, cfg, client, st, opts)
			waitFor(t, "runner ready", r.Ready)
			waitFor(t, "disabled", func() bool { return statusOf(t, r, "orders").State == runner.StateDisabled })

			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			req := tc.req
			req.By = "api"
			msg, err := r.RequestControl(ctx, "orders", "", req)
			if !errors.Is(err, runner.ErrTriggerDisabled) {
				t.Fatalf("%s of the disabled trigger = %q, %v; want it refused, wrapping ErrTriggerDisabled", req.Kind, msg, err)
			}
			if c, found, err := st.LoadControl(ctx, "orders"); err != nil || found {
				t.Fatalf("control after the refused %s: %+v, %v, %v; want nothing recorded", req.Kind, c, found, err)
			}
			_, err = r.RequestControl(ctx, "orders", "maintenance", store.ControlRequest{Kind: store.RequestPause, By: "api"})
			if pe := new(runner.PendingError); err != nil && !errors.As(err, &pe) {
				t.Errorf("pause of the disabled trigger after the refused %s = %v; want it recorded", req.Kind, err)
			}
		})
	}
}
