package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

func dlqCommand(ctx context.Context, args []string, env Env) int {
	const usage = `Usage:
  changehook dlq list    [-c FILE] [--trigger NAME] [--limit N]
  changehook dlq show    [-c FILE] ID
  changehook dlq replay  [-c FILE] ID... | --all [--trigger NAME]
  changehook dlq purge   [-c FILE] --trigger NAME [--yes]

Dead letters are events a trigger gave up on (a 4xx answer, or every retry
failed). They live in <state.database>.deadletters, keyed by webhook-id.
replay delivers them again with the trigger's current webhook settings and
retry policy, and deletes each one that is delivered.

Examples:
  changehook dlq list --trigger low_stock
  changehook dlq show msg_2f6yq3x4kq7m3v5bq6w4zq2x7a
  changehook dlq replay --all --trigger low_stock
  changehook dlq purge --trigger low_stock --yes
`
	return runSubcommand(ctx, "dlq", usage, map[string]commandFunc{
		"list":   dlqList,
		"show":   dlqShow,
		"replay": dlqReplay,
		"purge":  dlqPurge,
	}, args, env)
}

// stateConn is an open connection to the state database.
type stateConn struct {
	cfg    *triggers.Config
	client *mongo.Client
	store  *store.Store
}

func (c *stateConn) close(ctx context.Context) { _ = c.client.Disconnect(context.WithoutCancel(ctx)) }

// openState loads the configuration (stateConfig: a running dev is found
// without -c) and connects to its state database.
func openState(ctx context.Context, fs *flag.FlagSet, path string, env Env) (*stateConn, error) {
	cfg, err := stateConfig(fs, path, env)
	if err != nil {
		return nil, err
	}
	client, err := connect(ctx, cfg.MongoDB.URI)
	if err != nil {
		return nil, err
	}
	st := store.New(client, cfg.State.Database)
	if err := st.EnsureIndexes(ctx); err != nil {
		// The state commands still work without the indexes, only slower
		// (and dead-letter listings of many large ones may hit the
		// database's sort memory limit): warn and go on.
		fmt.Fprintf(env.Stderr, "warning: %v\n", err)
	}
	return &stateConn{cfg: cfg, client: client, store: st}, nil
}

// flagsThenArgs parses interleaved flags and positional arguments.
func flagsThenArgs(fs *flag.FlagSet, args []string, env Env) (pos []string, code int, done bool) {
	for {
		if code, done := parseFlags(fs, args, env); done {
			return nil, code, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, 0, false
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagsNoArgs parses interleaved flags as flagsThenArgs does, for a
// subcommand that takes no positional argument: the first one found is a
// usage error. done=true means the subcommand must return code (after
// --help, a bad flag or a stray argument).
func flagsNoArgs(fs *flag.FlagSet, args []string, env Env) (code int, done bool) {
	pos, code, done := flagsThenArgs(fs, args, env)
	if done {
		return code, true
	}
	if len(pos) > 0 {
		return usageError(env, fs, "unexpected argument %q", pos[0]), true
	}
	return 0, false
}

func dlqList(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "dlq list", "dlq list [-c FILE] [--trigger NAME] [--limit N]",
		"changehook dlq list", "changehook dlq list --trigger low_stock --limit 20")
	path := configFlag(fs)
	trigger := fs.String("trigger", "", "only the dead letters of this trigger")
	limit := fs.Int("limit", 0, "show at most `N` (0: all)")
	if code, done := flagsNoArgs(fs, args, env); done {
		return code
	}
	sc, err := openState(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "dlq list", err)
	}
	defer sc.close(ctx)
	dls, err := sc.store.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: *trigger, Limit: *limit})
	if err != nil {
		return fail(env, "dlq list", err)
	}
	if len(dls) == 0 {
		fmt.Fprintln(env.Stdout, "no dead letters")
		return ExitOK
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTRIGGER\tOPERATION\tATTEMPTS\tLAST STATUS\tREASON\tDEAD-LETTERED AT")
	for _, dl := range dls {
		op, _ := dl.Event.Lookup("operationType").StringValueOK()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", dl.ID, dl.Trigger, op, dl.Attempts, statusText(dl.LastStatus),
			dl.LastReason, dl.DeadLetteredAt.UTC().Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return fail(env, "dlq list", err)
	}
	fmt.Fprintf(env.Stderr, "%s\n", plural(len(dls), "dead letter"))
	return ExitOK
}

func statusText(s int) string {
	if s == 0 {
		return "-"
	}
	return fmt.Sprint(s)
}

func dlqShow(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "dlq show", "dlq show [-c FILE] ID", "changehook dlq show msg_2f6yq3x4kq7m3v5bq6w4zq2x7a")
	path := configFlag(fs)
	pos, code, done := flagsThenArgs(fs, args, env)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(env, fs, "give exactly one dead letter ID (see 'changehook dlq list')")
	}
	sc, err := openState(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "dlq show", err)
	}
	defer sc.close(ctx)
	dl, ok, err := sc.store.GetDeadLetter(ctx, pos[0])
	if err != nil {
		return fail(env, "dlq show", err)
	}
	if !ok {
		return fail(env, "dlq show", fmt.Errorf("no dead letter %q (see 'changehook dlq list')", pos[0]))
	}
	w := env.Stdout
	fmt.Fprintf(w, "id:               %s\n", dl.ID)
	fmt.Fprintf(w, "trigger:          %s\n", dl.Trigger)
	fmt.Fprintf(w, "attempts:         %d\n", dl.Attempts)
	fmt.Fprintf(w, "last status:      %s\n", statusText(dl.LastStatus))
	fmt.Fprintf(w, "last reason:      %s\n", dl.LastReason)
	fmt.Fprintf(w, "last error:       %s\n", dl.LastError)
	fmt.Fprintf(w, "first attempt:    %s\n", dl.FirstAttemptAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "dead-lettered at: %s\n", dl.DeadLetteredAt.UTC().Format(time.RFC3339Nano))
	if dl.LastResponse != "" {
		fmt.Fprintf(w, "last response:    %s\n", oneLine(dl.LastResponse, 1000))
	}
	fmt.Fprintf(w, "event:\n%s\n", extJSONIndent(dl.Event))
	return ExitOK
}

func dlqReplay(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "dlq replay", "dlq replay [-c FILE] ID... | --all [--trigger NAME]",
		"changehook dlq replay msg_2f6yq3x4kq7m3v5bq6w4zq2x7a",
		"changehook dlq replay --all --trigger low_stock")
	path := configFlag(fs)
	all := fs.Bool("all", false, "replay every dead letter (of --trigger, when given)")
	trigger := fs.String("trigger", "", "with --all: only this trigger's dead letters")
	ids, code, done := flagsThenArgs(fs, args, env)
	if done {
		return code
	}
	switch {
	case *all && len(ids) > 0:
		return usageError(env, fs, "give IDs or --all, not both")
	case !*all && len(ids) == 0:
		return usageError(env, fs, "give the IDs to replay, or --all")
	case !*all && *trigger != "":
		return usageError(env, fs, "--trigger only applies with --all")
	}
	sc, err := openState(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "dlq replay", err)
	}
	defer sc.close(ctx)

	var dls []store.StoredDeadLetter
	if *all {
		if dls, err = sc.store.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: *trigger}); err != nil {
			return fail(env, "dlq replay", err)
		}
	} else {
		for _, id := range ids {
			dl, ok, err := sc.store.GetDeadLetter(ctx, id)
			if err != nil {
				return fail(env, "dlq replay", err)
			}
			if !ok {
				return fail(env, "dlq replay", fmt.Errorf("no dead letter %q (see 'changehook dlq list'); nothing replayed", id))
			}
			dls = append(dls, dl)
		}
	}
	if len(dls) == 0 {
		fmt.Fprintln(env.Stdout, "no dead letters to replay")
		return ExitOK
	}
	r := replayer{env: env, cfg: sc.cfg, store: sc.store, senders: map[string]*dispatcher.Sender{}}
	failed := 0
	for _, dl := range dls {
		if err := r.replay(ctx, dl); err != nil {
			failed++
			fmt.Fprintf(env.Stdout, "%s  %s  FAILED: %v\n", dl.ID, dl.Trigger, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	fmt.Fprintf(env.Stdout, "replayed %d of %d; %d left in the dead letters\n", len(dls)-failed, len(dls), failed)
	if failed > 0 {
		return ExitFailure
	}
	return ExitOK
}

// replayer delivers dead letters with one Sender per trigger.
type replayer struct {
	env     Env
	cfg     *triggers.Config
	store   *store.Store
	senders map[string]*dispatcher.Sender
}

// replay delivers one dead letter and deletes it once delivered.
func (r *replayer) replay(ctx context.Context, dl store.StoredDeadLetter) error {
	s, ok := r.senders[dl.Trigger]
	if !ok {
		t, err := findTrigger(r.cfg, dl.Trigger)
		if err != nil || dl.Trigger == "" {
			return fmt.Errorf("trigger %q is not in %s: its webhook is unknown", dl.Trigger, r.cfg.Path)
		}
		if s, err = newSender(t, r.env); err != nil {
			return err
		}
		r.senders[dl.Trigger] = s
	}
	res, err := s.Deliver(ctx, dispatcher.Event{Raw: dl.Event, Token: dl.Token})
	if err != nil {
		status := "no response"
		if res.Status != 0 {
			status = fmt.Sprintf("HTTP %d", res.Status)
		}
		return fmt.Errorf("%s after %s: %w", status, plural(res.Attempts, "attempt"), err)
	}
	if _, err := r.store.DeleteDeadLetter(ctx, dl.ID); err != nil {
		return fmt.Errorf("delivered (HTTP %d) but could not delete the dead letter; a later replay would deliver it again: %w", res.Status, err)
	}
	fmt.Fprintf(r.env.Stdout, "%s  %s  delivered: HTTP %d after %s\n", dl.ID, dl.Trigger, res.Status, plural(res.Attempts, "attempt"))
	return nil
}

func dlqPurge(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "dlq purge", "dlq purge [-c FILE] --trigger NAME [--yes]",
		"changehook dlq purge --trigger low_stock          # shows how many would be deleted",
		"changehook dlq purge --trigger low_stock --yes    # deletes them")
	path := configFlag(fs)
	trigger := fs.String("trigger", "", "the trigger whose dead letters are deleted (required)")
	yes := fs.Bool("yes", false, "really delete them")
	if code, done := flagsNoArgs(fs, args, env); done {
		return code
	}
	if *trigger == "" {
		return usageError(env, fs, "--trigger is required")
	}
	sc, err := openState(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "dlq purge", err)
	}
	defer sc.close(ctx)
	if !*yes {
		dls, err := sc.store.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: *trigger})
		if err != nil {
			return fail(env, "dlq purge", err)
		}
		fmt.Fprintf(env.Stdout, "would delete %s of trigger %s; nothing deleted. Run again with --yes to delete them.\n", plural(len(dls), "dead letter"), *trigger)
		return ExitFailure
	}
	n, err := sc.store.PurgeDeadLetters(ctx, *trigger)
	if err != nil {
		return fail(env, "dlq purge", err)
	}
	fmt.Fprintf(env.Stdout, "deleted %s of trigger %s\n", plural(int(n), "dead letter"), *trigger)
	return ExitOK
}
