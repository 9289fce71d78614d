package runner_test

import (
	"context"
	"strings"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestPositionAtBeforeATooLargeChange: PositionAt(since) returns a position
// before a change after since that is too large to read (the update that
// sets a 9 MiB field, with updateLookup: the event carries it twice): the trigger fails on
// that change when it reads it, and skip deals with it. Only lost history
// fails PositionAt's read.
func TestPositionAtBeforeATooLargeChange(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	cfg := parseTrigger(t, `
triggers:
  - name: big
    database: shop
    collection: big
    operations: [insert, update]
    full_document: updateLookup
    webhook: { url: "${HOOK_URL}" }
`, "http://127.0.0.1:1")
	coll := client.Database("shop").Collection("big")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	since := insertIDsBefore(t, client, coll, 1, 1)
	big := strings.Repeat("x", 9<<20)
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: big}}}}); err != nil {
		t.Fatal(err)
	}
	cp, err := runner.PositionAt(ctx, client, cfg.Triggers[0], since)
	if err != nil {
		t.Fatalf("PositionAt(%s) before a change too large to read: %v", since, err)
	}
	// The position is before the large change: reading from it meets it
	// (opening the stream, which reads a first batch, or the next read).
	cs, err := cfg.Triggers[0].Watch(ctx, client, cfg.Triggers[0].ChangeStreamOptions().SetResumeAfter(cp.Token))
	if err == nil {
		defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
		for cs.Next(ctx) {
			t.Fatalf("read %s before the large update", cs.Current)
		}
		err = cs.Err()
	}
	if err == nil || !strings.Contains(err.Error(), "BSONObjectTooLarge") {
		t.Fatalf("reading from the position: %v, want the large change's BSONObjectTooLarge", err)
	}
}
