package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"gopkg.in/yaml.v3"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/demo"
	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/internal/version"
	"github.com/changehook/changehook/triggers"
)

// maxEventBytes bounds the event file read by test (and a line of an
// events file): a trigger delivers change events larger than 16 MiB,
// reassembled from up to 8 fragments of 16 MiB, so an event as a receiver
// got it may be 128 MiB and its Extended JSON more.
const maxEventBytes = 256 << 20

func testCommand(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "test", "test [-c FILE] --trigger NAME (--event EVENT.json [--send] | --events FILE)",
		"changehook test --trigger low_stock --event event.json          # does it match, what would be sent",
		"changehook test --trigger low_stock --event event.json --send   # deliver it once (with retries)",
		"cat event.json | changehook test --trigger low_stock --event -",
		"changehook test --trigger low_stock --events events.jsonl     # every event recorded by changehook capture",
		"",
		"The exit code is 0 whether or not the event matches; 1 when the payload fails or --send fails,",
		"and when the file is not a change event (an operationType and an _id, its resume token: not the document).",
		"Without -c and without ./triggers.yaml, the configuration of a running 'changehook dev' is used.",
		"--events FILE takes one change event a line and prints, per event, the match and the body or the error.",
		"",
		"EVENT.json is a change event in Extended JSON, as a change stream returns it, e.g.",
		`{"_id": {"_data": "8263..."}, "operationType": "update", "ns": {"db": "lessons", "coll": "inventory"},`,
		` "documentKey": {"_id": "apples"}, "fullDocument": {"_id": "apples", "type": "apples", "quantity": 12}}`)
	path := configFlag(fs)
	name := fs.String("trigger", "", "trigger `name` (may be omitted when the file has one trigger)")
	eventFile := fs.String("event", "", "change event `file` in Extended JSON (\"-\": standard input)")
	eventsFile := fs.String("events", "", "`file` of change events, one Extended JSON document a line, as changehook capture writes (\"-\": standard input)")
	send := fs.Bool("send", false, "deliver the event to the webhook once, with the trigger's retry policy, and print the result")
	if code, done := parseFlags(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, "unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *eventFile != "" && *eventsFile != "":
		return usageError(env, fs, "--event and --events exclude each other")
	case *eventsFile != "" && *send:
		return usageError(env, fs, "--send takes one --event, not --events")
	case *eventFile == "" && *eventsFile == "":
		return usageError(env, fs, "--event or --events is required")
	}
	cfg, err := fileConfig(fs, *path, env)
	if err != nil && !*send {
		cfg, err = otherTriggersUnset(fs, *path, env, *name, err)
	}
	if err != nil {
		return fail(env, "test", err)
	}
	t, err := findTrigger(cfg, *name)
	if err != nil {
		return usageError(env, fs, "%v", err)
	}
	if *eventsFile != "" {
		return testEvents(t, *eventsFile, env)
	}
	data, err := readEvent(*eventFile, env)
	if err != nil {
		return fail(env, "test", err)
	}
	var event bson.D
	if err := bson.UnmarshalExtJSON(data, false, &event); err != nil {
		return fail(env, "test", fmt.Errorf("read event %s: not an Extended JSON document: %w", *eventFile, err))
	}
	if err := notChangeEvent(event); err != nil {
		return fail(env, "test", fmt.Errorf("read event %s: %w", *eventFile, err))
	}
	res, err := evaluate(t, event)
	if err != nil {
		return fail(env, "test", err)
	}
	w := env.Stdout
	if !res.matched {
		fmt.Fprintf(w, "match:    no — %s\n", res.reason)
		if *send {
			fmt.Fprintln(w, "not sent: the trigger would not deliver this event")
		}
		return ExitOK
	}
	fmt.Fprintf(w, "match:    %s — %s\n", res.verdict(), res.reason)
	fmt.Fprintf(w, "\nevent after the trigger's pipeline:\n%s\n", extJSONIndent(res.event))

	raw, err := bson.Marshal(res.event)
	if err != nil {
		return fail(env, "test", fmt.Errorf("encode event: %w", err))
	}
	token, err := bson.Raw(raw).LookupErr("_id")
	if err != nil {
		return fail(env, "test", errors.New("the event has no _id (its resume token): copy a real change event, _id included"))
	}
	ev := dispatcher.Event{Raw: raw, Token: token.Value}
	var msg dispatcher.Message
	if t.Batch != nil {
		msg, err = dispatcher.BuildBatchMessage(t.Name, t.Webhook, []dispatcher.Event{ev})
	} else {
		msg, err = dispatcher.BuildMessage(t.Name, t.Webhook, ev)
	}
	if err != nil {
		return fail(env, "test", err) // BuildPayload's errors say "build payload:"
	}
	id, payload := msg.ID, msg.Body
	fmt.Fprintf(w, "\nrequest:  %s %s\n", t.Webhook.Method, t.Webhook.RedactedURL())
	if t.Batch != nil {
		fmt.Fprintf(w, "          a batch of this one event: the trigger's requests carry a JSON array of up to %d events\n", t.Batch.MaxEvents)
	}
	writeHeaders(w, t, env.Version, id, payload, msg.Header)
	fmt.Fprintf(w, "\nbody (exact bytes, %d):\n%s\n", len(payload), payload)
	if g := findPayloadGaps(t, res.event); !g.empty() {
		fmt.Fprintf(w, "\nnote:     %s\n", g.sentence())
	}
	if !*send {
		return ExitOK
	}
	return sendOnce(ctx, env, t, ev)
}

// matchResult is what the trigger's pipeline does with an event.
type matchResult struct {
	matched bool
	reason  string
	event   bson.D // after $project
	// undecided is set when matched only means that the conditions of the
	// match changehook can evaluate are true: it names the ones it cannot
	// (an operator only MongoDB evaluates, such as $geoWithin).
	undecided string
}

// evaluate runs the trigger's compiled pipeline (the stages the server runs
// after $changeStream) on event with mql, and explains the outcome. A match
// whose top-level conditions use an operator mql does not evaluate
// ($geoWithin, $geoIntersects, $sampleRate) is decided by its other
// conditions: a false one is no match; else the event goes through the rest
// of the pipeline as if it matched, with undecided naming the conditions
// left to MongoDB.
func evaluate(t *triggers.Trigger, event bson.D) (matchResult, error) {
	var stages []bson.D
	for _, s := range t.Pipeline() {
		d, ok := s.(bson.D)
		if !ok {
			return matchResult{}, fmt.Errorf("compile trigger %s: unexpected stage %T", t.Name, s)
		}
		stages = append(stages, d)
	}
	p, err := mql.CompilePipeline(stages)
	var ue *mql.UnevaluatedError
	if errors.As(err, &ue) {
		return evaluateDecidable(t, event, ue.Operator)
	}
	if err != nil {
		return matchResult{}, fmt.Errorf("compile trigger %s: %w", t.Name, err)
	}
	out, keep, err := p.ApplyOne(event)
	if err != nil {
		return matchResult{}, fmt.Errorf("run trigger %s on the event: %w", t.Name, err)
	}
	op, _ := mql.Lookup(event, "operationType").(string)
	if !keep {
		return matchResult{reason: whyNot(t, event, op)}, nil
	}
	if op == "invalidate" {
		return matchResult{matched: true, event: out, reason: "an invalidate always reaches the watch loop (it ends the stream and fails the trigger; it is not delivered)"}, nil
	}
	reason := fmt.Sprintf("operationType %q is one of [%s]", op, strings.Join(t.Operations, ", "))
	if t.Match != nil {
		reason += " and the match filter " + extJSON(t.Match) + " is true"
	}
	return matchResult{matched: true, event: out, reason: reason}, nil
}

// verdict is "yes" for a match, "undecided" when the conditions left to
// MongoDB decide it, "no" otherwise.
func (r matchResult) verdict() string {
	switch {
	case r.undecided != "":
		return "undecided"
	case r.matched:
		return "yes"
	}
	return "no"
}

// evaluateDecidable is evaluate for a trigger whose match uses op, an
// operator mql does not evaluate: it evaluates the match without its
// top-level conditions that use one, and says which were left out.
func evaluateDecidable(t *triggers.Trigger, event bson.D, op string) (matchResult, error) {
	var kept, left bson.D
	for _, e := range t.Match {
		var ue *mql.UnevaluatedError
		if _, err := mql.CompileFilter(bson.D{e}); errors.As(err, &ue) {
			left = append(left, e)
			continue
		}
		kept = append(kept, e)
	}
	cannot := fmt.Sprintf("changehook cannot evaluate %s locally (MongoDB evaluates the match on its server; devdb does not either)", op)
	if len(left) == 0 {
		// Inside $and, $or, $nor, $not or $elemMatch: not a condition
		// that can be set aside.
		return matchResult{}, fmt.Errorf("run trigger %s on the event: %s, so whether the event matches the filter %s cannot be told here",
			t.Name, cannot, extJSON(t.Match))
	}
	local := *t
	local.Match = kept
	res, err := evaluate(&local, event)
	if err != nil || !res.matched || mql.Lookup(event, "operationType") == "invalidate" {
		return res, err
	}
	res.undecided = extJSON(left)
	res.reason = fmt.Sprintf("%s: %s is left to MongoDB; %s, so the event is shown as it is sent if MongoDB finds that true",
		cannot, res.undecided, res.reason)
	return res, nil
}

// whyNot explains why event does not pass the trigger's filter: the
// operation type, or the top-level conditions of the match that are false.
func whyNot(t *triggers.Trigger, event bson.D, op string) string {
	if !slices.Contains(t.Operations, op) {
		if op == "" {
			return "the event has no operationType"
		}
		return fmt.Sprintf("operationType %q is not one of the trigger's operations [%s]", op, strings.Join(t.Operations, ", "))
	}
	var failed []string
	for _, e := range t.Match {
		f, err := mql.CompileFilter(bson.D{e})
		if err != nil {
			continue
		}
		if ok, err := f.MatchErr(event); err == nil && ok {
			continue
		}
		cond := extJSON(bson.D{e})
		if !strings.HasPrefix(e.Key, "$") {
			v := mql.Lookup(event, e.Key)
			if mql.IsMissing(v) {
				cond += fmt.Sprintf(" (%s is missing from the event)", e.Key)
			} else {
				cond += fmt.Sprintf(" (%s is %s)", e.Key, extJSONValue(v))
			}
		}
		failed = append(failed, cond)
	}
	if len(failed) == 0 {
		return "the match filter " + extJSON(t.Match) + " is false"
	}
	return "false in the match filter: " + strings.Join(failed, "; ")
}

// extJSONValue renders one value as relaxed Extended JSON.
func extJSONValue(v any) string {
	s := extJSON(bson.D{{Key: "v", Value: v}})
	s = strings.TrimPrefix(s, `{"v":`)
	return strings.TrimSuffix(s, "}")
}

// writeHeaders prints the request headers as the dispatcher would send
// them, configured header values and the credentials of webhook.auth and of
// the URL's userinfo masked.
func writeHeaders(w io.Writer, t *triggers.Trigger, ver, id string, payload []byte, extra http.Header) {
	h := http.Header{}
	for k := range t.Webhook.Headers {
		h.Set(k, triggers.RedactedMask)
	}
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", version.UserAgent(ver))
	}
	switch k := t.Webhook.Auth.Kind(); k {
	case "basic", "bearer":
		h.Set("Authorization", triggers.RedactedMask+"   (webhook.auth."+k+")")
	case "oauth2_client_credentials":
		h.Set("Authorization", "Bearer "+triggers.RedactedMask+"   (an OAuth2 access token, requested when sent)")
	}
	if u, err := url.Parse(t.Webhook.URL); err == nil && u.User != nil && h.Get("Authorization") == "" {
		// As net/http sends it: Basic credentials from the userinfo,
		// unless the request has an Authorization of its own.
		h.Set("Authorization", triggers.RedactedMask+"   (the URL's user:password)")
	}
	h.Set("Content-Type", "application/json")
	if t.Webhook.Format == triggers.FormatCloudEvents {
		h.Set("Content-Type", dispatcher.ContentTypeCloudEventsJSON)
	}
	for k, v := range extra {
		h[k] = v // the message's own: CloudEvents binary attributes, a batch's Content-Type; not secret
	}
	h.Set("X-Changehook-Trigger", t.Name)
	h.Set("webhook-id", id)
	now := time.Now()
	h.Set("webhook-timestamp", fmt.Sprint(now.Unix()))
	if len(t.Webhook.Secrets) > 0 {
		if sig, err := dispatcher.Sign(t.Webhook.SigningKeys(), id, now, payload); err == nil {
			h.Set("webhook-signature", sig+"   (changes with webhook-timestamp)")
		}
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, h.Get(k))
	}
}

// sendOnce delivers ev through the trigger's retry policy (at most its
// max_attempts attempts) and prints the outcome. Nothing is dead-lettered or
// checkpointed.
func sendOnce(ctx context.Context, env Env, t *triggers.Trigger, ev dispatcher.Event) int {
	s, err := newSender(t, env, dispatcher.WithObserver(func(a dispatcher.Attempt) {
		printAttempt(env.Stdout, a, t.Retry.MaxAttempts)
	}))
	if err != nil {
		return fail(env, "test", err)
	}
	fmt.Fprintf(env.Stdout, "\nsending (up to %s)...\n", plural(t.Retry.MaxAttempts, "attempt"))
	var res dispatcher.Result
	if t.Batch != nil {
		res, err = s.DeliverBatch(ctx, []dispatcher.Event{ev})
	} else {
		res, err = s.Deliver(ctx, ev)
	}
	printResult(env.Stdout, res, err)
	if err != nil {
		return ExitFailure
	}
	return ExitOK
}

// printAttempt prints one delivery attempt of at most maxAttempts as it
// ends: its number, the status or failure reason, the latency and, for a
// failure, whether another attempt follows, the error (whose text never
// contains secrets) and the start of the response body.
func printAttempt(w io.Writer, a dispatcher.Attempt, maxAttempts int) {
	lat := a.Latency.Round(time.Millisecond)
	if a.Err == nil {
		fmt.Fprintf(w, "  attempt %d: HTTP %d in %s\n", a.Number, a.Status, lat)
		return
	}
	status := "no response"
	if a.Status != 0 {
		status = fmt.Sprintf("HTTP %d", a.Status)
	}
	next := "permanent, no retry"
	switch {
	case a.Retry && a.Number >= maxAttempts:
		next = fmt.Sprintf("no attempts left (retry.max_attempts: %d)", maxAttempts)
	case a.Retry:
		next = "will retry"
	}
	fmt.Fprintf(w, "  attempt %d: %s (%s) in %s, %s: %s\n", a.Number, status, a.Reason, lat, next, textcut.Terminal(a.Err.Error()))
	if a.Body != "" {
		fmt.Fprintf(w, "    response body: %s\n", oneLine(a.Body, 200))
	}
}

// printResult prints the outcome of a delivery.
func printResult(w io.Writer, res dispatcher.Result, err error) {
	if err == nil {
		fmt.Fprintf(w, "delivered: HTTP %d after %s (webhook-id %s)\n", res.Status, plural(res.Attempts, "attempt"), res.WebhookID)
		return
	}
	status := "no response"
	if res.Status != 0 {
		status = fmt.Sprintf("HTTP %d", res.Status)
	}
	fmt.Fprintf(w, "FAILED after %s: %s (%s): %v\n", plural(res.Attempts, "attempt"), status, res.Reason, err)
	if res.Body != "" {
		fmt.Fprintf(w, "  response body: %s\n", oneLine(res.Body, 300))
	}
}

// oneLine shortens s to n bytes on one line.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = textcut.UTF8(s, n) + "…"
	}
	return textcut.Terminal(s)
}

// newSender returns the Sender of t for a one-off delivery from the command
// line (a test send or a dead-letter replay).
func newSender(t *triggers.Trigger, env Env, opts ...dispatcher.Option) (*dispatcher.Sender, error) {
	s, err := dispatcher.NewSender(t, append([]dispatcher.Option{dispatcher.WithUserAgent(version.UserAgent(env.Version))}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("prepare delivery: %w", err)
	}
	return s, nil
}

// otherTriggersUnset handles test without --send when the file was
// refused (strictErr): when every problem is a ${VAR} naming an unset
// variable in the webhook of a trigger other than name (test sends
// nothing, so those are not needed, as for the state commands), it returns
// the configuration read with those fields left unset, saying so on
// stderr; otherwise strictErr.
func otherTriggersUnset(fs *flag.FlagSet, path string, env Env, name string, strictErr error) (*triggers.Config, error) {
	var ve *triggers.ValidationError
	if !errors.As(strictErr, &ve) {
		return nil, strictErr
	}
	quiet := env
	quiet.Stderr = io.Discard // fileConfigDev said which file once already
	cfg, err := fileConfigWith(fs, path, quiet, triggers.Options{IgnoreUnsetWebhookVars: true})
	if err != nil {
		return nil, strictErr
	}
	t, err := findTrigger(cfg, name)
	if err != nil {
		return nil, strictErr
	}
	items, err := triggerItems(cfg)
	if err != nil {
		return nil, strictErr
	}
	own := slices.IndexFunc(items, func(it itemRange) bool { return it.start == [2]int{t.Pos.Line, t.Pos.Col} })
	if own < 0 {
		return nil, strictErr // an alias: its fields are another item's
	}
	for _, p := range ve.Problems {
		at := [2]int{p.Pos.Line, p.Pos.Col}
		i := slices.IndexFunc(items, func(it itemRange) bool { return !posLess(at, it.start) && posLess(at, it.end) })
		if i < 0 || i == own {
			return nil, strictErr
		}
	}
	fmt.Fprintf(env.Stderr, "note: %s of other triggers' webhooks name unset variables; test sends nothing, so they are left unset\n",
		plural(len(ve.Problems), "${VAR}"))
	return cfg, nil
}

// itemRange is where an item of the triggers list is in the file: from
// start (line, column) to before end.
type itemRange struct{ start, end [2]int }

// posLess orders (line, column) positions.
func posLess(a, b [2]int) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// triggerItems returns the ranges of the items of cfg's file's triggers
// list: each ends where the next item, or the next top-level key, starts.
func triggerItems(cfg *triggers.Config) ([]itemRange, error) {
	data := demo.Config
	if cfg.Path != demo.ConfigName {
		var err error
		if data, err = os.ReadFile(cfg.Path); err != nil {
			return nil, err
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("read %s: %w", cfg.Path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("read %s: not a mapping", cfg.Path)
	}
	top := doc.Content[0].Content
	for i := 0; i+1 < len(top); i += 2 {
		if top[i].Value != "triggers" || top[i+1].Kind != yaml.SequenceNode {
			continue
		}
		end := [2]int{math.MaxInt, 0}
		if i+2 < len(top) {
			end = [2]int{top[i+2].Line, top[i+2].Column}
		}
		if hasAlias(top[i+1], 0) {
			// An alias or merge key copies fields written in one item into
			// another: where a problem is written says nothing of whose
			// it is.
			return nil, fmt.Errorf("read %s: the triggers list uses aliases", cfg.Path)
		}
		seq := top[i+1].Content
		items := make([]itemRange, len(seq))
		for j, it := range seq {
			items[j].start = [2]int{it.Line, it.Column}
			if j+1 < len(seq) {
				items[j].end = [2]int{seq[j+1].Line, seq[j+1].Column}
			} else {
				items[j].end = end
			}
		}
		return items, nil
	}
	return nil, fmt.Errorf("read %s: no triggers list", cfg.Path)
}

// hasAlias reports whether n or a node under it is an alias (a merge key's
// value included). The walk stops at maxAliasDepth, answering true.
func hasAlias(n *yaml.Node, depth int) bool {
	if n.Kind == yaml.AliasNode || depth > maxAliasDepth {
		return true
	}
	for _, c := range n.Content {
		if hasAlias(c, depth+1) {
			return true
		}
	}
	return false
}

// maxAliasDepth bounds hasAlias's walk, far deeper than any trigger.
const maxAliasDepth = 200

// findTrigger returns the trigger called name; "" is accepted when the file
// has exactly one trigger.
func findTrigger(cfg *triggers.Config, name string) (*triggers.Trigger, error) {
	if name == "" {
		if len(cfg.Triggers) == 1 {
			return cfg.Triggers[0], nil
		}
		return nil, fmt.Errorf("--trigger is required: %s has %d triggers (%s)", cfg.Path, len(cfg.Triggers), triggerNames(cfg))
	}
	for _, t := range cfg.Triggers {
		if t.Name == name {
			return t, nil
		}
	}
	if s := closestTrigger(cfg, name); s != "" {
		return nil, fmt.Errorf("no trigger %q in %s (did you mean %q?); triggers: %s", name, cfg.Path, s, triggerNames(cfg))
	}
	return nil, fmt.Errorf("no trigger %q in %s (triggers: %s)", name, cfg.Path, triggerNames(cfg))
}

// closestTrigger returns the name of cfg's trigger nearest to name by
// triggers.Suggest's rule, or "".
func closestTrigger(cfg *triggers.Config, name string) string {
	names := make([]string, len(cfg.Triggers))
	for i, t := range cfg.Triggers {
		names[i] = t.Name
	}
	return triggers.Suggest(name, names)
}

func triggerNames(cfg *triggers.Config) string {
	names := make([]string, len(cfg.Triggers))
	for i, t := range cfg.Triggers {
		names[i] = t.Name
	}
	return strings.Join(names, ", ")
}

// readEvent reads the event file ("-": Env.Stdin).
func readEvent(path string, env Env) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = env.stdin()
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read event: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxEventBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read event %s: %w", path, err)
	}
	if len(data) > maxEventBytes {
		return nil, fmt.Errorf("read event %s: larger than %d bytes", path, maxEventBytes)
	}
	return data, nil
}
