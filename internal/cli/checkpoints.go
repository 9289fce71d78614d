package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
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
  changehook checkpoints repartition [-c FILE] --trigger NAME --partitions N [--force]

A checkpoint is the resume token a trigger restarts from (one per trigger, in
<state.database>.checkpoints). When a trigger fails with "history lost" (its
checkpoint fell off the oplog), changehook never skips events on its own:
reset the checkpoint explicitly. Events between the old checkpoint and the
new position are not delivered.

reset takes the trigger's cluster lease while it writes, like a member would:
it is refused while a running changehook holds the lease, or while the
running 'changehook dev' (which takes no lease) runs the trigger (that
process keeps its own position and would overwrite the reset; use
"changehook resume NAME --from now|TIME", which the running process applies,
or stop it first), and no member can run the trigger meanwhile. A member
that starts the trigger afterwards continues from the new position.

  --to now    the trigger continues from the current end of the stream
  --to TIME   the trigger continues from the first change at or after TIME
              (must still be in the oplog; a time after the server's
              current time is refused)

A partitioned trigger has one checkpoint per partition, NAME/p<i>of<N>.
Changing its partitions is explicit: stop every changehook that has it (one
showing it failed after a reload changed partitions too: it holds the old
partitions' leases), run
repartition (every new partition continues from the OLDEST old checkpoint, so
nothing is skipped; the changes between the oldest and the newest old
checkpoint are delivered again, with the same webhook-id), set partitions: N
in the configuration, start changehook again. repartition holds the leases of
every old and new partition while it rewrites, like reset: it is refused,
changing nothing, while any process holds one of them (it names the holder)
or the running 'changehook dev' runs the trigger, and while a live cluster
member lists the trigger unless --force. It removes
the old partitions' checkpoints, leases and control documents (a pause of one
old partition does not carry over: it says so; a pause of the trigger does).

Examples:
  changehook checkpoints list
  changehook checkpoints reset --trigger low_stock
  changehook checkpoints reset --trigger low_stock --to 2025-01-31T12:00:00Z
  changehook checkpoints repartition --trigger orders --partitions 4
`
	return runSubcommand(ctx, "checkpoints", usage, map[string]commandFunc{
		"list":        checkpointsList,
		"reset":       checkpointsReset,
		"repartition": checkpointsRepartition,
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, positionText(cp), cp.UpdatedAt.UTC().Format(time.RFC3339), note)
	}
	for _, t := range sc.cfg.Triggers {
		for _, u := range t.Units() {
			cp, ok := byName[u.Key()]
			delete(byName, u.Key())
			note := ""
			if !ok {
				note = "no checkpoint: starts at start_at"
			}
			if !t.Enabled {
				note = "disabled; " + note
			}
			row(u.Key(), cp, ok, note)
		}
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

// positionText shows where checkpoint cp stands: its recorded cluster time
// or, when it has none (a checkpoint moved to "now" by an unfenced save,
// or by checkpoints reset over an existing one, until the trigger saves
// again), the cluster time its resume token opens with; "unknown" only
// when neither says.
func positionText(cp store.Checkpoint) string {
	if cp.ClusterTime.T == 0 {
		if at, ok := runner.TokenTime(cp.Token); ok {
			return at.Format(time.RFC3339) + " (resume token)"
		}
	}
	return clusterTimeText(cp.ClusterTime)
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
	t, err := findUnit(sc.cfg, *name)
	if err != nil {
		return usageError(env, fs, "%v", err)
	}
	// A partitioned trigger's name resets every partition (all under their
	// leases, or none); a partition's key resets that one.
	units := []*triggers.Trigger{t}
	if _, one := t.PartitionIndex(); !one {
		units = t.Units()
	}
	if err := resetDevRefusal(env, sc.cfg, t); err != nil {
		return fail(env, "checkpoints reset", err)
	}
	var cps []store.Checkpoint
	for _, u := range units {
		cp, err := positionAt(ctx, sc, u, at)
		if err != nil {
			return fail(env, "checkpoints reset", err)
		}
		cps = append(cps, cp)
	}
	if err := resetFenced(ctx, sc.store, cps, sc.cfg.Cluster.LeaseTTL, env.Stderr); err != nil {
		return fail(env, "checkpoints reset", err)
	}
	where := "the current end of the stream"
	if !at.IsZero() {
		where = "the first change at or after " + at.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(env.Stdout, "checkpoint of %s reset: it continues from %s.\nNo changehook run held the trigger and no recorded changehook dev runs it; the next one to run it starts there.\n", t.Key(), where)
	return ExitOK
}

// resetDevRefusal refuses checkpoints reset of t (a trigger or one of its
// partitions) while the running `changehook dev` runs it (devRunning): dev
// takes no lease, so resetFenced would not see it, and dev keeps its own
// position and would overwrite the reset.
func resetDevRefusal(env Env, cfg *triggers.Config, t *triggers.Trigger) error {
	rt, ok := devRunning(env, cfg, t.Name)
	if !ok {
		return nil
	}
	return fmt.Errorf("trigger %s is running on the 'changehook dev' (pid %d), which takes no lease: it keeps its own position and would overwrite a reset; nothing was reset. "+
		"Move it through that dev with `changehook resume %s --from now|TIME` (to deliver changes again, `changehook redeliver %s --since TIME`), or stop that dev first",
		t.Key(), rt.PID, t.Name, t.Name)
}

// resetOwner names the lease holder while checkpoints reset writes.
func resetOwner() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("checkpoints-reset@%s-%d", host, os.Getpid())
}

// resetFenced writes cps (one trigger's checkpoints: one per partition) as
// the holder of their leases (ttl long): refused with a clear error, and
// nothing written, while a member holds any of them; once written, a member
// that held a lease before can no longer overwrite its checkpoint (its
// epoch is older), and the next member to acquire the lease reads it.
func resetFenced(ctx context.Context, st *store.Store, cps []store.Checkpoint, ttl time.Duration, warn io.Writer) error {
	if ttl <= 0 {
		ttl = triggers.DefaultLeaseTTL
	}
	owner := resetOwner()
	fences := map[string]store.Fence{}
	defer func() {
		for key, f := range fences {
			if err := st.ReleaseLease(context.WithoutCancel(ctx), key, f); err != nil {
				fmt.Fprintf(warn, "changehook: checkpoints reset: %v (the lease expires in %s)\n", err, ttl)
			}
		}
	}()
	for _, cp := range cps {
		key := cp.Trigger
		l, err := st.AcquireLease(ctx, key, owner, ttl)
		if errors.Is(err, store.ErrLeaseHeld) {
			held := "another process"
			if ls, lerr := st.ListLeases(ctx); lerr == nil {
				for _, x := range ls {
					if x.Key == key && x.Owner != "" {
						held = fmt.Sprintf("cluster member %s (its lease expires in %s unless renewed)", x.Owner, time.Duration(x.RemainingMS)*time.Millisecond)
					}
				}
			}
			name, _, _, _ := triggers.ParsePartitionKey(key)
			return fmt.Errorf("trigger %s is running on %s: it keeps its own position and would overwrite a reset; nothing was reset. "+
				"Move it through the running process with `changehook resume %s --from now|TIME`, or stop every changehook run first and reset again", key, held, name)
		}
		if err != nil {
			return err
		}
		fences[key] = store.Fence{Owner: l.Owner, Epoch: l.Epoch}
	}
	for _, cp := range cps {
		f := fences[cp.Trigger]
		if _, _, err := st.ClaimCheckpoint(ctx, cp.Trigger, f); err != nil {
			return err
		}
		if err := st.SaveFencedCheckpoint(ctx, cp, f); err != nil {
			return err
		}
	}
	return nil
}

// positionAt is runner.PositionAt on the state connection's client.
func positionAt(ctx context.Context, sc *stateConn, t *triggers.Trigger, at time.Time) (store.Checkpoint, error) {
	return runner.PositionAt(ctx, sc.client, t, at)
}

func checkpointsRepartition(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "checkpoints repartition", "checkpoints repartition [-c FILE] --trigger NAME --partitions N [--force]",
		"changehook checkpoints repartition --trigger orders --partitions 4")
	path := configFlag(fs)
	name := fs.String("trigger", "", "the trigger to repartition (required)")
	n := fs.Int("partitions", 0, fmt.Sprintf("the new number of partitions, 1 to %d (required)", triggers.MaxPartitions))
	force := fs.Bool("force", false, "do not refuse while live cluster members list the trigger (a held lease, or a running changehook dev, still refuses)")
	if code, done := flagsNoArgs(fs, args, env); done {
		return code
	}
	switch {
	case *name == "":
		return usageError(env, fs, "--trigger is required")
	case !flagSet(fs, "partitions"):
		return usageError(env, fs, "--partitions is required")
	case *n < 1 || *n > triggers.MaxPartitions:
		return usageError(env, fs, "--partitions must be between 1 and %d, got %d", triggers.MaxPartitions, *n)
	}
	sc, err := openState(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "checkpoints repartition", err)
	}
	defer sc.close(ctx)
	t, err := findTrigger(sc.cfg, *name)
	if err != nil {
		return usageError(env, fs, "%v", err)
	}
	if *n > 1 && t.Ordering == triggers.Strict {
		return usageError(env, fs, "trigger %s has ordering strict, which partitions cannot keep; change its ordering first", t.Name)
	}
	if rt, ok := devRunning(env, sc.cfg, t.Name); ok {
		// Like a held lease, and unlike a member that only lists the
		// trigger, a dev running it refuses even with --force: it writes
		// the old checkpoint again as it goes.
		return fail(env, "checkpoints repartition", fmt.Errorf("repartition %s: %w: the 'changehook dev' (pid %d) runs it and takes no lease (--force does not override this); nothing was changed. Stop that dev, then repartition again",
			t.Name, runner.ErrTriggerRunning, rt.PID))
	}
	res, err := runner.Repartition(ctx, sc.store, t.Name, *n, runner.RepartitionOptions{Force: *force, LeaseTTL: sc.cfg.Cluster.LeaseTTL})
	if err != nil {
		return fail(env, "checkpoints repartition", err)
	}
	w := env.Stdout
	if len(res.Old) == 0 {
		fmt.Fprintf(w, "trigger %s has no checkpoint: with partitions: %d each partition starts at start_at, as a new trigger does. Nothing written.\n", t.Name, *n)
	} else {
		var oldKeys []string
		for _, cp := range res.Old {
			oldKeys = append(oldKeys, cp.Trigger)
		}
		fmt.Fprintf(w, "trigger %s: %d checkpoint(s) (%s) -> %d partition(s) (%s).\n", t.Name, len(res.Old),
			strings.Join(oldKeys, ", "), *n, strings.Join(res.Keys, ", "))
		fmt.Fprintf(w, "Every partition continues after the oldest old checkpoint, %s at %s: nothing is skipped.\n",
			res.Start.Trigger, tokenTimeText(res.Start))
		if res.Start.Trigger != res.Newest.Trigger {
			fmt.Fprintf(w, "The changes from %s to %s (the newest old checkpoint, %s) are delivered again, with the same webhook-id.\n",
				tokenTimeText(res.Start), tokenTimeText(res.Newest), res.Newest.Trigger)
		}
	}
	if len(res.DroppedControls) > 0 {
		var keys, paused []string
		for _, c := range res.DroppedControls {
			keys = append(keys, c.Trigger)
			if c.Paused {
				paused = append(paused, c.Trigger)
			}
		}
		fmt.Fprintf(w, "Removed the control documents of the old partitions (%s).\n", strings.Join(keys, ", "))
		if len(paused) > 0 {
			were := "were"
			if len(paused) == 1 {
				were = "was"
			}
			fmt.Fprintf(w, "%s %s paused: a pause of an old partition does not carry over; `changehook pause %s` holds every partition.\n",
				strings.Join(paused, ", "), were, t.Name)
		}
	}
	if t.Partitions != *n {
		fmt.Fprintf(w, "%s says partitions: %d for %s: set it to %d before starting changehook.\n", sc.cfg.Path, t.Partitions, t.Name, *n)
	} else {
		fmt.Fprintln(w, "Start changehook (every member with this configuration).")
	}
	return ExitOK
}

// tokenTimeText shows where a checkpoint stands: the cluster time its
// resume token encodes, else its recorded cluster time.
func tokenTimeText(cp store.Checkpoint) string {
	if at, ok := runner.TokenTime(cp.Token); ok {
		return at.Format(time.RFC3339)
	}
	return clusterTimeText(cp.ClusterTime)
}
