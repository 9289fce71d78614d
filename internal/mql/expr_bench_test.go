package mql

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// aggBenchEvent is a typical update change event.
func aggBenchEvent() bson.D {
	return bson.D{
		{Key: "_id", Value: bson.D{{Key: "_data", Value: "8263A1B2C3000000012B022C0100296E5A1004"}}},
		{Key: "operationType", Value: "update"},
		{Key: "clusterTime", Value: bson.Timestamp{T: 1700000000, I: 1}},
		{Key: "wallTime", Value: bson.DateTime(1700000000000)},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "inventory"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: bson.ObjectID{1, 2, 3}}}},
		{Key: "fullDocument", Value: bson.D{
			{Key: "_id", Value: bson.ObjectID{1, 2, 3}},
			{Key: "sku", Value: "A-100"},
			{Key: "quantity", Value: int32(3)},
			{Key: "price", Value: 19.99},
			{Key: "tags", Value: bson.A{"red", "sale"}},
		}},
	}
}

// BenchmarkEvalPayload evaluates a Slack-style payload template against a
// change event.
func BenchmarkEvalPayload(b *testing.B) {
	spec := bson.D{
		{Key: "text", Value: bson.D{{Key: "$concat", Value: bson.A{
			"Only ", bson.D{{Key: "$toString", Value: "$fullDocument.quantity"}}, " left of ", "$fullDocument.sku",
		}}}},
		{Key: "value", Value: bson.D{{Key: "$multiply", Value: bson.A{"$fullDocument.quantity", "$fullDocument.price"}}}},
		{Key: "low", Value: bson.D{{Key: "$lt", Value: bson.A{"$fullDocument.quantity", 5}}}},
		{Key: "when", Value: bson.D{{Key: "$dateToString", Value: bson.D{{Key: "date", Value: "$wallTime"}}}}},
		{Key: "tags", Value: bson.D{{Key: "$size", Value: "$fullDocument.tags"}}},
	}
	e, err := CompileExpr(spec)
	if err != nil {
		b.Fatal(err)
	}
	event := aggBenchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Eval(event); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyOneChangeStream runs a typical change stream pipeline on
// one event.
func BenchmarkApplyOneChangeStream(b *testing.B) {
	p, err := CompilePipeline([]bson.D{
		{{Key: "$match", Value: bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "update"}}}}}}},
		{{Key: "$set", Value: bson.D{{Key: "low", Value: bson.D{{Key: "$lt", Value: bson.A{"$fullDocument.quantity", 5}}}}}}},
		{{Key: "$project", Value: bson.D{{Key: "fullDocument.sku", Value: 1}, {Key: "low", Value: 1}}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	event := aggBenchEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := p.ApplyOne(event); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGroup100k groups 100,000 documents into 100 groups.
func BenchmarkGroup100k(b *testing.B) {
	docs := make([]bson.D, 100_000)
	for i := range docs {
		docs[i] = bson.D{{Key: "k", Value: int32(i % 100)}, {Key: "v", Value: float64(i)}}
	}
	p, err := CompilePipeline([]bson.D{{{Key: "$group", Value: bson.D{
		{Key: "_id", Value: "$k"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: 1}}}, {Key: "avg", Value: bson.D{{Key: "$avg", Value: "$v"}}},
	}}}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, err := range p.Run(aggTestSource(docs)) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 100 {
			b.Fatalf("groups = %d", n)
		}
	}
}
