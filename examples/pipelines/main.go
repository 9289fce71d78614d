// Command pipelines shows what a trigger's pipeline can do: watch a whole
// database or a whole deployment, match on the changed document, project
// the event on the server, and build the webhook body with payload.
//
// Everything runs in this one process: an embedded MongoDB-compatible
// server (devdb), a webhook receiver, and the changehook runner with the
// alice_activity and all_inserts triggers of triggers.yaml.
//
//	go run ./examples/pipelines
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

// delivery is one webhook request: the path names the trigger.
type delivery struct {
	path string
	body map[string]any
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

	// 2. The webhook receiver, one path per trigger.
	deliveries := make(chan delivery, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	receiver := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, "not a JSON object", http.StatusBadRequest)
			return
		}
		deliveries <- delivery{r.URL.Path, body}
		w.WriteHeader(http.StatusNoContent)
	})}
	go receiver.Serve(ln)
	defer receiver.Close()

	// 3. The triggers, pointed at this process's server and receiver.
	base := "http://" + ln.Addr().String()
	env := map[string]string{"MONGODB_URI": db.URI(), "ALICE_HOOK_URL": base + "/hooks/alice", "INSERTS_HOOK_URL": base + "/hooks/inserts"}
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
	for !r.Ready() { // wait until the change streams are open
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}

	// 5. Writes in two databases: alice_activity sees alice's documents in
	// app, all_inserts every insert anywhere.
	users := client.Database("app").Collection("users")
	orders := client.Database("app").Collection("orders")
	invoices := client.Database("billing").Collection("invoices")
	doc := func(id, user string, n int) bson.D {
		return bson.D{{Key: "_id", Value: id}, {Key: "username", Value: user}, {Key: "a", Value: n}}
	}
	setA := func(n int) bson.D { return bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: n}}}} }
	writes := []struct {
		desc  string
		write func() error
	}{
		{`app.users.insertOne({_id: "u1", username: "alice", a: 1})`, func() error { _, err := users.InsertOne(ctx, doc("u1", "alice", 1)); return err }},
		{`app.users.insertOne({_id: "u2", username: "bob", a: 2})`, func() error { _, err := users.InsertOne(ctx, doc("u2", "bob", 2)); return err }},
		{`app.orders.insertOne({_id: "o1", username: "alice", a: 3})`, func() error { _, err := orders.InsertOne(ctx, doc("o1", "alice", 3)); return err }},
		{`billing.invoices.insertOne({_id: "i1", username: "alice", a: 4})`, func() error { _, err := invoices.InsertOne(ctx, doc("i1", "alice", 4)); return err }},
		{`app.users.updateOne({_id: "u1"}, {$set: {a: 10}})`, func() error { _, err := users.UpdateOne(ctx, bson.D{{Key: "_id", Value: "u1"}}, setA(10)); return err }},
		{`app.users.updateOne({_id: "u2"}, {$set: {a: 20}})`, func() error { _, err := users.UpdateOne(ctx, bson.D{{Key: "_id", Value: "u2"}}, setA(20)); return err }},
	}
	for _, w := range writes {
		if err := w.write(); err != nil {
			return err
		}
		fmt.Fprintln(out, w.desc)
	}

	// 6. What each trigger delivered, in order. Each trigger is strict, but
	// the two run independently, so they are printed one after the other.
	got := map[string][]string{}
	for range 3 + 4 { // alice: u1, o1 and u1's update; inserts: u1, u2, o1, i1
		select {
		case d := <-deliveries:
			if d.path == "/hooks/alice" {
				d.body["_id"] = "..." // the event's resume token: differs on every run
			}
			js, _ := json.Marshal(d.body) // keys sorted
			got[d.path] = append(got[d.path], string(js))
		case <-time.After(10 * time.Second):
			return errors.New("a delivery did not arrive within 10s")
		}
	}
	for _, t := range []struct{ name, path string }{{"alice_activity", "/hooks/alice"}, {"all_inserts", "/hooks/inserts"}} {
		fmt.Fprintf(out, "\n%s got:\n", t.name)
		for _, body := range got[t.path] {
			fmt.Fprintf(out, "  %s\n", body)
		}
	}
	return nil
}
