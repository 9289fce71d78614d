// Command app-events delivers every change of an application's database to
// an event store that keeps each event exactly once. changehook delivers at
// least once: a receiver that stored an event but failed before answering
// gets it again. The webhook-id header is the same on every delivery of one
// event, so the store de-duplicates on it.
//
// Everything runs in this one process: an embedded MongoDB-compatible
// server (devdb), the event store, the changehook runner with the
// event_store trigger of triggers.yaml, and the application's writes.
//
//	go run ./examples/app-events
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

//go:embed triggers.yaml
var triggersYAML []byte

// lostAckEvery makes the event store fail after storing every 3rd event.
const lostAckEvery = 3

// outcome is what the event store did with one request.
type outcome struct {
	line                  string
	stored, lost, ignored bool
}

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer) error {
	// 1. A MongoDB-compatible server. In production this is your replica set.
	db, err := devdb.Start(ctx, devdb.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	client, err := mongo.Connect(options.Client().ApplyURI(db.URI()))
	if err != nil {
		return err
	}
	defer client.Disconnect(context.WithoutCancel(ctx))

	// 2. The event store: an append-only log keyed by webhook-id. Every
	// lostAckEvery-th new event it stores and then answers 503, as if it
	// had crashed before replying; changehook delivers that event again.
	var (
		mu       sync.Mutex
		seen     = map[string]bool{}
		events   []string // the log: one entry per stored event
		outcomes = make(chan outcome, 32)
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	receiver := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var event struct {
			OperationType string                `json:"operationType"`
			NS            struct{ Coll string } `json:"ns"`
			DocumentKey   struct {
				ID any `json:"_id"`
			} `json:"documentKey"`
		}
		id := r.Header.Get("webhook-id")
		if err := json.NewDecoder(r.Body).Decode(&event); err != nil || id == "" {
			http.Error(w, "want a change event with a webhook-id", http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		what := fmt.Sprintf("%s %s %v", event.OperationType, event.NS.Coll, event.DocumentKey.ID)
		if seen[id] {
			outcomes <- outcome{line: fmt.Sprintf("     %-20s same webhook-id again: duplicate ignored", what), ignored: true}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		seen[id] = true
		events = append(events, what)
		if len(events)%lostAckEvery == 0 {
			outcomes <- outcome{line: fmt.Sprintf("  #%d %-20s stored, but the answer is lost (503)", len(events), what), stored: true, lost: true}
			http.Error(w, "stored, but crashed before acknowledging", http.StatusServiceUnavailable)
			return
		}
		outcomes <- outcome{line: fmt.Sprintf("  #%d %-20s stored", len(events), what), stored: true}
		w.WriteHeader(http.StatusNoContent)
	})}
	go receiver.Serve(ln)
	defer receiver.Close()

	// 3. The triggers, pointed at this process's server and receiver.
	env := map[string]string{"MONGODB_URI": db.URI(), "EVENT_STORE_URL": "http://" + ln.Addr().String() + "/events"}
	cfg, err := triggers.Parse("triggers.yaml", triggersYAML, func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	if err != nil {
		return err
	}

	// 4. The runner: what `changehook run -c triggers.yaml` does.
	// (Errors only: each lost answer makes the runner warn that it retries.)
	r, err := runner.New(cfg, client, store.New(client, cfg.State.Database), runner.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return err
	}
	runCtx, stopRunner := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(runCtx) }()
	defer func() { stopRunner(); <-stopped }()
	for !r.Ready() { // wait until the change stream is open
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}

	// 5. The application: users register, an order goes through its states.
	shop := client.Database("shop")
	users, orders := shop.Collection("users"), shop.Collection("orders")
	setStatus := func(s string) bson.D { return bson.D{{Key: "$set", Value: bson.D{{Key: "status", Value: s}}}} }
	o1 := bson.D{{Key: "_id", Value: "o1"}}
	writes := []struct {
		desc  string
		write func() error
	}{
		{`users.insertOne({_id: "ada", name: "Ada"})`, func() error {
			_, err := users.InsertOne(ctx, bson.D{{Key: "_id", Value: "ada"}, {Key: "name", Value: "Ada"}})
			return err
		}},
		{`orders.insertOne({_id: "o1", user: "ada", status: "placed"})`, func() error {
			_, err := orders.InsertOne(ctx, bson.D{{Key: "_id", Value: "o1"}, {Key: "user", Value: "ada"}, {Key: "status", Value: "placed"}})
			return err
		}},
		{`orders.updateOne({_id: "o1"}, {$set: {status: "paid"}})`, func() error { _, err := orders.UpdateOne(ctx, o1, setStatus("paid")); return err }},
		{`users.insertOne({_id: "grace", name: "Grace"})`, func() error {
			_, err := users.InsertOne(ctx, bson.D{{Key: "_id", Value: "grace"}, {Key: "name", Value: "Grace"}})
			return err
		}},
		{`orders.updateOne({_id: "o1"}, {$set: {status: "shipped"}})`, func() error { _, err := orders.UpdateOne(ctx, o1, setStatus("shipped")); return err }},
		{`users.deleteOne({_id: "grace"})`, func() error { _, err := users.DeleteOne(ctx, bson.D{{Key: "_id", Value: "grace"}}); return err }},
	}
	for _, w := range writes {
		if err := w.write(); err != nil {
			return err
		}
		fmt.Fprintln(out, w.desc)
	}

	// 6. What the event store did, until every change is stored and every
	// lost answer was followed by its redelivery.
	fmt.Fprintln(out, "\nevent store:")
	stored, lost, ignored := 0, 0, 0
	for stored < len(writes) || ignored < lost {
		select {
		case o := <-outcomes:
			fmt.Fprintln(out, o.line)
			if o.stored {
				stored++
			}
			if o.lost {
				lost++
			}
			if o.ignored {
				ignored++
			}
		case <-time.After(10 * time.Second):
			return errors.New("the event store got nothing within 10s")
		}
	}
	fmt.Fprintf(out, "\n%d changes, %d events stored once each; %d answers lost, %d redeliveries ignored by webhook-id\n",
		len(writes), stored, lost, ignored)
	return nil
}
