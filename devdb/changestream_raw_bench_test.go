package devdb_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb"
)

// BenchmarkChangeStreamBacklogMatch is BenchmarkChangeStreamBacklog with
// the $match stage a changehook trigger sends (triggers.Trigger.Pipeline):
// invalidate or one of the trigger's operation types.
func BenchmarkChangeStreamBacklogMatch(b *testing.B) {
	_, client := csStart(b, devdb.Options{})
	ctx := context.Background()
	coll := client.Database("bench").Collection("backlog")
	const total = 20000
	pipeline := mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "operationType", Value: "invalidate"}},
		bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "update", "replace", "delete"}}}}},
	}}}}}}
	start, err := coll.Watch(ctx, pipeline)
	if err != nil {
		b.Fatal(err)
	}
	token := start.ResumeToken()
	_ = start.Close(ctx)
	docs := make([]any, 0, 1000)
	for i := 0; i < total; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: int32(i)}, {Key: "name", Value: "item"}, {Key: "qty", Value: int32(i % 100)}})
		if len(docs) == cap(docs) {
			if _, err := coll.InsertMany(ctx, docs); err != nil {
				b.Fatal(err)
			}
			docs = docs[:0]
		}
	}
	b.ResetTimer()
	events := 0
	for i := 0; i < b.N; i++ {
		cs, err := coll.Watch(ctx, pipeline, options.ChangeStream().SetResumeAfter(token).SetBatchSize(1000))
		if err != nil {
			b.Fatal(err)
		}
		for n := 0; n < total; n++ {
			if !cs.Next(ctx) {
				b.Fatalf("stream ended after %d events: %v", n, cs.Err())
			}
			events++
		}
		_ = cs.Close(ctx)
	}
	b.StopTimer()
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}
