package server_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/proccpu"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// benchLargeDoc is a document shaped like changehook's delivery-history
// buckets (~130 KB): 512 strings and 512 small documents in two arrays and a
// 100 KB binary.
func benchLargeDoc(id int64) bson.D {
	ids := make(bson.A, 512)
	keys := make(bson.A, 512)
	for i := range ids {
		ids[i] = fmt.Sprintf("msg_%024x", int(id)*512+i)
		keys[i] = bson.D{{Key: "_id", Value: bson.NewObjectID()}}
	}
	now := time.Now()
	return bson.D{{Key: "_id", Value: id}, {Key: "trigger", Value: "orders"}, {Key: "first", Value: now}, {Key: "last", Value: now},
		{Key: "n", Value: int32(512)}, {Key: "failed", Value: false}, {Key: "webhookIds", Value: ids}, {Key: "documentKeys", Value: keys},
		{Key: "records", Value: bson.Binary{Data: bytes.Repeat([]byte{'r'}, 100<<10)}}}
}

// reportCPU reports the process's CPU time per operation since start (the
// client's and the server's together) as cpu-ns/op: on a shared machine a
// steadier measure than the wall time, which also includes the fsync of
// every commit.
func reportCPU(b *testing.B, start time.Duration) {
	end := proccpu.Self()
	if start > 0 && end > start && b.N > 0 {
		b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkInsertLarge measures inserting one ~130 KB document per
// InsertOne.
func BenchmarkInsertLarge(b *testing.B) {
	_, client := crudStart(b, "")
	coll := client.Database("bench").Collection("large")
	ctx := context.Background()
	doc := benchLargeDoc(0)
	b.ReportAllocs()
	var id int64
	cpu := proccpu.Self()
	for b.Loop() {
		id++
		doc[0].Value = id
		if _, err := coll.InsertOne(ctx, doc); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu)
}

// BenchmarkDeleteLarge measures deleting one ~130 KB document per
// DeleteOne by _id (the documents are inserted before the timer starts).
func BenchmarkDeleteLarge(b *testing.B) {
	_, client := crudStart(b, "")
	coll := client.Database("bench").Collection("large")
	ctx := context.Background()
	doc := benchLargeDoc(0)
	batch := make([]any, 0, 64)
	for i := range b.N {
		d := append(bson.D(nil), doc...)
		d[0].Value = int64(i)
		batch = append(batch, d)
		if len(batch) == cap(batch) || i == b.N-1 {
			if _, err := coll.InsertMany(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := proccpu.Self()
	for i := range b.N {
		if res, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: int64(i)}}); err != nil || res.DeletedCount != 1 {
			b.Fatal(res, err)
		}
	}
	reportCPU(b, cpu)
}
