package runner_test

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// TestTriggerPauseHoldsOverAnEarlierPartitionResume: `resume orders/p0of2`
// (here one that changed nothing), then `pause orders`, which pauses both
// partitions. The partition's document still holds its resume, which a
// process that had not applied it yet — one started later, or reading the
// documents again at a reload — would apply after the trigger's pause,
// lifting partition 0's: the pause of the whole trigger supersedes it, so
// that after a restart as after a reload both partitions stay paused.
func TestTriggerPauseHoldsOverAnEarlierPartitionResume(t *testing.T) {
	t.Parallel()
	for _, then := range []string{"restart", "reload"} {
		t.Run(then, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			cfg := parseTrigger(t, twoPartitionsYAML, recv.srv.URL)
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			r1, err := runner.New(cfg, client, st, runner.Options{Controls: true, CheckpointInterval: 20 * time.Millisecond,
				ShutdownGrace: 5 * time.Second, Version: "test", Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
			if err != nil {
				t.Fatal(err)
			}
			rctx, stop := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- r1.Run(rctx) }()
			defer func() {
				stop()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			waitFor(t, "runner ready", r1.Ready)
			if _, err := runner.RequestControl(ctx, st, "orders/p0of2", "", store.ControlRequest{Kind: store.RequestResume, By: "cli"}); err != nil {
				t.Fatal(err)
			}
			if _, err := runner.RequestControl(ctx, st, "orders", "endpoint maintenance", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
				t.Fatal(err)
			}
			bothPaused := func(r *runner.Runner) func() bool {
				return func() bool {
					s := statusOf(t, r, "orders")
					return s.Partitions[0].State == runner.StatePaused && s.Partitions[1].State == runner.StatePaused
				}
			}
			waitFor(t, "both paused", bothPaused(r1))

			r := r1
			switch then {
			case "restart":
				stop()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				done <- nil // for the deferred stop
				r = startRunnerOn(t, cfg, client, st, runner.Options{Controls: true})
				waitFor(t, "controls read", func() bool {
					s := statusOf(t, r, "orders")
					return s.Partitions[0].State != runner.StateStarting && s.Partitions[1].State != runner.StateStarting
				})
			case "reload":
				if _, err := r1.Reload(ctx, parseTrigger(t, twoPartitionsYAML, recv.srv.URL)); err != nil {
					t.Fatal(err)
				}
			}
			// A later request is applied after the documents the restart
			// or the reload made the runner read: once it is, they were.
			if _, err := runner.RequestControl(ctx, st, "orders/p1of2", "sync", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
				t.Fatal(err)
			}
			if s := statusOf(t, r, "orders"); s.Partitions[0].State != runner.StatePaused {
				t.Fatalf("after a %s, `pause orders` (recorded after `resume orders/p0of2`) no longer holds partition 0: it is %s", then, s.Partitions[0].State)
			}
		})
	}
}

// TestPartitionResumeUnderATriggerPauseIsRefused: while `pause orders`
// holds every partition, `resume orders/p0of2` is refused before anything
// is recorded, naming `resume orders`, rather than run partition 0 until
// the next reload or restart reads the trigger's pause again and pauses it
// behind the operator's back. Partition 0 stays paused, after a reload
// too, and `resume orders` resumes both.
func TestPartitionResumeUnderATriggerPauseIsRefused(t *testing.T) {
	t.Parallel()
	for _, from := range []string{"", "now"} {
		t.Run("from "+cmp.Or(from, "checkpoint"), func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			cfg := parseTrigger(t, twoPartitionsYAML, recv.srv.URL)
			r := startRunnerOn(t, cfg, client, st, runner.Options{Controls: true})
			waitFor(t, "runner ready", r.Ready)
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			if _, err := runner.RequestControl(ctx, st, "orders", "whole trigger", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
				t.Fatal(err)
			}
			paused := func(i int) func() bool {
				return func() bool { return statusOf(t, r, "orders").Partitions[i].State == runner.StatePaused }
			}
			waitFor(t, "partition 0 paused", paused(0))
			waitFor(t, "partition 1 paused", paused(1))

			msg, err := r.RequestControl(ctx, "orders/p0of2", "", store.ControlRequest{Kind: store.RequestResume, From: from, By: "api"})
			var tp *store.TriggerPausedError
			switch {
			case err == nil:
				t.Fatalf("resume orders/p0of2 under `pause orders` = %q; want it refused", msg)
			case !errors.As(err, &tp) || !strings.Contains(err.Error(), "run `changehook resume orders`") || !strings.Contains(err.Error(), `"whole trigger"`):
				t.Errorf("resume orders/p0of2 under `pause orders`: %v; want a TriggerPausedError naming the pause and `changehook resume orders`", err)
			}
			if c, found, err := st.LoadControl(ctx, "orders/p0of2"); err != nil || found {
				t.Errorf("control of orders/p0of2 after the refused resume: %+v, %v, %v; want none recorded", c, found, err)
			}

			if _, err := r.Reload(ctx, parseTrigger(t, twoPartitionsYAML, recv.srv.URL)); err != nil {
				t.Fatal(err)
			}
			if _, err := runner.RequestControl(ctx, st, "orders/p1of2", "sync", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
				t.Fatal(err)
			}
			if s := statusOf(t, r, "orders"); s.Partitions[0].State != runner.StatePaused {
				t.Fatalf("partition 0 is %s after the refused resume and a reload; want paused", s.Partitions[0].State)
			}
			if _, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestResume, By: "cli"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "partition 0 running", func() bool { return statusOf(t, r, "orders").Partitions[0].State == runner.StateRunning })
			waitFor(t, "partition 1 running", func() bool { return statusOf(t, r, "orders").Partitions[1].State == runner.StateRunning })
		})
	}
}
