package runner

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/triggers"
)

// TestStreamNowIsAfterTheLastChange: when the server reports no operation
// time, start_at's "now" is read from a change stream opened for it: a
// stream started at that time delivers the change written after it, not
// those written before.
func TestStreamNowIsAfterTheLastChange(t *testing.T) {
	_, client := devdbtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tr := &triggers.Trigger{Name: "orders", Database: "shop", Collection: "orders", StartAt: triggers.StartAt{Now: true},
		Webhook: triggers.Webhook{URL: "http://127.0.0.1:9/hook"}}
	disp, err := dispatcher.New(tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = disp.Close(context.Background()) })
	w := NewWatcher(tr, client, nil, disp, WatcherOptions{Logger: slog.New(slog.DiscardHandler)})
	coll := client.Database("shop").Collection("orders")
	for id := range 3 { // before now: not delivered
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			t.Fatal(err)
		}
	}
	at, err := w.streamNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}}); err != nil {
		t.Fatal(err)
	}
	cs, err := coll.Watch(ctx, []bson.D{}, options.ChangeStream().SetStartAtOperationTime(&at))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cs.Close(context.Background()) }()
	if !cs.Next(ctx) {
		t.Fatalf("no change after %v: %v", at, cs.Err())
	}
	if id := cs.Current.Lookup("documentKey", "_id").Int32(); id != 3 {
		t.Errorf("first change after %v is of document %d, want 3", at, id)
	}
}
