package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
)

// TestBatchesLargerThanOneReply reads more than 16 MiB of documents and of
// change events through the driver. A full batch holds 16 MiB of documents,
// and the reply's array adds a few bytes per element on top: the batch limit
// must count them, or the reply exceeds the 16 MiB + 16 KiB reply limit and
// the server answers BSONObjectTooLarge instead of the documents.
func TestBatchesLargerThanOneReply(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 20 MB")
	}
	t.Parallel()
	_, client := csStart(t, server.Options{})
	// More time than csCtx gives: 60,000 events take seconds under -race.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	db := client.Database("batchlimit")
	var ping bson.D
	if err := db.RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Decode(&ping); err != nil {
		t.Fatal(err)
	}
	start := csGet(ping, "operationTime").(bson.Timestamp)
	coll := db.Collection("c")
	const total, perBatch = 60_000, 5_000 // ~300-byte documents: about 20 MB
	pad := strings.Repeat("x", 260)
	for b := 0; b < total/perBatch; b++ {
		docs := make([]any, perBatch)
		for i := range docs {
			docs[i] = bson.D{{Key: "_id", Value: int32(b*perBatch + i)}, {Key: "pad", Value: pad}}
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			t.Fatalf("insert batch %d: %v", b, err)
		}
	}

	cur, err := coll.Find(ctx, bson.D{}, options.Find().SetBatchSize(0))
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	n := 0
	for cur.Next(ctx) {
		n++
	}
	if err := cur.Err(); err != nil {
		t.Fatalf("find cursor after %d documents: %v", n, err)
	}
	_ = cur.Close(ctx)
	if n != total {
		t.Fatalf("find returned %d documents, want %d", n, total)
	}

	cs, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&start))
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close(ctx) })
	for i := range total {
		if !cs.Next(ctx) {
			t.Fatalf("change stream ended after %d of %d events: %v", i, total, cs.Err())
		}
	}
}
