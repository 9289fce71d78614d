package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/admin"
	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

func dlqCommand(ctx context.Context, args []string, env Env) int {
	const usage = `Usage:
  changehook dlq list    [-c FILE] [--trigger NAME] [--limit N] [--after CURSOR|ID]
  changehook dlq show    [-c FILE] ID
  changehook dlq replay  [-c FILE] ID... | --all [--trigger NAME]
  changehook dlq purge   [-c FILE] ID... | --trigger NAME | --all [--yes]

Dead letters are events a trigger gave up on (a 4xx answer, or every retry
failed). They live in <state.database>.deadletters, keyed by webhook-id.
replay delivers them again with the trigger's current webhook settings and
retry policy, and deletes each one that is delivered. Listings are ordered
by trigger, then oldest first, one page at a time (--limit, default 100;
the next page with --after: a page prints the command that shows the next
one); replay --all and purge work through any number of dead letters in
batches.

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
// without -c) and connects to its state database. The webhooks' unset
// variables are no problem (triggers.Options.IgnoreUnsetWebhookVars): the
// command sends no request; openStateToSend is for one that does.
func openState(ctx context.Context, fs *flag.FlagSet, path string, env Env) (*stateConn, error) {
	return openStateWith(ctx, fs, path, env, triggers.Options{IgnoreUnsetWebhookVars: true})
}

// openStateToSend is openState for a command that sends requests to the
// webhooks (dlq replay) or compares their definitions (cluster status):
// every variable of the file must be set.
func openStateToSend(ctx context.Context, fs *flag.FlagSet, path string, env Env) (*stateConn, error) {
	return openStateWith(ctx, fs, path, env, triggers.Options{})
}

func openStateWith(ctx context.Context, fs *flag.FlagSet, path string, env Env, opts triggers.Options) (*stateConn, error) {
	cfg, err := stateConfig(fs, path, env, opts)
	if err != nil {
		return nil, err
	}
	client, err := connect(ctx, cfg.MongoDB.URI)
	if err != nil {
		return nil, err
	}
	st := store.New(client, cfg.State.Database)
	st.SetHistoryRetention(cfg.History.Retention)
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
	fs := newFlagSet(env, "dlq list", "dlq list [-c FILE] [--trigger NAME] [--limit N] [--after CURSOR|ID]",
		"changehook dlq list", "changehook dlq list --trigger low_stock --limit 20",
		"changehook dlq list --after dlc_MTc2NDY5...   # the next page, as the previous one printed")
	path := configFlag(fs)
	trigger := fs.String("trigger", "", "only the dead letters of this trigger")
	limit := fs.Int("limit", 100, "show at most `N` (0: all of them, read in batches)")
	after := fs.String("after", "", "start after this `position`: the cursor a previous page printed, or a dead letter id")
	if code, done := flagsNoArgs(fs, args, env); done {
		return code
	}
	if *limit < 0 {
		return usageError(env, fs, "--limit must be 0 (all) or more")
	}
	sc, err := openState(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "dlq list", err)
	}
	defer sc.close(ctx)
	note, err := deadLetterTrigger(ctx, sc, *trigger)
	if code, done := reportRecordedTrigger(env, fs, "dlq list", note, err); done {
		return code
	}
	f := store.DeadLetterFilter{Trigger: *trigger, Summary: true}
	if f.After, err = afterPosition(ctx, sc.store, *after); err != nil {
		return fail(env, "dlq list", err)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	shown, more := 0, false
	for {
		// A page of summaries at a time: memory stays bounded even
		// without --limit.
		n := store.DeadLetterBatch
		if *limit > 0 {
			n = min(n, *limit-shown)
		}
		f.Limit = n + 1
		dls, err := sc.store.ListDeadLetters(ctx, f)
		if err != nil {
			return fail(env, "dlq list", err)
		}
		more = len(dls) > n
		if more {
			dls = dls[:n]
		}
		if shown == 0 && len(dls) > 0 {
			fmt.Fprintln(tw, "ID\tTRIGGER\tOPERATION\tATTEMPTS\tLAST STATUS\tREASON\tDEAD-LETTERED AT\tNOTE")
		}
		for _, dl := range dls {
			op, _ := dl.Event.Lookup("operationType").StringValueOK()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", dl.ID, dl.Trigger, op, dl.Attempts, statusText(dl.LastStatus),
				dl.LastReason, dl.DeadLetteredAt.UTC().Format(time.RFC3339), noteShort(dl.DeadLetter))
			f.After = dl.Cursor()
		}
		shown += len(dls)
		if err := tw.Flush(); err != nil {
			return fail(env, "dlq list", err)
		}
		if !more || (*limit > 0 && shown >= *limit) {
			break
		}
	}
	switch {
	case shown == 0 && *after != "":
		fmt.Fprintln(env.Stdout, "no more dead letters")
	case shown == 0:
		fmt.Fprintln(env.Stdout, "no dead letters")
	case more:
		// The count is of this page: counting every match would cost a
		// query over all of them per page.
		fmt.Fprintf(env.Stderr, "%s shown; more: %s\n", plural(shown, "dead letter"),
			nextPageCommand(fs, []string{"c", "config", "trigger", "limit"}, nil, f.After.String()))
	case *after != "":
		fmt.Fprintf(env.Stderr, "%s shown, the last ones\n", plural(shown, "dead letter"))
	default:
		fmt.Fprintf(env.Stderr, "%s\n", plural(shown, "dead letter"))
	}
	return ExitOK
}

// afterPosition resolves --after: a cursor printed by a previous page, or
// the id of a dead letter (which must still exist).
func afterPosition(ctx context.Context, st *store.Store, after string) (store.DeadLetterCursor, error) {
	if after == "" {
		return store.DeadLetterCursor{}, nil
	}
	if store.IsDeadLetterCursor(after) {
		return store.ParseDeadLetterCursor(after)
	}
	dl, ok, err := st.GetDeadLetter(ctx, after)
	if err != nil {
		return store.DeadLetterCursor{}, err
	}
	if !ok {
		return store.DeadLetterCursor{}, fmt.Errorf("--after %q: no such dead letter (replayed or purged?); give the cursor the previous page printed", after)
	}
	return dl.Cursor(), nil
}

// noteShort is a listing's note on dl: who skipped it (see
// dispatcher.DeadLetter.SkippedBy) and what was left out of it
// (trimmedShort); "" for neither.
func noteShort(dl dispatcher.DeadLetter) string {
	skipped := ""
	if dl.SkippedBy != "" {
		skipped = "skipped by " + dl.SkippedBy
	}
	switch trimmed := trimmedShort(dl); {
	case skipped == "":
		return trimmed
	case trimmed == "":
		return skipped
	default:
		return skipped + "; " + trimmed
	}
}

// trimmedShort is what a listing says of a trimmed dead letter (see
// dispatcher.DeadLetter.Trimmed); "" for a whole one.
func trimmedShort(dl dispatcher.DeadLetter) string {
	switch dl.Trimmed {
	case "":
		return ""
	case dispatcher.TrimmedEvent:
		return fmt.Sprintf("event too large, not kept (%d bytes): cannot be replayed", dl.EventSize)
	case dispatcher.TrimmedResponse:
		return "response not kept"
	}
	return "trimmed: " + dl.Trimmed
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
	fmt.Fprintf(w, "last error:       %s\n", textcut.Terminal(dl.LastError))
	fmt.Fprintf(w, "first attempt:    %s\n", dl.FirstAttemptAt.UTC().Format(time.RFC3339Nano))
	fmt.Fprintf(w, "dead-lettered at: %s\n", dl.DeadLetteredAt.UTC().Format(time.RFC3339Nano))
	if dl.SkippedBy != "" {
		fmt.Fprintf(w, "skipped by:       %s (the trigger was stuck on it; the fields above are from its delivery attempts)\n", dl.SkippedBy)
	}
	if dl.LastResponse != "" {
		fmt.Fprintf(w, "last response:    %s\n", oneLine(dl.LastResponse, 1000))
	}
	if dl.Trimmed != "" {
		fmt.Fprintf(w, "trimmed:          %s: %s\n", dl.Trimmed, dl.TrimmedNote())
	}
	if dl.Trimmed == dispatcher.TrimmedEvent {
		fmt.Fprintf(w, "event (not kept: only its identity, %d bytes of %d):\n%s\n", len(dl.Event), dl.EventSize, extJSONIndent(dl.Event))
		return ExitOK
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
	sc, err := openStateToSend(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "dlq replay", err)
	}
	defer sc.close(ctx)
	note, err := deadLetterTrigger(ctx, sc, *trigger)
	if code, done := reportRecordedTrigger(env, fs, "dlq replay", note, err); done {
		return code
	}

	var hist *store.HistoryWriter
	if sc.cfg.History.Enabled {
		// The replay's attempts go to the delivery history too.
		hist = store.NewHistoryWriter(sc.store, store.HistoryWriterOptions{})
		defer func() {
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := hist.Close(hctx); err != nil || hist.Dropped() > 0 {
				fmt.Fprintf(env.Stderr, "note: %d replay attempts were not recorded in the history\n", hist.Dropped())
			}
		}()
	}
	r := deadletter.Replayer{Store: sc.store, Config: sc.cfg, NewSender: func(t *triggers.Trigger) (*dispatcher.Sender, error) {
		if hist == nil {
			return newSender(t, env)
		}
		return newSender(t, env, dispatcher.WithObserver(replayObserver(t, "cli", hist.Observer)))
	}}
	notFound := 0 // counted in sum.Failed, but never a dead letter left
	sum, err := r.Replay(ctx, deadletter.Selection{IDs: ids, Trigger: *trigger, All: *all}, func(res deadletter.Result) {
		switch {
		case errors.Is(res.Err, deadletter.ErrNotFound):
			notFound++
			fmt.Fprintf(env.Stdout, "%s  %s\n", res.ID, notFoundText)
		case res.Err != nil:
			fmt.Fprintf(env.Stdout, "%s  %s  FAILED: %s\n", res.ID, res.Trigger, textcut.Terminal(res.Err.Error()))
		default:
			fmt.Fprintf(env.Stdout, "%s  %s  delivered: HTTP %d after %s\n", res.ID, res.Trigger, res.Status, plural(res.Attempts, "attempt"))
		}
	})
	found := sum.Replayed + sum.Failed - notFound
	if err != nil {
		fmt.Fprintf(env.Stdout, "replayed %d of %d so far; %d failed%s\n", sum.Replayed, found, sum.Failed-notFound, notFoundSuffix(notFound))
		return fail(env, "dlq replay", err)
	}
	switch {
	case found == 0 && notFound > 0:
		fmt.Fprintf(env.Stdout, "%s: nothing replayed\n", noneFound(notFound))
	case found == 0:
		fmt.Fprintln(env.Stdout, "no dead letters to replay")
	default:
		fmt.Fprintf(env.Stdout, "replayed %d of %d; %d left in the dead letters%s\n", sum.Replayed, found, sum.Failed-notFound, notFoundSuffix(notFound))
	}
	if sum.Failed > 0 {
		return ExitFailure // a dead letter left, or an ID that names none
	}
	return ExitOK
}

// notFoundText follows a given ID that names no dead letter, in the output
// of dlq replay and purge.
const notFoundText = "not found: no such dead letter (see 'changehook dlq list')"

// notFoundSuffix ends a dlq replay or purge summary with how many of the
// given IDs named no dead letter ("" when all did).
func notFoundSuffix(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %s not found", plural(n, "ID"))
}

// noneFound says that none of the n IDs given to dlq replay or purge
// names a dead letter.
func noneFound(n int) string {
	if n == 1 {
		return "the given ID is no dead letter"
	}
	return fmt.Sprintf("none of the %d given IDs is a dead letter", n)
}

// unknownIDs returns the ids (deduplicated, in the order given) that name
// no dead letter in st.
func unknownIDs(ctx context.Context, st *store.Store, ids []string) ([]string, error) {
	found, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{IDs: ids, Summary: true})
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(ids))
	for _, dl := range found {
		seen[dl.ID] = true
	}
	var unknown []string
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			unknown = append(unknown, id)
		}
	}
	return unknown, nil
}

func dlqPurge(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "dlq purge", "dlq purge [-c FILE] ID... | --trigger NAME | --all [--yes]",
		"changehook dlq purge --trigger low_stock          # a dry run: shows how many would be deleted (exit 0)",
		"changehook dlq purge --trigger low_stock --yes    # deletes them",
		"changehook dlq purge msg_2f6yq3x4kq7m3v5bq6w4zq2x7a --yes")
	path := configFlag(fs)
	trigger := fs.String("trigger", "", "delete the dead letters of this trigger")
	all := fs.Bool("all", false, "delete every dead letter (of --trigger, when given)")
	yes := fs.Bool("yes", false, "really delete them")
	ids, code, done := flagsThenArgs(fs, args, env)
	if done {
		return code
	}
	switch {
	case len(ids) > 0 && (*all || *trigger != ""):
		return usageError(env, fs, "give IDs, or --trigger and/or --all, not both")
	case len(ids) == 0 && !*all && *trigger == "":
		return usageError(env, fs, "--trigger is required (or --all, or IDs)")
	}
	sel := deadletter.Selection{IDs: ids, Trigger: *trigger, All: *all}
	what := "of trigger " + *trigger
	switch {
	case len(ids) > 0:
		what = "of the given IDs"
	case *trigger == "":
		what = "of all triggers"
	}
	sc, err := openState(ctx, fs, *path, env)
	if err != nil {
		return fail(env, "dlq purge", err)
	}
	defer sc.close(ctx)
	note, err := deadLetterTrigger(ctx, sc, *trigger)
	if code, done := reportRecordedTrigger(env, fs, "dlq purge", note, err); done {
		return code
	}
	var unknown []string
	if len(ids) > 0 {
		// Named, so that a typo is not taken for a dead letter deleted.
		if unknown, err = unknownIDs(ctx, sc.store, ids); err != nil {
			return fail(env, "dlq purge", err)
		}
		for _, id := range unknown {
			fmt.Fprintf(env.Stdout, "%s  %s\n", id, notFoundText)
		}
	}
	noneKnown := len(ids) > 0 && len(unknown) == len(slices.Compact(slices.Sorted(slices.Values(ids))))
	if !*yes {
		if noneKnown {
			fmt.Fprintf(env.Stdout, "%s: nothing would be deleted\n", noneFound(len(unknown)))
			return ExitOK // a dry run that worked
		}
		n, err := sc.store.CountDeadLettersMatching(ctx, sel.Filter())
		if err != nil {
			return fail(env, "dlq purge", err)
		}
		fmt.Fprintf(env.Stdout, "would delete %s %s%s; nothing deleted. Run again with --yes to delete them.\n", plural(int(n), "dead letter"), what, notFoundSuffix(len(unknown)))
		return ExitOK // a dry run that worked
	}
	exit := ExitOK
	if len(unknown) > 0 {
		exit = ExitFailure // as dlq show and replay of an ID that names none
	}
	if noneKnown {
		fmt.Fprintf(env.Stdout, "%s: nothing deleted\n", noneFound(len(unknown)))
		return exit
	}
	n, err := deadletter.Purge(ctx, sc.store, sel)
	if err != nil {
		fmt.Fprintf(env.Stdout, "deleted %s %s before the error\n", plural(int(n), "dead letter"), what)
		return fail(env, "dlq purge", err)
	}
	fmt.Fprintf(env.Stdout, "deleted %s %s%s\n", plural(int(n), "dead letter"), what, notFoundSuffix(len(unknown)))
	return exit
}

// deadLetterOps serves the admin API's dead-letter replay and purge with
// the running configuration, one call at a time. A replay's attempts are
// recorded in the delivery history as kind replay, by "api", through
// history (the runner's HistoryObserver: the writer in use at each
// attempt, so a reload that turns the history on or off applies at once).
type deadLetterOps struct {
	mu sync.Mutex
	st *store.Store
	// config returns the running configuration, so a replay after a hot
	// reload uses the reloaded webhook (URL, secret, headers).
	config  func() *triggers.Config
	env     Env
	history func(trigger, partition, kind, by string) func(dispatcher.Attempt)
}

// replayObserver returns the observer recording the attempts of a
// dead-letter replay of t asked for by by in the delivery history, through
// observer (store.HistoryWriter.Observer or runner.Runner.HistoryObserver):
// for a partitioned trigger, each attempt with the partition that delivers
// its event (triggers.Trigger.PartitionOf), as the partition's own
// deliveries of it were recorded.
func replayObserver(t *triggers.Trigger, by string, observer func(trigger, partition, kind, by string) func(dispatcher.Attempt)) func(dispatcher.Attempt) {
	if t.Partitions <= 1 {
		return observer(t.Name, "", store.KindReplay, by)
	}
	parts := make([]func(dispatcher.Attempt), t.Partitions)
	for i := range parts {
		parts[i] = observer(t.Name, t.PartitionName(i), store.KindReplay, by)
	}
	return func(a dispatcher.Attempt) {
		i, _ := t.PartitionOf(a.DocumentKey)
		parts[i](a)
	}
}

// errDeadLetterBusy answers a replay or purge call while another runs.
var errDeadLetterBusy = errors.New("another dead-letter replay or purge is running; try again when it ends")

// Replay implements admin.DeadLetterOps.
func (o *deadLetterOps) Replay(ctx context.Context, sel deadletter.Selection) (deadletter.Summary, error) {
	if !o.mu.TryLock() {
		return deadletter.Summary{}, errDeadLetterBusy
	}
	defer o.mu.Unlock()
	r := deadletter.Replayer{Store: o.st, Config: o.config(), NewSender: func(t *triggers.Trigger) (*dispatcher.Sender, error) {
		if o.history == nil {
			return newSender(t, o.env)
		}
		return newSender(t, o.env, dispatcher.WithObserver(replayObserver(t, "api", o.history)))
	}}
	return r.Replay(ctx, sel, nil)
}

// Purge implements admin.DeadLetterOps.
func (o *deadLetterOps) Purge(ctx context.Context, sel deadletter.Selection) (int64, error) {
	if !o.mu.TryLock() {
		return 0, errDeadLetterBusy
	}
	defer o.mu.Unlock()
	return deadletter.Purge(ctx, o.st, sel)
}

// reportRecordedTrigger prints what admin.RecordedTrigger answered for command
// cmd (its flag set fs): the note on stderr, an unknown trigger as a
// usage error, another error as a failure; done says the command must
// return code.
func reportRecordedTrigger(env Env, fs *flag.FlagSet, cmd, note string, err error) (code int, done bool) {
	var ue *admin.UnknownTriggerError
	switch {
	case errors.As(err, &ue):
		return usageError(env, fs, "%v", err), true
	case err != nil:
		return fail(env, cmd, err), true
	case note != "":
		fmt.Fprintln(env.Stderr, note)
	}
	return 0, false
}

// deadLetterTrigger is admin.RecordedTrigger for the dead letters of trigger:
// "" (every trigger) and a configured trigger need no query.
func deadLetterTrigger(ctx context.Context, sc *stateConn, trigger string) (note string, err error) {
	if trigger == "" {
		return "", nil
	}
	_, ferr := findTrigger(sc.cfg, trigger)
	return admin.RecordedTrigger(sc.cfg, sc.cfg.Path, trigger, "dead letters", ferr == nil, func() (bool, error) {
		n, err := sc.store.CountDeadLetters(ctx, trigger)
		return n > 0, err
	})
}
