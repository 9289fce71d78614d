// Command event-types makes one write of each kind (insert, update, replace,
// delete) and prints the parts of each change event that changehook
// delivers for it.
//
// Everything runs in this one process: an embedded MongoDB-compatible
// server (devdb), a webhook receiver, and the changehook runner with the
// people_events trigger of triggers.yaml.
//
//	go run ./examples/event-types
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

	// 2. The webhook receiver: every request body is one change event, as
	// relaxed Extended JSON.
	events := make(chan map[string]any, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	receiver := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var event map[string]any
		if err := json.NewDecoder(r.Body).Decode(&event); err != nil {
			http.Error(w, "not a JSON object", http.StatusBadRequest)
			return
		}
		events <- event
		w.WriteHeader(http.StatusNoContent)
	})}
	go receiver.Serve(ln)
	defer receiver.Close()

	// 3. The triggers, pointed at this process's server and receiver.
	env := map[string]string{"MONGODB_URI": db.URI(), "PEOPLE_HOOK_URL": "http://" + ln.Addr().String() + "/hooks/people"}
	cfg, err := triggers.Parse("triggers.yaml", triggersYAML, func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	})
	if err != nil {
		return err
	}

	// 4. The runner: what `changehook run -c triggers.yaml` does.
	r, err := runner.New(cfg, client, store.New(client, cfg.State.Database), runner.Options{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
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

	// 5. One write of each kind, then the event each one produced.
	people := client.Database("demo").Collection("people")
	ada := bson.D{{Key: "_id", Value: 1}}
	writes := []struct {
		desc  string
		write func() error
	}{
		{`insertOne({_id: 1, name: "Ada", tags: ["math"]})`, func() error {
			_, err := people.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "name", Value: "Ada"}, {Key: "tags", Value: bson.A{"math"}}})
			return err
		}},
		{`updateOne({_id: 1}, {$set: {city: "London"}, $unset: {tags: ""}})`, func() error {
			_, err := people.UpdateOne(ctx, ada, bson.D{
				{Key: "$set", Value: bson.D{{Key: "city", Value: "London"}}},
				{Key: "$unset", Value: bson.D{{Key: "tags", Value: ""}}},
			})
			return err
		}},
		{`replaceOne({_id: 1}, {name: "Ada Lovelace"})`, func() error {
			_, err := people.ReplaceOne(ctx, ada, bson.D{{Key: "name", Value: "Ada Lovelace"}})
			return err
		}},
		{`deleteOne({_id: 1})`, func() error {
			_, err := people.DeleteOne(ctx, ada)
			return err
		}},
	}
	for _, w := range writes {
		if err := w.write(); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\n", w.desc)
		select {
		case event := <-events:
			// Every event has _id (its resume token), operationType,
			// clusterTime, wallTime, ns and documentKey; show what varies.
			for _, field := range []string{"operationType", "documentKey", "fullDocument", "updateDescription"} {
				if v, ok := event[field]; ok {
					js, _ := json.Marshal(v)
					fmt.Fprintf(out, "  %-17s %s\n", field, js)
				}
			}
		case <-time.After(10 * time.Second):
			return errors.New("no event within 10s")
		}
	}
	return nil
}
