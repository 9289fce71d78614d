package server_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
	"github.com/changehook/changehook/internal/proccpu"
)

// BenchmarkChangeStreamLatency measures how long a write takes to reach a
// change stream that is already waiting in getMore: the time from issuing
// insertOne to the driver's Next returning the event. It reports the median
// and 99th percentile.
func BenchmarkChangeStreamLatency(b *testing.B) {
	srv, reader := csStart(b, server.Options{})
	writer := csConnect(b, srv.URI())
	ctx := context.Background()
	watched := reader.Database("bench").Collection("latency")
	target := writer.Database("bench").Collection("latency")
	cs, err := watched.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(5*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cs.Close(ctx) })

	type result struct {
		ok  bool
		err error
	}
	next := make(chan result)
	want := make(chan struct{})
	go func() {
		for range want {
			ok := cs.Next(ctx)
			next <- result{ok, cs.Err()}
		}
	}()
	b.Cleanup(func() { close(want) })

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want <- struct{}{} // the reader is (or soon will be) waiting in getMore
		start := time.Now()
		if _, err := target.InsertOne(ctx, bson.D{{Key: "i", Value: int32(i)}}); err != nil {
			b.Fatal(err)
		}
		r := <-next
		if !r.ok {
			b.Fatalf("stream ended: %v", r.err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkChangeStreamBacklog measures how fast one stream reads a backlog
// of insert events (resumed from before the writes), in events per second.
func BenchmarkChangeStreamBacklog(b *testing.B) { benchBacklog(b, mongo.Pipeline{}) }

// BenchmarkChangeStreamBacklogMatch is BenchmarkChangeStreamBacklog with
// the $match stage a changehook trigger sends (triggers.Trigger.Pipeline):
// invalidate or one of the trigger's operation types.
func BenchmarkChangeStreamBacklogMatch(b *testing.B) {
	benchBacklog(b, mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "$or", Value: bson.A{
		bson.D{{Key: "operationType", Value: "invalidate"}},
		bson.D{{Key: "operationType", Value: bson.D{{Key: "$in", Value: bson.A{"insert", "update", "replace", "delete"}}}}},
	}}}}}})
}

// BenchmarkChangeStreamBacklogUpdate is BenchmarkChangeStreamBacklog for a
// backlog of update events: 20,000 documents inserted, then each updated
// once (a changed field, a nested field, an element appended to an array, a
// removed field), read from after the inserts; it reports events per second.
func BenchmarkChangeStreamBacklogUpdate(b *testing.B) { benchBacklogUpdate(b, options.ChangeStream()) }

// BenchmarkChangeStreamBacklogUpdateLookup is
// BenchmarkChangeStreamBacklogUpdate with fullDocument: updateLookup.
func BenchmarkChangeStreamBacklogUpdateLookup(b *testing.B) {
	benchBacklogUpdate(b, options.ChangeStream().SetFullDocument(options.UpdateLookup))
}

// benchBacklogUpdate writes 20,000 documents, then updates each once, and
// reads the update events b.N times with a stream opened with opts.
func benchBacklogUpdate(b *testing.B, opts *options.ChangeStreamOptionsBuilder) {
	_, client := csStart(b, server.Options{})
	ctx := context.Background()
	coll := client.Database("bench").Collection("backlog")
	const total = 20000
	docs := make([]any, 0, 1000)
	for i := 0; i < total; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: int32(i)}, {Key: "name", Value: "item"}, {Key: "qty", Value: int32(i % 100)},
			{Key: "tags", Value: bson.A{"a", "b"}}, {Key: "dims", Value: bson.D{{Key: "h", Value: 1.5}, {Key: "w", Value: 2.5}}}, {Key: "note", Value: "x"}})
		if len(docs) == cap(docs) {
			if _, err := coll.InsertMany(ctx, docs); err != nil {
				b.Fatal(err)
			}
			docs = docs[:0]
		}
	}
	start, err := coll.Watch(ctx, mongo.Pipeline{})
	if err != nil {
		b.Fatal(err)
	}
	token := start.ResumeToken()
	_ = start.Close(ctx)
	res, err := coll.UpdateMany(ctx, bson.D{}, bson.D{
		{Key: "$inc", Value: bson.D{{Key: "qty", Value: int32(1)}}},
		{Key: "$set", Value: bson.D{{Key: "dims.h", Value: 3.0}}},
		{Key: "$push", Value: bson.D{{Key: "tags", Value: "c"}}},
		{Key: "$unset", Value: bson.D{{Key: "note", Value: ""}}},
	})
	if err != nil || res.ModifiedCount != total {
		b.Fatalf("update: %v, %+v", err, res)
	}
	b.ResetTimer()
	cpu0 := proccpu.Self()
	events := 0
	for i := 0; i < b.N; i++ {
		cs, err := coll.Watch(ctx, mongo.Pipeline{}, opts.SetResumeAfter(token).SetBatchSize(1000))
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
	if cpu := proccpu.Self() - cpu0; cpu > 0 {
		// Client and server together, as baseline (a) of changehook-bench.
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(events), "cpu-ns/event")
	}
}

// benchBacklog writes 20,000 inserts, then reads them b.N times with a
// stream running pipeline, resumed from before the writes; it reports
// events per second.
func benchBacklog(b *testing.B, pipeline mongo.Pipeline) {
	_, client := csStart(b, server.Options{})
	ctx := context.Background()
	coll := client.Database("bench").Collection("backlog")
	const total = 20000
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
	cpu0 := proccpu.Self()
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
	if cpu := proccpu.Self() - cpu0; cpu > 0 {
		// Client and server together, as baseline (a) of changehook-bench.
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(events), "cpu-ns/event")
	}
}
