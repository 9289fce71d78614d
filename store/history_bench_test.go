package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// BenchmarkInsertAttempts writes writer batches of 512 delivery records (one
// trigger, distinct webhook-ids and document keys, as a drain makes) into an
// in-process devdb with the attempts collection's indexes: the cost of the
// history per delivery attempt, client and database together (ns/op is per
// record).
func BenchmarkInsertAttempts(b *testing.B) {
	srv, _ := devdbtest.Start(b)
	client := devdbtest.Connect(b, srv.URI(), options.Client().SetTimeout(30*time.Second))
	s := store.New(client, "changehook_state")
	ctx := context.Background()
	if err := s.EnsureIndexes(ctx); err != nil {
		b.Fatal(err)
	}
	const batch = 512
	recs := make([]store.AttemptRecord, batch)
	at := time.Now()
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		if n%batch == 0 && n > 0 {
			if _, err := s.InsertAttempts(ctx, recs); err != nil {
				b.Fatal(err)
			}
		}
		key, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.NewObjectID()}})
		recs[n%batch] = store.AttemptRecord{Kind: store.KindDelivery, Trigger: "orders", WebhookID: fmt.Sprintf("msg_%024x", n),
			DocumentKey: key, Operation: "insert", Attempt: 1, Status: 204, LatencyMS: 1.25, StartedAt: at, At: at.Add(time.Duration(n))}
		n++
	}
}
