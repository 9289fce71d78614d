package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

func checkpointsCommand(ctx context.Context, args []string, env Env) int {
	const usage = `Usage:
  changehook checkpoints list  [-c FILE]
  changehook checkpoints reset [-c FILE] --trigger NAME [--to now|RFC3339-TIME]

A checkpoint is the resume token a trigger restarts from (one per trigger, in
<state.database>.checkpoints). When a trigger fails with "history lost" (its
checkpoint fell off the oplog), changehook never skips events on its own:
reset the checkpoint explicitly. Events between the old checkpoint and the
new position are not delivered.

reset takes the trigger's cluster lease while it writes, like a member would:
it is refused while a running changehook holds the lease (that process keeps
its own position and would overwrite the reset; use
"changehook resume NAME --from now|TIME", which the running process applies,
or stop every member first), and no member can run the trigger meanwhile. A
member that starts the trigger afterwards continues from the new position.

  --to now    the trigger continues from the current end of the stream
  --to TIME   the trigger continues from the first change at or after TIME
              (must still be in the oplog)

Examples:
  changehook checkpoints list
  changehook checkpoints reset --trigger low_stock
  changehook checkpoints reset --trigger low_stock --to 2025-01-31T12:00:00Z
`
	return runSubcommand(ctx, "checkpoints", usage, map[string]commandFunc{
		"list":  checkpointsList,
		"reset": checkpointsReset,
	}, args, env)
}

func checkpointsList(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "checkpoints list", "checkpoints list [-c FILE]", "changehook checkpoints list")
	path := configFlag(fs)
	if code, done := flagsNoArgs(fs, args, env); done {
		return code
	}
	sc, err := openState(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "checkpoints list", err)
	}
	defer sc.close(ctx)
	cps, err := sc.store.ListCheckpoints(ctx)
	if err != nil {
		return fail(env, "checkpoints list", err)
	}
	byName := make(map[string]store.Checkpoint, len(cps))
	for _, cp := range cps {
		byName[cp.Trigger] = cp
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRIGGER\tPOSITION (CLUSTER TIME)\tSAVED AT\tNOTE")
	row := func(name string, cp store.Checkpoint, ok bool, note string) {
		if !ok {
			fmt.Fprintf(tw, "%s\t-\t-\t%s\n", name, note)
			return
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, clusterTimeText(cp.ClusterTime), cp.UpdatedAt.UTC().Format(time.RFC3339), note)
	}
	for _, t := range sc.cfg.Triggers {
		cp, ok := byName[t.Name]
		delete(byName, t.Name)
		note := ""
		if !ok {
			note = "no checkpoint: starts at start_at"
		}
		if !t.Enabled {
			note = "disabled; " + note
		}
		row(t.Name, cp, ok, note)
	}
	for _, cp := range cps {
		if _, left := byName[cp.Trigger]; left {
			row(cp.Trigger, cp, true, "not in "+sc.cfg.Path)
		}
	}
	if err := tw.Flush(); err != nil {
		return fail(env, "checkpoints list", err)
	}
	return ExitOK
}

func clusterTimeText(ts bson.Timestamp) string {
	if ts.T == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%s (%d.%d)", time.Unix(int64(ts.T), 0).UTC().Format(time.RFC3339), ts.T, ts.I)
}

func checkpointsReset(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "checkpoints reset", "checkpoints reset [-c FILE] --trigger NAME [--to now|RFC3339-TIME]",
		"changehook checkpoints reset --trigger low_stock",
		"changehook checkpoints reset --trigger low_stock --to 2025-01-31T12:00:00Z")
	path := configFlag(fs)
	name := fs.String("trigger", "", "the trigger whose checkpoint is reset (required)")
	to := fs.String("to", "now", "new position: now, or an RFC 3339 time such as 2025-01-31T12:00:00Z")
	if code, done := flagsNoArgs(fs, args, env); done {
		return code
	}
	if *name == "" {
		return usageError(env, fs, "--trigger is required")
	}
	var at time.Time
	if *to != "now" {
		var err error
		if at, err = time.Parse(time.RFC3339, *to); err != nil {
			return usageError(env, fs, "--to must be now or an RFC 3339 time such as 2025-01-31T12:00:00Z, not %q", *to)
		}
	}
	sc, err := openState(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "checkpoints reset", err)
	}
	defer sc.close(ctx)
	t, err := findTrigger(sc.cfg, *name)
	if err != nil {
		return usageError(env, fs, "%v", err)
	}
	cp, err := positionAt(ctx, sc, t, at)
	if err != nil {
		return fail(env, "checkpoints reset", err)
	}
	if err := resetFenced(ctx, sc.store, cp, sc.cfg.Cluster.LeaseTTL, env.Stderr); err != nil {
		return fail(env, "checkpoints reset", err)
	}
	where := "the current end of the stream"
	if !at.IsZero() {
		where = "the first change at or after " + at.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(env.Stdout, "checkpoint of %s reset: it continues from %s.\nNo changehook run held the trigger; the next one to run it starts there (a running changehook dev keeps its own position: restart it).\n", t.Name, where)
	return ExitOK
}

// resetOwner names the lease holder while checkpoints reset writes.
func resetOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("checkpoints-reset@%s-%d", host, os.Getpid())
}

// resetFenced writes cp as the holder of its trigger's lease (ttl long):
// refused with a clear error while a member holds the lease; once written,
// a member that held the lease before can no longer overwrite it (its epoch
// is older), and the next member to acquire the lease reads it.
func resetFenced(ctx context.Context, st *store.Store, cp store.Checkpoint, ttl time.Duration, warn io.Writer) error {
	if ttl <= 0 {
		ttl = triggers.DefaultLeaseTTL
	}
	key := cp.Trigger
	l, err := st.AcquireLease(ctx, key, resetOwner(), ttl)
	if errors.Is(err, store.ErrLeaseHeld) {
		held := "another process"
		if ls, lerr := st.ListLeases(ctx); lerr == nil {
			for _, x := range ls {
				if x.Key == key && x.Owner != "" {
					held = fmt.Sprintf("cluster member %s (its lease expires in %s unless renewed)", x.Owner, time.Duration(x.RemainingMS)*time.Millisecond)
				}
			}
		}
		return fmt.Errorf("trigger %s is running on %s: it keeps its own position and would overwrite a reset. "+
			"Move it through the running process with `changehook resume %s --from now|TIME`, or stop every changehook run first and reset again", key, held, key)
	}
	if err != nil {
		return err
	}
	f := store.Fence{Owner: l.Owner, Epoch: l.Epoch}
	defer func() {
		if err := st.ReleaseLease(context.WithoutCancel(ctx), key, f); err != nil {
			fmt.Fprintf(warn, "changehook: checkpoints reset: %v (the lease expires in %s)\n", err, ttl)
		}
	}()
	if _, _, err := st.ClaimCheckpoint(ctx, key, f); err != nil {
		return err
	}
	return st.SaveFencedCheckpoint(ctx, cp, f)
}

// positionAt is runner.PositionAt on the state connection's client.
func positionAt(ctx context.Context, sc *stateConn, t *triggers.Trigger, at time.Time) (store.Checkpoint, error) {
	return runner.PositionAt(ctx, sc.client, t, at)
}
