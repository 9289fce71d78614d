// Command pipelines shows triggers that watch a whole database and a whole
// deployment, a match on the changed document, $project and $addFields
// applied to the event, and resuming: the runner is stopped, writes happen
// while it is down, and a new runner resumes from the saved resume tokens,
// delivering exactly the missed changes. Finally a plain driver change
// stream resumes from the token found in a webhook body.
//
//	go run ./test/e2e/scenarios/pipelines [-v]
package main

import (
	"context"
	_ "embed"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/test/e2e/scenarios/internal/scenarioutil"
	"github.com/changehook/changehook/triggers"
)

//go:embed triggers.yaml
var triggersYAML []byte

// The triggers of triggers.yaml and where they post.
const (
	aliceTrigger   = "alice_activity"
	insertsTrigger = "all_inserts"
	alicePath      = "/hooks/alice"
	insertsPath    = "/hooks/inserts"
)

// waitTimeout bounds each wait for deliveries.
const waitTimeout = 30 * time.Second

func main() {
	verbose := flag.Bool("v", false, "show the runner's logs")
	flag.Parse()
	os.Exit(scenarioutil.Main(func(ctx context.Context) error {
		_, err := run(ctx, os.Stdout, scenarioutil.Logger(os.Stderr, *verbose))
		return err
	}))
}

// write is one insert or update of the scenario.
type write struct {
	DB, Coll string
	ID       string
	Doc      bson.D // inserted document, or the $set of an update
	Update   bool
}

func (w write) String() string {
	verb := "insert"
	if w.Update {
		verb = "update"
	}
	b, _ := bson.MarshalExtJSON(w.Doc, false, false)
	return fmt.Sprintf("%s %s.%s _id=%s %s", verb, w.DB, w.Coll, w.ID, b)
}

func (w write) apply(ctx context.Context, client *mongo.Client) error {
	coll := client.Database(w.DB).Collection(w.Coll)
	var err error
	if w.Update {
		_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: w.ID}}, bson.D{{Key: "$set", Value: w.Doc}})
	} else {
		_, err = coll.InsertOne(ctx, append(bson.D{{Key: "_id", Value: w.ID}}, w.Doc...))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", w, err)
	}
	return nil
}

// firstWrites happen while the runner runs; laterWrites while it is stopped.
func firstWrites() []write {
	return []write{
		{DB: "app", Coll: "users", ID: "u1", Doc: scenarioutil.Doc("username", "alice", "a", int32(1), "b", int32(2))},
		{DB: "app", Coll: "users", ID: "u2", Doc: scenarioutil.Doc("username", "bob", "a", int32(3), "b", int32(4))},
		{DB: "app", Coll: "orders", ID: "o1", Doc: scenarioutil.Doc("username", "alice", "a", int32(5), "b", int32(6))},
		{DB: "billing", Coll: "invoices", ID: "i1", Doc: scenarioutil.Doc("username", "alice", "total", 42.5)},
		{DB: "app", Coll: "users", ID: "u1", Update: true, Doc: scenarioutil.Doc("a", int32(10))},
	}
}

func laterWrites() []write {
	return []write{
		{DB: "app", Coll: "users", ID: "u1", Update: true, Doc: scenarioutil.Doc("b", int32(20))},
		{DB: "app", Coll: "users", ID: "u2", Update: true, Doc: scenarioutil.Doc("a", int32(30))},
		{DB: "billing", Coll: "invoices", ID: "i2", Doc: scenarioutil.Doc("username", "bob", "total", 7.25)},
		{DB: "app", Coll: "orders", ID: "o2", Doc: scenarioutil.Doc("username", "alice", "a", int32(7), "b", int32(8))},
	}
}

// phase is what the receiver got while one runner ran.
type phase struct {
	Alice   []scenarioutil.Delivery
	Inserts []scenarioutil.Delivery
}

// result is what a run observed.
type result struct {
	First, Second phase
	Checkpoints   []store.Checkpoint // saved when the first runner stopped
	Resumed       []bson.Raw         // a driver stream resumed from a webhook body's token
	All           []scenarioutil.Delivery
}

func run(ctx context.Context, out io.Writer, logger *slog.Logger) (res result, err error) {
	db, err := scenarioutil.StartDB(ctx, devdb.Options{})
	if err != nil {
		return res, err
	}
	defer scenarioutil.CloseOnExit(ctx, db, &err)
	cfg, recv, err := scenarioutil.StartConfigured("triggers.yaml", triggersYAML, db.URI(), func(base string) map[string]string {
		return map[string]string{"ALICE_HOOK_URL": base + alicePath, "INSERTS_HOOK_URL": base + insertsPath}
	}, scenarioutil.ReceiverOptions{})
	if err != nil {
		return res, err
	}
	defer scenarioutil.CloseOnExit(ctx, recv, &err)
	base := recv.URL()
	wctx, cancel := context.WithTimeout(ctx, 4*waitTimeout)
	defer cancel()

	// Phase 1: the runner runs while we write.
	fmt.Fprintf(out, "devdb %s; receiver %s\n\n== runner started\n", db.URI(), base)
	res.First, err = runPhase(wctx, out, cfg, db, recv, logger, firstWrites(), phase{}, 3, 4)
	if err != nil {
		return res, err
	}
	res.Checkpoints, err = store.New(db.Client, cfg.State.Database).ListCheckpoints(wctx)
	if err != nil {
		return res, fmt.Errorf("list checkpoints: %w", err)
	}
	fmt.Fprintf(out, "== runner stopped; saved checkpoints (%s.%s):\n", cfg.State.Database, store.CheckpointsCollection)
	for _, cp := range res.Checkpoints {
		fmt.Fprintf(out, "  %-15s token %s  clusterTime %d.%d\n", cp.Trigger, tokenData(cp.Token), cp.ClusterTime.T, cp.ClusterTime.I)
	}

	// Phase 2: write while no runner runs, then start a new one.
	fmt.Fprintln(out, "\n== writes while the runner is down:")
	for _, w := range laterWrites() {
		if err := w.apply(wctx, db.Client); err != nil {
			return res, err
		}
		fmt.Fprintf(out, "  %s\n", w)
	}
	fmt.Fprintln(out, "\n== runner restarted: it resumes after its checkpoints")
	res.Second, err = runPhase(wctx, out, cfg, db, recv, logger, nil, res.First, 2, 2)
	if err != nil {
		return res, err
	}

	// Any consumer can resume from the _id of a webhook body the same way.
	token, err := bodyToken(res.First.Alice[len(res.First.Alice)-1])
	if err != nil {
		return res, err
	}
	res.Resumed, err = resumeFrom(wctx, db.Client, token, len(res.Second.Alice))
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "\n== a plain driver stream on database app with $match {fullDocument.username: alice},\n"+
		"   resumed after the token %s of the last body alice_activity got before the stop, returns:\n", tokenData(token))
	for _, ev := range res.Resumed {
		fmt.Fprintf(out, "  %s %s\n", lookupString(ev, "operationType"), lookupString(ev, "documentKey", "_id"))
	}
	res.All = recv.Deliveries().Snapshot()
	return res, nil
}

// runPhase starts a runner, applies writes, waits until each trigger got
// wantAlice and wantInserts more deliveries than in before, prints them and
// stops the runner (which saves its checkpoints).
func runPhase(ctx context.Context, out io.Writer, cfg *triggers.Config, db *scenarioutil.DB, recv *scenarioutil.Receiver,
	logger *slog.Logger, writes []write, before phase, wantAlice, wantInserts int) (phase, error) {
	runner, err := scenarioutil.StartRunner(ctx, cfg, db.Client, scenarioutil.RunnerOptions{Logger: logger})
	if err != nil {
		return phase{}, err
	}
	defer runner.Stop()
	if err := runner.WaitReady(ctx); err != nil {
		return phase{}, err
	}
	for _, w := range writes {
		if err := w.apply(ctx, db.Client); err != nil {
			return phase{}, err
		}
		fmt.Fprintf(out, "  %s\n", w)
	}
	var p phase
	alice, err := recv.Deliveries().WaitMatching(ctx, scenarioutil.ForTrigger(aliceTrigger), len(before.Alice)+wantAlice)
	if err != nil {
		return p, fmt.Errorf("wait for %s: %w", aliceTrigger, err)
	}
	inserts, err := recv.Deliveries().WaitMatching(ctx, scenarioutil.ForTrigger(insertsTrigger), len(before.Inserts)+wantInserts)
	if err != nil {
		return p, fmt.Errorf("wait for %s: %w", insertsTrigger, err)
	}
	p.Alice, p.Inserts = alice[len(before.Alice):], inserts[len(before.Inserts):]
	for _, d := range p.Alice {
		fmt.Fprintf(out, "%s got %s\n", aliceTrigger, d.Body)
	}
	for _, d := range p.Inserts {
		fmt.Fprintf(out, "%s got %s\n", insertsTrigger, d.Body)
	}
	return p, nil
}

// bodyToken returns the resume token (_id) of a delivered event.
func bodyToken(d scenarioutil.Delivery) (bson.Raw, error) {
	ev, err := d.Decode()
	if err != nil {
		return nil, err
	}
	for _, e := range ev {
		if e.Key == "_id" {
			raw, err := bson.Marshal(e.Value)
			if err != nil {
				return nil, fmt.Errorf("encode resume token: %w", err)
			}
			return raw, nil
		}
	}
	return nil, fmt.Errorf("delivery %s has no _id", d.ID)
}

// resumeFrom opens a change stream on the app database resumed after token,
// with the alice_activity match, and reads n events.
func resumeFrom(ctx context.Context, client *mongo.Client, token bson.Raw, n int) ([]bson.Raw, error) {
	pipeline := mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "fullDocument.username", Value: "alice"}}}}}
	cs, err := client.Database("app").Watch(ctx, pipeline,
		options.ChangeStream().SetResumeAfter(token).SetFullDocument(options.UpdateLookup))
	if err != nil {
		return nil, fmt.Errorf("resume a change stream: %w", err)
	}
	defer func() {
		cctx, cancel := scenarioutil.CloseContext(ctx)
		defer cancel()
		_ = cs.Close(cctx)
	}()
	var evs []bson.Raw
	for len(evs) < n && cs.Next(ctx) {
		evs = append(evs, append(bson.Raw(nil), cs.Current...))
	}
	if len(evs) < n {
		return evs, fmt.Errorf("read the resumed change stream: got %d of %d events: %w", len(evs), n, cs.Err())
	}
	return evs, nil
}

// tokenData returns the _data of a resume token, shortened for printing.
func tokenData(token bson.Raw) string {
	s, ok := token.Lookup("_data").StringValueOK()
	if !ok {
		return hex.EncodeToString(token)
	}
	if len(s) > 24 {
		return s[:24] + "…"
	}
	return s
}

// lookupString returns the string or Extended JSON form of a field.
func lookupString(ev bson.Raw, path ...string) string {
	v, err := ev.LookupErr(path...)
	if err != nil {
		return "<missing>"
	}
	if s, ok := v.StringValueOK(); ok {
		return s
	}
	return v.String()
}
