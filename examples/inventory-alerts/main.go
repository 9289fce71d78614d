// Command inventory-alerts posts a Slack-style message whenever a sale
// leaves fewer than 20 units of a fruit in the store's inventory.
//
// Everything runs in this one process: an embedded MongoDB-compatible
// server (devdb), a webhook receiver standing in for Slack, the changehook
// runner with the low_stock trigger of triggers.yaml, and a writer selling
// fruit.
//
//	go run ./examples/inventory-alerts
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

	// 2. The webhook receiver: it hands every message's text to the writer.
	alerts := make(chan string, 16)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	receiver := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct {
			Text string `json:"text"`
		}
		if err := json.NewDecoder(r.Body).Decode(&msg); err != nil {
			http.Error(w, "not a Slack message", http.StatusBadRequest)
			return
		}
		alerts <- msg.Text
		w.WriteHeader(http.StatusNoContent)
	})}
	go receiver.Serve(ln)
	defer receiver.Close()

	// 3. The triggers, with ${VAR}s pointing at this process's server and
	// receiver.
	env := map[string]string{
		"MONGODB_URI":       db.URI(),
		"SLACK_WEBHOOK_URL": "http://" + ln.Addr().String() + "/services/fruitstore/low-stock",
	}
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

	// 5. The store: stock 100 of each fruit, then sell. Post-images give
	// each update event the document as that sale left it.
	fruitstore := client.Database("fruitstore")
	err = fruitstore.CreateCollection(ctx, "inventory",
		options.CreateCollection().SetChangeStreamPreAndPostImages(bson.D{{Key: "enabled", Value: true}}))
	if err != nil {
		return err
	}
	inventory := fruitstore.Collection("inventory")
	for _, fruit := range []string{"apples", "bananas"} {
		if _, err := inventory.InsertOne(ctx, bson.D{{Key: "type", Value: fruit}, {Key: "quantity", Value: 100}}); err != nil {
			return err
		}
	}
	sales := []struct {
		fruit string
		units int
	}{{"apples", 40}, {"bananas", 30}, {"apples", 45}, {"bananas", 55}, {"apples", 8}, {"bananas", 10}}
	for _, s := range sales {
		var doc struct {
			Quantity int `bson:"quantity"`
		}
		err := inventory.FindOneAndUpdate(ctx,
			bson.D{{Key: "type", Value: s.fruit}},
			bson.D{{Key: "$inc", Value: bson.D{{Key: "quantity", Value: -s.units}}}},
			options.FindOneAndUpdate().SetReturnDocument(options.After),
		).Decode(&doc)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "sold %d %s, %d left\n", s.units, s.fruit, doc.Quantity)
		if doc.Quantity >= 20 {
			continue
		}
		// Below 20: low_stock posts a message; print it under its sale.
		select {
		case text := <-alerts:
			fmt.Fprintf(out, "  #fruitstore  %s\n", text)
		case <-time.After(10 * time.Second):
			return errors.New("no low-stock message within 10s")
		}
	}
	return nil
}
