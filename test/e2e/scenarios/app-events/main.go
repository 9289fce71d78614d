// Command app-events wires one application's changes to four services: a
// welcome email for every registered user, a notification for every order
// status change, cache invalidation on any change, and an event store that
// keeps each change once, de-duplicating redeliveries on webhook-id.
//
//	go run ./test/e2e/scenarios/app-events [-lost-ack-every 4] [-v]
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/test/e2e/scenarios/internal/scenarioutil"
)

//go:embed triggers.yaml
var triggersYAML []byte

const database = "shop"

// waitTimeout bounds the wait for the services to receive everything.
const waitTimeout = 30 * time.Second

func main() {
	opts := config{Out: os.Stdout}
	flag.IntVar(&opts.LostAckEvery, "lost-ack-every", 4, "the event store loses the acknowledgement of every Nth new event (0: never)")
	verbose := flag.Bool("v", false, "show the runner's logs")
	flag.Parse()
	opts.Logger = scenarioutil.Logger(os.Stderr, *verbose)
	os.Exit(scenarioutil.Main(func(ctx context.Context) error {
		_, err := run(ctx, opts)
		return err
	}))
}

// config configures a run.
type config struct {
	LostAckEvery int
	Out          io.Writer
	Logger       *slog.Logger
}

// change is one write of the application.
type change struct {
	Coll, ID string
	Op       string // insert, update, replace or delete
	Doc      bson.D // inserted or replacement document, or the $set of an update
}

func (c change) String() string {
	b, _ := bson.MarshalExtJSON(c.Doc, false, false)
	if c.Op == "delete" {
		b = nil
	}
	return fmt.Sprintf("%-7s %s.%s %s %s", c.Op, database, c.Coll, c.ID, b)
}

func (c change) apply(ctx context.Context, db *mongo.Database) error {
	coll := db.Collection(c.Coll)
	id := bson.D{{Key: "_id", Value: c.ID}}
	var err error
	switch c.Op {
	case "insert":
		_, err = coll.InsertOne(ctx, append(bson.D{{Key: "_id", Value: c.ID}}, c.Doc...))
	case "update":
		_, err = coll.UpdateOne(ctx, id, bson.D{{Key: "$set", Value: c.Doc}})
	case "replace":
		_, err = coll.ReplaceOne(ctx, id, c.Doc)
	case "delete":
		_, err = coll.DeleteOne(ctx, id)
	default:
		err = errors.New("unknown operation")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	return nil
}

// script returns the application's writes, in order.
func script() []change {
	return []change{
		{Coll: "users", ID: "u1", Op: "insert", Doc: scenarioutil.Doc("name", "Ada", "email", "ada@example.org")},
		{Coll: "users", ID: "u2", Op: "insert", Doc: scenarioutil.Doc("name", "Grace", "email", "grace@example.org")},
		{Coll: "products", ID: "p1", Op: "insert", Doc: scenarioutil.Doc("name", "Teapot", "price", 25.0)},
		{Coll: "products", ID: "p2", Op: "insert", Doc: scenarioutil.Doc("name", "Kettle", "price", 40.0)},
		{Coll: "orders", ID: "o1", Op: "insert", Doc: scenarioutil.Doc("user", "u1", "items", bson.A{"p1"}, "status", "pending")},
		{Coll: "orders", ID: "o1", Op: "update", Doc: scenarioutil.Doc("status", "paid")},
		{Coll: "orders", ID: "o1", Op: "update", Doc: scenarioutil.Doc("note", "gift wrap")}, // no status: no notification
		{Coll: "orders", ID: "o2", Op: "insert", Doc: scenarioutil.Doc("user", "u2", "items", bson.A{"p2"}, "status", "pending")},
		{Coll: "orders", ID: "o1", Op: "update", Doc: scenarioutil.Doc("status", "shipped")},
		{Coll: "orders", ID: "o2", Op: "update", Doc: scenarioutil.Doc("status", "cancelled")},
		{Coll: "products", ID: "p1", Op: "update", Doc: scenarioutil.Doc("price", 22.5)},
		{Coll: "products", ID: "p2", Op: "delete"},
		{Coll: "users", ID: "u1", Op: "replace", Doc: scenarioutil.Doc("name", "Ada Lovelace", "email", "ada@example.org")},
	}
}

// warmCache is what the application had cached before the writes.
func warmCache() []string {
	return []string{"users:u1", "users:u2", "products:p1", "products:p2", "products:p3", "orders:o1"}
}

// result is what the four services ended up with.
type result struct {
	Emails        []string
	Notifications []string
	Evictions     []string
	Cached        map[string]bool
	Events        []storedEvent
	Duplicates    int
	LostAcks      int
}

func run(ctx context.Context, opts config) (res result, err error) {
	opts.Out = scenarioutil.SyncWriter(opts.Out)
	db, err := scenarioutil.StartDB(ctx, devdb.Options{})
	if err != nil {
		return res, err
	}
	defer scenarioutil.CloseOnExit(ctx, db, &err)

	mail := &mailer{out: opts.Out}
	notify := &notifier{out: opts.Out}
	cch := newCache(opts.Out, warmCache())
	store := newEventStore(opts.Out, opts.LostAckEvery)
	services := []struct {
		env, path string
		handler   scenarioutil.Handler
	}{
		{"WELCOME_URL", "/welcome", mail.handle},
		{"NOTIFY_URL", "/notify", notify.handle},
		{"CACHE_URL", "/invalidate", cch.handle},
		{"EVENT_STORE_URL", "/events", store.handle},
	}
	// Listen first: the triggers' URLs need the ports, the receivers need the
	// configuration's signing key.
	vars := map[string]string{}
	lns := make([]net.Listener, 0, len(services))
	handedOver := 0 // listeners owned by a started receiver
	defer func() {
		for _, ln := range lns[handedOver:] {
			_ = ln.Close()
		}
	}()
	for _, s := range services {
		ln, lerr := scenarioutil.Listen("")
		if lerr != nil {
			return res, lerr
		}
		lns = append(lns, ln)
		vars[s.env] = scenarioutil.URLOf(ln) + s.path
	}
	cfg, err := scenarioutil.ParseConfig("triggers.yaml", triggersYAML, vars, db.URI())
	if err != nil {
		return res, err
	}
	for i, s := range services {
		recv, rerr := scenarioutil.StartReceiver(scenarioutil.ReceiverOptions{
			Listener: lns[i], Secrets: cfg.Triggers[0].Webhook.SigningKeys(), Handler: s.handler,
		})
		if rerr != nil {
			return res, rerr
		}
		handedOver++
		defer scenarioutil.CloseOnExit(ctx, recv, &err)
		fmt.Fprintf(opts.Out, "service %-20s %s\n", cfg.Triggers[i].Name, recv.URL()+s.path)
	}

	runner, err := scenarioutil.StartRunner(ctx, cfg, db.Client, scenarioutil.RunnerOptions{Logger: opts.Logger})
	if err != nil {
		return res, err
	}
	defer runner.Stop()
	if err := runner.WaitReady(ctx); err != nil {
		return res, err
	}
	fmt.Fprintf(opts.Out, "devdb %s; runner ready\n\n", db.URI())

	shop := db.Client.Database(database)
	for _, c := range script() {
		fmt.Fprintf(opts.Out, "> %s\n", c)
		if err := c.apply(ctx, shop); err != nil {
			return res, err
		}
	}

	want := expect(script())
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if _, err := mail.sent.WaitLen(wctx, len(want.Emails)); err != nil {
		return res, fmt.Errorf("wait for %d welcome emails: %w", len(want.Emails), err)
	}
	if _, err := notify.sent.WaitLen(wctx, len(want.Notifications)); err != nil {
		return res, fmt.Errorf("wait for %d notifications: %w", len(want.Notifications), err)
	}
	if _, err := cch.evicted.WaitLen(wctx, len(want.Evictions)); err != nil {
		return res, fmt.Errorf("wait for %d cache evictions: %w", len(want.Evictions), err)
	}
	if _, err := store.stored.WaitLen(wctx, len(want.Events)); err != nil {
		return res, fmt.Errorf("wait for %d stored events: %w", len(want.Events), err)
	}
	// Every lost acknowledgement must come back as a duplicate.
	if _, err := store.requests.Wait(wctx, func([]string) bool {
		dup, lost := store.counts()
		return dup >= lost
	}); err != nil {
		return res, fmt.Errorf("wait for the redeliveries of lost acknowledgements: %w", err)
	}
	runner.Stop() // finish in-flight deliveries before reading the results

	res.Emails, res.Notifications, res.Evictions = mail.sent.Snapshot(), notify.sent.Snapshot(), cch.evicted.Snapshot()
	res.Cached, res.Events = cch.cached(), store.stored.Snapshot()
	res.Duplicates, res.LostAcks = store.counts()
	fmt.Fprintf(opts.Out, "\n%d welcome emails, %d notifications, %d cache evictions (still cached: %v),\n"+
		"%d events stored once each; %d acknowledgements lost, %d redeliveries recognised by webhook-id and ignored.\n",
		len(res.Emails), len(res.Notifications), len(res.Evictions), sortedSet(res.Cached), len(res.Events), res.LostAcks, res.Duplicates)
	return res, nil
}

// expect derives what each service must receive from the script.
func expect(script []change) result {
	var r result
	names := map[string]string{}
	for _, c := range script {
		m := map[string]any{}
		for _, e := range c.Doc {
			m[e.Key] = e.Value
		}
		switch {
		case c.Coll == "users" && c.Op == "insert":
			r.Emails = append(r.Emails, fmt.Sprintf("to %s: Welcome, %s!", m["email"], m["name"]))
			names[c.ID] = m["name"].(string)
		case c.Coll == "orders" && c.Op == "update" && m["status"] != nil:
			r.Notifications = append(r.Notifications, fmt.Sprintf("order %s is now %s", c.ID, m["status"]))
		}
		r.Evictions = append(r.Evictions, c.Op+" "+c.Coll+":"+c.ID)
		r.Events = append(r.Events, storedEvent{Op: c.Op})
	}
	return r
}

func sortedSet(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
