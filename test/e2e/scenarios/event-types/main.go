// Command event-types shows every kind of change event as a webhook
// receiver gets it: insert, update ($set/$unset), replace, delete and drop,
// printed as the relaxed Extended JSON body changehook posts. It then shows
// how a drop ends a collection trigger: the raw change stream reports
// invalidate and closes, and the runner marks the trigger failed, while a
// database trigger keeps running.
//
//	go run ./test/e2e/scenarios/event-types [-v]
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/test/e2e/scenarios/internal/scenarioutil"
)

//go:embed triggers.yaml
var triggersYAML []byte

// The watched namespace and the two triggers of triggers.yaml.
const (
	database      = "demo"
	collection    = "people"
	peopleTrigger = "people_events"
	schemaTrigger = "demo_schema"
	peoplePath    = "/hooks/people"
	schemaPath    = "/hooks/schema"
)

// stepTimeout bounds the wait for each expected delivery or state change.
const stepTimeout = 30 * time.Second

func main() {
	verbose := flag.Bool("v", false, "show the runner's logs")
	flag.Parse()
	os.Exit(scenarioutil.Main(func(ctx context.Context) error {
		_, err := run(ctx, os.Stdout, scenarioutil.Logger(os.Stderr, *verbose))
		return err
	}))
}

// step is one write of the scenario and the event it must produce.
type step struct {
	Op   string // the operationType the write produces
	Desc string // the write, as shown on the console
	Do   func(ctx context.Context, coll *mongo.Collection) error
}

// steps returns the scenario's writes, in order.
func steps() []step {
	filter := bson.D{{Key: "_id", Value: int32(1)}}
	return []step{
		{Op: "insert", Desc: `insertOne({_id: 1, name: "Ada Lovelace", address: {city: "Marylebone", country: "UK"}, tags: ["mathematician"]})`,
			Do: func(ctx context.Context, c *mongo.Collection) error {
				_, err := c.InsertOne(ctx, insertedDoc())
				return err
			}},
		{Op: "update", Desc: `updateOne({_id: 1}, {$set: {"address.city": "London", email: "ada@example.org"}, $unset: {tags: ""}})`,
			Do: func(ctx context.Context, c *mongo.Collection) error {
				_, err := c.UpdateOne(ctx, filter, bson.D{
					{Key: "$set", Value: bson.D{{Key: "address.city", Value: "London"}, {Key: "email", Value: "ada@example.org"}}},
					{Key: "$unset", Value: bson.D{{Key: "tags", Value: ""}}},
				})
				return err
			}},
		{Op: "replace", Desc: `replaceOne({_id: 1}, {name: "Augusta Ada King", born: 1815})`,
			Do: func(ctx context.Context, c *mongo.Collection) error {
				_, err := c.ReplaceOne(ctx, filter, replacementDoc())
				return err
			}},
		{Op: "delete", Desc: `deleteOne({_id: 1})`,
			Do: func(ctx context.Context, c *mongo.Collection) error {
				_, err := c.DeleteOne(ctx, filter)
				return err
			}},
		{Op: "drop", Desc: `drop()`,
			Do: func(ctx context.Context, c *mongo.Collection) error { return c.Drop(ctx) }},
	}
}

func insertedDoc() bson.D {
	return bson.D{
		{Key: "_id", Value: int32(1)},
		{Key: "name", Value: "Ada Lovelace"},
		{Key: "address", Value: bson.D{{Key: "city", Value: "Marylebone"}, {Key: "country", Value: "UK"}}},
		{Key: "tags", Value: bson.A{"mathematician"}},
	}
}

func replacementDoc() bson.D {
	return bson.D{{Key: "name", Value: "Augusta Ada King"}, {Key: "born", Value: int32(1815)}}
}

// result is what the receiver, the raw stream and the runner reported.
type result struct {
	People   []scenarioutil.Delivery // people_events deliveries, in order
	Schema   []scenarioutil.Delivery // demo_schema deliveries, in order
	Raw      []bson.Raw              // the plain driver stream's events, ending with invalidate
	Statuses []runner.TriggerStatus
}

func run(ctx context.Context, out io.Writer, logger *slog.Logger) (res result, err error) {
	db, err := scenarioutil.StartDB(ctx, devdb.Options{})
	if err != nil {
		return res, err
	}
	defer scenarioutil.CloseOnExit(ctx, db, &err)
	cfg, recv, err := scenarioutil.StartConfigured("triggers.yaml", triggersYAML, db.URI(), func(base string) map[string]string {
		return map[string]string{"PEOPLE_HOOK_URL": base + peoplePath, "SCHEMA_HOOK_URL": base + schemaPath}
	}, scenarioutil.ReceiverOptions{})
	if err != nil {
		return res, err
	}
	defer scenarioutil.CloseOnExit(ctx, recv, &err)
	base := recv.URL()

	coll := db.Client.Database(database).Collection(collection)
	raw, err := watchRaw(ctx, coll)
	if err != nil {
		return res, err
	}
	defer raw.stop()

	rn, err := scenarioutil.StartRunner(ctx, cfg, db.Client, scenarioutil.RunnerOptions{Logger: logger})
	if err != nil {
		return res, err
	}
	defer rn.Stop()
	if err := rn.WaitReady(ctx); err != nil {
		return res, err
	}
	fmt.Fprintf(out, "devdb %s; triggers %s (%s.%s) and %s (database %s) post to %s\n\n",
		db.URI(), peopleTrigger, database, collection, schemaTrigger, database, base)

	wctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	for i, s := range steps() {
		fmt.Fprintf(out, "> db.%s.%s\n", collection, s.Desc)
		if err := s.Do(wctx, coll); err != nil {
			return res, fmt.Errorf("%s: %w", s.Op, err)
		}
		res.People, err = recv.Deliveries().WaitMatching(wctx, scenarioutil.ForTrigger(peopleTrigger), i+1)
		if err != nil {
			return res, fmt.Errorf("wait for the %s event: %w", s.Op, err)
		}
		d := res.People[i]
		fmt.Fprintf(out, "%s received %s (webhook-id %s):\n%s\n\n", peopleTrigger, s.Op, d.ID, d.Indented())
	}

	res.Schema, err = recv.Deliveries().WaitMatching(wctx, scenarioutil.ForTrigger(schemaTrigger), 1)
	if err != nil {
		return res, fmt.Errorf("wait for %s's drop event: %w", schemaTrigger, err)
	}
	fmt.Fprintf(out, "%s (the database trigger) received the same drop:\n%s\n\n", schemaTrigger, res.Schema[0].Indented())

	res.Raw, err = raw.events.Wait(wctx, func(evs []bson.Raw) bool {
		return len(evs) > 0 && opType(evs[len(evs)-1]) == "invalidate"
	})
	if err != nil {
		return res, fmt.Errorf("wait for the raw stream's invalidate: %w", err)
	}
	inv, err := bson.MarshalExtJSONIndent(res.Raw[len(res.Raw)-1], false, false, "", "  ")
	if err != nil {
		return res, fmt.Errorf("print invalidate: %w", err)
	}
	fmt.Fprintf(out, "A plain driver change stream on %s.%s then got invalidate and was closed by the server:\n%s\n\n", database, collection, inv)

	if _, err := rn.WaitStatus(wctx, peopleTrigger, func(s runner.TriggerStatus) bool {
		return s.State == runner.StateFailed && !s.Retrying
	}); err != nil {
		return res, err
	}
	// The runner counts an event once it is handed to delivery, which can be
	// a moment after the receiver got it.
	if _, err := rn.WaitStatus(wctx, schemaTrigger, func(s runner.TriggerStatus) bool {
		return s.EventsReceived >= uint64(len(res.Schema))
	}); err != nil {
		return res, err
	}
	res.Statuses = rn.Status()
	fmt.Fprintln(out, "Runner status:")
	for _, s := range res.Statuses {
		line := fmt.Sprintf("  %-14s %-8s events=%d", s.Name, s.State, s.EventsReceived)
		if s.LastError != "" {
			line += "  reason: " + s.LastError
		}
		fmt.Fprintln(out, line)
	}
	return res, nil
}

// opType returns an event's operationType ("" when absent).
func opType(ev bson.Raw) string {
	s, _ := ev.Lookup("operationType").StringValueOK()
	return s
}

// rawStream is a plain driver change stream on a collection, read in the
// background into events until the server ends it.
type rawStream struct {
	events scenarioutil.Log[bson.Raw]
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// watchRaw opens a change stream on coll with no pipeline and no options,
// as any driver user would, and reads it until it ends.
func watchRaw(ctx context.Context, coll *mongo.Collection) (*rawStream, error) {
	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", coll.Name(), err)
	}
	rctx, cancel := context.WithCancel(ctx)
	r := &rawStream{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		defer func() {
			cctx, cancel := scenarioutil.CloseContext(ctx)
			defer cancel()
			_ = cs.Close(cctx)
		}()
		for cs.Next(rctx) {
			r.events.Append(append(bson.Raw(nil), cs.Current...))
		}
		if err := cs.Err(); err != nil && !errors.Is(err, context.Canceled) {
			r.err = err
		}
	}()
	return r, nil
}

// stop ends the stream (if the server has not) and waits for the reader.
func (r *rawStream) stop() {
	r.cancel()
	<-r.done
}
