package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// controlWait is how long pause, resume, skip and redeliver wait for the
// running changehook to apply the request (skip and redeliver first stop the
// trigger, which may take the shutdown grace period). A variable only so
// that tests can shorten it.
var controlWait = 30 * time.Second

func pauseCommand(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "pause", "pause [-c FILE] NAME [--reason TEXT]",
		"changehook pause low_stock --reason 'endpoint maintenance'")
	path := configFlag(fs)
	reason := fs.String("reason", "", "why (shown in the status)")
	return controlCommand(ctx, fs, path, args, env, func(string) (store.ControlRequest, string, error) {
		return store.ControlRequest{Kind: store.RequestPause}, *reason, nil
	})
}

func resumeCommand(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "resume", "resume [-c FILE] NAME [--from now|RFC3339-TIME]",
		"changehook resume low_stock                # deliver everything held by the pause",
		"changehook resume low_stock --from now     # leave what was written meanwhile undelivered (not dead-lettered)",
		"changehook resume low_stock --from 2025-01-31T12:00:00Z")
	path := configFlag(fs)
	from := fs.String("from", "", "where to continue: the checkpoint (default), now, or an RFC 3339 time after the checkpoint and not in the future")
	return controlCommand(ctx, fs, path, args, env, func(string) (store.ControlRequest, string, error) {
		if _, err := runner.ParseResumeFrom(*from); err != nil {
			return store.ControlRequest{}, "", errors.New("--from must be now or an RFC 3339 time such as 2025-01-31T12:00:00Z")
		}
		return store.ControlRequest{Kind: store.RequestResume, From: *from}, "", nil
	})
}

func skipCommand(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "skip", "skip [-c FILE] NAME [--webhook-id ID]",
		"changehook skip orders   # dead-letter the event a strict or dead_letter: false trigger is stuck on",
		"changehook skip orders --webhook-id msg_2f6yq3x4kq7m3v5bq6w4zq2x7a   # only if it is stuck on that event (its head_of_line.webhook_id)")
	path := configFlag(fs)
	webhookID := fs.String("webhook-id", "", "skip only if the trigger is stuck on this event (or batch): its head_of_line webhook_id in the status")
	return controlCommand(ctx, fs, path, args, env, func(string) (store.ControlRequest, string, error) {
		return store.ControlRequest{Kind: store.RequestSkip, WebhookID: *webhookID}, "", nil
	})
}

func redeliverCommand(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "redeliver", "redeliver [-c FILE] NAME --since RFC3339-TIME",
		"changehook redeliver orders --since 2025-01-31T12:00:00Z")
	path := configFlag(fs)
	since := fs.String("since", "", "redeliver every change at or after this RFC 3339 time (required)")
	return controlCommand(ctx, fs, path, args, env, func(string) (store.ControlRequest, string, error) {
		if *since == "" {
			return store.ControlRequest{}, "", errors.New("--since is required")
		}
		at, err := time.Parse(time.RFC3339, *since)
		if err != nil {
			return store.ControlRequest{}, "", fmt.Errorf("--since must be an RFC 3339 time such as 2025-01-31T12:00:00Z, not %q", *since)
		}
		return store.ControlRequest{Kind: store.RequestRedeliver, Since: at}, "", nil
	})
}

// controlCommand records the request built by build for the trigger named
// by the one positional argument and waits for a running changehook to
// apply it.
func controlCommand(ctx context.Context, flagSet *flag.FlagSet, path *string, args []string, env Env, build func(name string) (store.ControlRequest, string, error)) int {
	cmd := strings.TrimPrefix(flagSet.Name(), "changehook ")
	pos, code, done := flagsThenArgs(flagSet, args, env)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(env, flagSet, "want exactly one trigger name")
	}
	req, reason, err := build(pos[0])
	if err != nil {
		return usageError(env, flagSet, "%v", err)
	}
	sc, err := openState(ctx, flagSet, *path, env)
	if err != nil {
		return fail(env, cmd, err)
	}
	defer sc.close(ctx)
	t, err := findUnit(sc.cfg, pos[0])
	if err != nil {
		return usageError(env, flagSet, "%v", err)
	}
	if err := runner.CheckEnabled(t, req); err != nil {
		// Refused before it is recorded: no changehook runs a disabled
		// trigger to apply it, and pending it would refuse the others.
		return fail(env, cmd, fmt.Errorf("%s %s: %w", req.Kind, t.Key(), err))
	}
	if req.Kind == store.RequestSkip {
		if err := runner.CheckSkipTarget(t); err != nil {
			return usageError(env, flagSet, "%s %s: %v", req.Kind, t.Key(), err)
		}
	}
	if req.Kind == store.RequestResume {
		// Refused before it is recorded: a recorded resume lifts the pause
		// even when the running changehook then refuses its position.
		from, _ := runner.ParseResumeFrom(req.From) // parsed by build
		if err := runner.CheckResumeFrom(ctx, sc.client, sc.store, t, from); err != nil {
			return fail(env, cmd, fmt.Errorf("%s %s: %w", req.Kind, t.Key(), err))
		}
	}
	req.By = "cli"
	wctx, cancel := context.WithTimeout(ctx, controlWait)
	defer cancel()
	if noneRunning(wctx, sc, env) {
		// Nothing could apply it within the wait: recorded, the answer
		// is the one the wait would end with, given at once.
		_, err := sc.store.RequestControl(wctx, t.Key(), reason, req)
		switch {
		case errors.As(err, new(*store.PendingRequestError)) || errors.As(err, new(*store.TriggerPausedError)):
			return fail(env, cmd, fmt.Errorf("%s %s: refused: %w", req.Kind, t.Key(), err))
		case err != nil:
			return fail(env, cmd, fmt.Errorf("%s %s: %w: %w", req.Kind, t.Key(), runner.ErrNotRecorded, err))
		}
		fmt.Fprintf(env.Stdout, "%s: %s recorded; no changehook is running (no live cluster member, no recorded dev on this deployment), "+
			"so it applies when changehook runs the trigger.\n", t.Key(), req.Kind)
		return ExitOK
	}
	msg, err := runner.RequestControl(wctx, sc.store, t.Key(), reason, req)
	var pe *runner.PendingError
	switch {
	case err == nil:
		fmt.Fprintf(env.Stdout, "%s: %s\n", t.Key(), msg)
		return ExitOK
	case errors.As(err, &pe) && ctx.Err() == nil:
		// Recorded (only then is the error a PendingError): the process
		// that runs the trigger applies it later. A request that could
		// not be recorded fails below: nothing would ever apply it.
		if len(pe.Applied) > 0 {
			fmt.Fprintf(env.Stdout, "%s: %s recorded; within %s it was applied by %s only, so the other partitions apply it when a changehook runs them.\n",
				t.Key(), req.Kind, controlWait, strings.Join(pe.Applied, ", "))
			return ExitOK
		}
		fmt.Fprintf(env.Stdout, "%s: %s recorded; no running changehook applied it within %s, so it applies when changehook runs the trigger.\n", t.Key(), req.Kind, controlWait)
		return ExitOK
	}
	return fail(env, cmd, err)
}

// noneRunning reports whether no changehook can be running on sc's state
// database: every `run` registers as a live cluster member and heartbeats
// while it runs, and a `dev`, which does not, records itself in env's
// runtime directory (a dev that is not recorded there, another user's, is
// not seen). false when the members cannot be read.
func noneRunning(ctx context.Context, sc *stateConn, env Env) bool {
	if rt, ok := readDevRuntime(env); ok && sameDevdb(sc.cfg.MongoDB.URI, rt.URI) {
		return false
	}
	live, err := sc.store.LiveMembers(ctx)
	return err == nil && len(live) == 0
}

// findUnit is findTrigger that also accepts one partition's key of a
// partitioned trigger ("NAME/p<i>of<N>", N its configured partitions) and
// returns that partition.
func findUnit(cfg *triggers.Config, name string) (*triggers.Trigger, error) {
	trigger, i, n, ok := triggers.ParsePartitionKey(name)
	if !ok || n == 1 {
		return findTrigger(cfg, name)
	}
	t, err := findTrigger(cfg, trigger)
	if err != nil {
		return nil, err
	}
	if t.Partitions != n {
		return nil, fmt.Errorf("trigger %s has %d partitions, so %s is not one of them", trigger, t.Partitions, name)
	}
	return t.Partition(i), nil
}
