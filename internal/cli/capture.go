package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/triggers"
)

// captureCommand records real change events of a trigger's stream as
// canonical Extended JSON lines, without delivering anything and without
// reading or writing checkpoints.
func captureCommand(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "capture", "capture NAME [-n N] [-o FILE] [-c CONFIG]",
		"changehook capture low_stock                   # the next 10 events of low_stock, on standard output",
		"changehook capture low_stock -n 3 -o events.jsonl",
		"changehook test --trigger low_stock --events events.jsonl   # then: what would be sent for each",
		"changehook validate --events events.jsonl                   # exit 1 if a payload fails on one",
		"",
		"capture opens the trigger's change stream as run does (its namespace, operations, match and",
		"fullDocument options; its project is left to test/validate --events, so that the lines are the",
		"change events test --event takes), from now on. It never delivers and never touches checkpoints.",
		"It stops after N events or on Ctrl-C; every line is written as soon as its event arrives.",
		"Without -c and MONGODB_URI it uses a running 'changehook dev'.")
	path := configFlag(fs)
	n := fs.Int("n", 10, "stop after `N` events")
	out := fs.String("o", "", "write the events to `FILE` (replaced at the first event) instead of standard output")
	pos, code, done := flagsThenArgs(fs, args, env)
	if done {
		return code
	}
	if len(pos) != 1 {
		return usageError(env, fs, "want exactly one trigger name")
	}
	if *n < 1 {
		return usageError(env, fs, "-n must be 1 or more")
	}
	cfg, err := stateConfig(fs, *path, env, triggers.Options{IgnoreUnsetWebhookVars: true})
	if err != nil {
		return fail(env, "capture", err)
	}
	t, err := findTrigger(cfg, pos[0])
	if err != nil {
		return usageError(env, fs, "%v", err)
	}
	if !t.Enabled {
		return fail(env, "capture", fmt.Errorf("trigger %s is disabled (enabled: false in %s): run would not watch it; enable it to capture its events", t.Name, cfg.Path))
	}
	client, err := connect(ctx, cfg.MongoDB.URI)
	if err != nil {
		return fail(env, "capture", err)
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	if err := checkChangeStreams(ctx, client, cfg.MongoDB.URI); err != nil {
		return fail(env, "capture", err)
	}

	// The trigger's own pipeline and options, without $project: the
	// recorded events are the input of the trigger's pipeline, as test
	// --event takes them, and test/validate --events apply the project.
	watched := *t
	watched.Project = nil
	// With $changeStreamSplitLargeEvent where the server has it: an event
	// over 16 MiB comes in fragments, recorded put back together, as run
	// delivers it; a server without the stage fails on such an event.
	opts := watched.ChangeStreamOptions().SetMaxAwaitTime(time.Second)
	split := true
	cs, err := watched.WatchWith(ctx, client, opts, runner.SplitLargeEventsStage())
	if runner.SplitStageRefused(err) {
		split = false
		cs, err = watched.Watch(ctx, client, opts)
	} else if err != nil {
		err = fmt.Errorf("open change stream for trigger %s: %w", t.Name, err)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ExitOK
		}
		return fail(env, "capture", err)
	}
	defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()

	var w io.Writer = env.Stdout
	dest := "standard output"
	var file *captureFile
	if *out != "" {
		if file, err = newCaptureFile(*out); err != nil {
			return fail(env, "capture", err)
		}
		defer file.Close()
		w, dest = file, *out
	}
	ns := t.Namespace()
	if ns == "" {
		ns = "the whole deployment"
	}
	fmt.Fprintf(env.Stderr, "capturing up to %s of trigger %s (%s) to %s; Ctrl-C stops\n", plural(*n, "event"), t.Name, ns, dest)
	got := 0
	var frags runner.EventAssembler
	for got < *n && cs.Next(ctx) {
		ev := cs.Current
		if split {
			if ev, _, err = frags.Add(ev); err != nil {
				return fail(env, "capture", fmt.Errorf("read change stream of trigger %s after %s: %w", t.Name, plural(got, "event"), err))
			}
			if ev == nil {
				continue // a fragment of an event not complete yet
			}
		}
		line, err := bson.MarshalExtJSON(ev, true, false)
		if err != nil {
			return fail(env, "capture", fmt.Errorf("encode event %d: %w", got+1, err))
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return fail(env, "capture", fmt.Errorf("write %s: %w", dest, err))
		}
		got++
		if op, _ := ev.Lookup("operationType").StringValueOK(); op == "invalidate" {
			fmt.Fprintf(env.Stderr, "the stream was invalidated (its collection or database was dropped or renamed): stopping\n")
			break
		}
	}
	if err := cs.Err(); err != nil && ctx.Err() == nil {
		return fail(env, "capture", fmt.Errorf("read change stream of trigger %s after %s: %w", t.Name, plural(got, "event"), err))
	}
	if file != nil && got == 0 && file.truncate {
		fmt.Fprintf(env.Stderr, "captured 0 events; %s not replaced\n", dest)
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "captured %s\n", plural(got, "event"))
	return ExitOK
}

// captureFile is capture's -o FILE, opened as os.Create would open it —
// through a symlink, a device such as /dev/stdout, a bind mount — but
// emptied only at the first write, so that a capture that records nothing
// (stopped before any event) leaves an existing FILE as it was.
type captureFile struct {
	f        *os.File
	truncate bool // an existing regular file: emptied at the first write
	written  bool
}

// newCaptureFile opens path for writing without truncating it (creating it
// when it does not exist, so that a path that cannot be written fails at
// once); a path naming one of this process's descriptors (/dev/stdout) is
// written through that descriptor (openDescriptorPath).
func newCaptureFile(path string) (*captureFile, error) {
	if f, ok, err := openDescriptorPath(path); ok {
		// The shell's own redirection (-o /dev/stdout): written where it
		// points, never emptied.
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
		return &captureFile{f: f}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o666)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &captureFile{f: f, truncate: fi.Mode().IsRegular() && fi.Size() > 0}, nil
}

// Write writes p, emptying the file first the first time.
func (c *captureFile) Write(p []byte) (int, error) {
	if !c.written {
		c.written = true
		if c.truncate {
			if err := c.f.Truncate(0); err != nil {
				return 0, err
			}
		}
	}
	return c.f.Write(p)
}

// Close closes the file.
func (c *captureFile) Close() error { return c.f.Close() }

// eventOutcome is what one trigger does with one recorded event.
type eventOutcome struct {
	matched bool
	// undecided names the match conditions left to MongoDB when matched
	// only means that the others are true (see matchResult).
	undecided string
	reason    string // why it matched or not
	event     bson.D // after the trigger's pipeline, when matched
	body      []byte // the request body, when matched and built
	gaps      payloadGaps
	err       error // the pipeline or the payload failed
}

// evaluateEvent runs t on one recorded change event as run would: the
// namespace the stream watches, the compiled pipeline, then the payload and
// format.
func evaluateEvent(t *triggers.Trigger, event bson.D) eventOutcome {
	if why := outsideNamespace(t, event); why != "" {
		return eventOutcome{reason: why}
	}
	res, err := evaluate(t, event)
	if err != nil {
		return eventOutcome{err: err}
	}
	if !res.matched {
		return eventOutcome{reason: res.reason}
	}
	o := eventOutcome{matched: true, undecided: res.undecided, reason: res.reason, event: res.event}
	if op, _ := mql.Lookup(event, "operationType").(string); op == "invalidate" {
		return o
	}
	raw, err := bson.Marshal(res.event)
	if err != nil {
		o.err = fmt.Errorf("encode event: %w", err)
		return o
	}
	token, err := bson.Raw(raw).LookupErr("_id")
	if err != nil {
		o.err = errors.New("the event has no _id (its resume token): record events with changehook capture")
		return o
	}
	msg, err := dispatcher.BuildMessage(t.Name, t.Webhook, dispatcher.Event{Raw: raw, Token: token.Value})
	if err != nil {
		o.err = err // BuildPayload's errors say "build payload:"
		return o
	}
	o.body = msg.Body
	o.gaps = findPayloadGaps(t, res.event)
	return o
}

// outsideNamespace says why event is not one the trigger's stream would
// see (another database or collection), or "".
func outsideNamespace(t *triggers.Trigger, event bson.D) string {
	if t.Database == "" {
		return ""
	}
	db, _ := mql.Lookup(event, "ns.db").(string)
	coll, _ := mql.Lookup(event, "ns.coll").(string)
	if db != t.Database || (t.Collection != "" && coll != t.Collection) {
		got := db
		if coll != "" {
			got += "." + coll
		}
		return fmt.Sprintf("the event is from %s, the trigger watches %s", got, t.Namespace())
	}
	return ""
}

// recordedEvent is one line of an events file.
type recordedEvent struct {
	line  int
	event bson.D
	err   error // the line is not an Extended JSON document, or not a change event
}

// notChangeEvent returns why event cannot be a change event, nil when it
// can: every change event has an operationType string and an _id, its
// resume token (a document such as {"_data": "82…"}). The documentKey is
// not required: drop, rename, dropDatabase and invalidate events have
// none. The usual mistake, passing the changed document itself, gets a
// hint.
func notChangeEvent(event bson.D) error {
	const hint = "did you pass the document? `changehook capture` records change events"
	var why string
	switch op := mql.Lookup(event, "operationType"); {
	case mql.IsMissing(op):
		why = "it has no operationType"
	case op == "":
		why = "its operationType is empty"
	default:
		if _, ok := op.(string); !ok {
			why = "its operationType is " + oneLine(extJSONValue(op), 60) + ", not a string"
		}
	}
	if why == "" {
		switch id := mql.Lookup(event, "_id"); {
		case mql.IsMissing(id):
			why = "it has no _id (its resume token)"
		default:
			if _, ok := id.(bson.D); !ok {
				why = "its _id is " + oneLine(extJSONValue(id), 60) + `, not a resume token such as {"_data": "82…"}`
			}
		}
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("not a change event: %s; %s", why, hint)
}

// readEvents calls f for every non-blank line of the events file path ("-":
// standard input), in order, parsed as an Extended JSON document and
// checked to be a change event (notChangeEvent). A line is at most
// maxEventBytes long.
func readEvents(path string, env Env, f func(recordedEvent)) error {
	var r io.Reader
	if path == "-" {
		r = env.stdin()
	} else {
		file, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		defer file.Close()
		r = file
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxEventBytes+1)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var ev bson.D
		if err := bson.UnmarshalExtJSON([]byte(text), false, &ev); err != nil {
			f(recordedEvent{line: line, err: fmt.Errorf("not an Extended JSON document: %w", err)})
			continue
		}
		if err := notChangeEvent(ev); err != nil {
			f(recordedEvent{line: line, err: err})
			continue
		}
		f(recordedEvent{line: line, event: ev})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("read events %s: line %d is longer than %d bytes", path, line+1, maxEventBytes)
		}
		return fmt.Errorf("read events %s: %w", path, err)
	}
	return nil
}

// eventLabel describes a recorded event briefly: its operation, namespace
// and document key.
func eventLabel(event bson.D) string {
	op, _ := mql.Lookup(event, "operationType").(string)
	label := op
	if db, ok := mql.Lookup(event, "ns.db").(string); ok {
		if coll, ok := mql.Lookup(event, "ns.coll").(string); ok {
			db += "." + coll
		}
		label += " " + db
	}
	if k := mql.Lookup(event, "documentKey"); !mql.IsMissing(k) {
		label += " " + oneLine(extJSONValue(k), 120)
	}
	return strings.TrimSpace(label)
}

// validateEvents evaluates every trigger of cfg on every event of path and
// prints one line per event and trigger. It returns ExitFailure when a
// line is not an event, or a trigger's pipeline or payload fails on one.
func validateEvents(cfg *triggers.Config, path string, env Env) int {
	events, matched, failures := 0, 0, 0
	err := readEvents(path, env, func(re recordedEvent) {
		events++
		if re.err != nil {
			failures++
			fmt.Fprintf(env.Stdout, "%s:%d: %v\n", path, re.line, re.err)
			return
		}
		label := eventLabel(re.event)
		for _, t := range cfg.Triggers {
			name := t.Name
			if !t.Enabled {
				name += " (disabled)"
			}
			o := evaluateEvent(t, re.event)
			if o.matched {
				matched++ // a payload that then failed too: an error as well
			}
			verdict := "matched"
			if o.undecided != "" {
				verdict = "matched if MongoDB finds " + oneLine(o.undecided, 200) + " true (changehook cannot evaluate it)"
			}
			switch {
			case o.err != nil:
				failures++
				fmt.Fprintf(env.Stdout, "%s:%d: %s: %s: ERROR: %v\n", path, re.line, label, name, o.err)
			case o.matched && !o.gaps.empty():
				fmt.Fprintf(env.Stdout, "%s:%d: %s: %s: %s, payload ok (%d bytes), but %s\n", path, re.line, label, name, verdict, len(o.body), o.gaps.short())
			case o.matched:
				fmt.Fprintf(env.Stdout, "%s:%d: %s: %s: %s, payload ok (%d bytes)\n", path, re.line, label, name, verdict, len(o.body))
			default:
				fmt.Fprintf(env.Stdout, "%s:%d: %s: %s: no match — %s\n", path, re.line, label, name, o.reason)
			}
		}
	})
	if err != nil {
		return fail(env, "validate", err)
	}
	fmt.Fprintf(env.Stderr, "%s: %s, %s, %s\n", path, plural(events, "event"), matchCount(matched), plural(failures, "error"))
	if events == 0 {
		fmt.Fprintf(env.Stderr, "%s has no events: record some with changehook capture NAME -o %s\n", path, path)
		return ExitFailure
	}
	if failures > 0 {
		return ExitFailure
	}
	return ExitOK
}

// matchCount says "1 trigger match" or "N trigger matches".
func matchCount(n int) string {
	if n == 1 {
		return "1 trigger match"
	}
	return fmt.Sprintf("%d trigger matches", n)
}

// testEvents shows what t does with every event of path: the match and its
// reason, and the exact body or the error. It returns ExitFailure when a
// line is not an event or the pipeline or payload fails on one.
func testEvents(t *triggers.Trigger, path string, env Env) int {
	w := env.Stdout
	events, failures := 0, 0
	err := readEvents(path, env, func(re recordedEvent) {
		if events > 0 {
			fmt.Fprintln(w)
		}
		events++
		if re.err != nil {
			failures++
			fmt.Fprintf(w, "%s:%d: %v\n", path, re.line, re.err)
			return
		}
		fmt.Fprintf(w, "%s:%d: %s\n", path, re.line, eventLabel(re.event))
		o := evaluateEvent(t, re.event)
		verdict := "yes"
		if o.undecided != "" {
			verdict = "undecided"
		}
		switch {
		case o.err != nil && !o.matched:
			failures++
			fmt.Fprintf(w, "  match:   ERROR: %v\n", o.err)
		case !o.matched:
			fmt.Fprintf(w, "  match:   no — %s\n", o.reason)
		case o.err != nil:
			failures++
			fmt.Fprintf(w, "  match:   %s — %s\n  payload: ERROR: %v\n", verdict, o.reason, o.err)
		case o.body == nil:
			fmt.Fprintf(w, "  match:   %s — %s\n", verdict, o.reason)
		default:
			fmt.Fprintf(w, "  match:   %s — %s\n  body (%d bytes): %s\n", verdict, o.reason, len(o.body), o.body)
		}
	})
	if err != nil {
		return fail(env, "test", err)
	}
	fmt.Fprintf(env.Stderr, "%s: %s, %s\n", path, plural(events, "event"), plural(failures, "error"))
	if failures > 0 {
		return ExitFailure
	}
	return ExitOK
}
