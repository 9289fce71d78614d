package server_test

import (
	"context"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// benchDoc is a small document typical of application data (~120 bytes).
func benchDoc(i int) bson.D {
	return bson.D{{Key: "_id", Value: int64(i)}, {Key: "name", Value: "user"}, {Key: "n", Value: int32(i % 100)},
		{Key: "email", Value: "someone@example.com"}, {Key: "active", Value: i%2 == 0}}
}

// BenchmarkInsertSingle measures single-document insert round trips.
func BenchmarkInsertSingle(b *testing.B) {
	_, client := crudStart(b, "")
	coll := client.Database("bench").Collection("single")
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := coll.InsertOne(ctx, benchDoc(i)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inserts/s")
}

// BenchmarkInsertBatch1000 measures InsertMany with 1,000 documents per call.
func BenchmarkInsertBatch1000(b *testing.B) {
	_, client := crudStart(b, "")
	coll := client.Database("bench").Collection("batch")
	ctx := context.Background()
	batch := make([]any, 1000)
	next := 0
	b.ReportAllocs()
	for b.Loop() {
		for j := range batch {
			batch[j] = benchDoc(next)
			next++
		}
		if _, err := coll.InsertMany(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "docs/s")
}

// benchLoad fills a collection with n documents.
func benchLoad(b *testing.B, coll *mongo.Collection, n int) {
	b.Helper()
	ctx := context.Background()
	batch := make([]any, 0, 1000)
	for i := range n {
		batch = append(batch, benchDoc(i))
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := coll.InsertMany(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// BenchmarkUpdateOneByID measures updateOne round trips by _id in a
// 10,000-document collection, each with four operators ($inc, $set of a
// field, $push, $unset of one it set before): the write path that applies
// the operators and logs what they changed for the oplog.
func BenchmarkUpdateOneByID(b *testing.B) {
	_, client := crudStart(b, "")
	coll := client.Database("bench").Collection("update")
	const n = 10000
	benchLoad(b, coll, n)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		u := bson.D{
			{Key: "$inc", Value: bson.D{{Key: "n", Value: int32(1)}}},
			{Key: "$set", Value: bson.D{{Key: "name", Value: "renamed"}}},
			{Key: "$push", Value: bson.D{{Key: "log", Value: int32(i)}}},
			{Key: "$unset", Value: bson.D{{Key: "email", Value: ""}}},
		}
		if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int64(i % n)}}, u); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// BenchmarkFindByID measures findOne by _id in a 100k-document collection.
func BenchmarkFindByID(b *testing.B) {
	_, client := crudStart(b, "")
	coll := client.Database("bench").Collection("find")
	const n = 100_000
	benchLoad(b, coll, n)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		var d bson.D
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: int64(i * 7919 % n)}}).Decode(&d); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "finds/s")
}

// BenchmarkFilteredScan100k measures a filtered find that scans 100k
// documents and returns 1% of them.
func BenchmarkFilteredScan100k(b *testing.B) {
	_, client := crudStart(b, "")
	coll := client.Database("bench").Collection("scan")
	const n = 100_000
	benchLoad(b, coll, n)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		cur, err := coll.Find(ctx, bson.D{{Key: "n", Value: int32(42)}, {Key: "active", Value: true}}, options.Find().SetBatchSize(1000))
		if err != nil {
			b.Fatal(err)
		}
		var docs []bson.D
		if err := cur.All(ctx, &docs); err != nil {
			b.Fatal(err)
		}
		if len(docs) != n/100 {
			b.Fatalf("got %d documents, want %d", len(docs), n/100)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "scanned-docs/s")
}

// BenchmarkOplogTail measures what an oplog-polling tool does: after
// 100,000 inserts, a find of the entries after the 99,990th's ts.
func BenchmarkOplogTail(b *testing.B) {
	_, client := crudStart(b, "")
	const n = 100_000
	benchLoad(b, client.Database("bench").Collection("tail"), n)
	oplog := client.Database("local").Collection("oplog.rs")
	ctx := context.Background()
	var last []bson.D
	cur, err := oplog.Find(ctx, bson.D{{Key: "ns", Value: "bench.tail"}}, options.Find().SetSort(bson.D{{Key: "$natural", Value: -1}}).SetLimit(11))
	if err != nil {
		b.Fatal(err)
	}
	if err := cur.All(ctx, &last); err != nil || len(last) != 11 {
		b.Fatalf("the last entries: %d, %v", len(last), err)
	}
	var from any
	for _, e := range last[10] {
		if e.Key == "ts" {
			from = e.Value
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		cur, err := oplog.Find(ctx, bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: from}}}})
		if err != nil {
			b.Fatal(err)
		}
		var docs []bson.D
		if err := cur.All(ctx, &docs); err != nil {
			b.Fatal(err)
		}
		if len(docs) != 10 {
			b.Fatalf("got %d entries, want 10", len(docs))
		}
	}
}
