package server_test

import (
	"bytes"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
)

// TestChangeStreamBatchAbandonedOnError: when producing one event fails
// (here the user's pipeline divides by zero on the second event), the
// command reading it fails as a whole, as MongoDB's getMore and aggregate
// abandon the batch they were building: the event before it in the same
// batch is not returned, the driver's resume token stays at the last batch
// it received, and a stream resumed from there reads that event again. Read
// one event per batch, the event before the failing one is returned and the
// next getMore fails.
func TestChangeStreamBatchAbandonedOnError(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	coll := client.Database("abandon").Collection("c")
	div := mongo.Pipeline{{{Key: "$addFields", Value: bson.D{{Key: "q", Value: bson.D{{Key: "$divide", Value: bson.A{int32(1), "$fullDocument.n"}}}}}}}}
	cs := csWatch(t, coll, div, nil)
	start := cs.ResumeToken()
	mustDo(t, func() error {
		_, err := coll.InsertMany(ctx, []any{
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}},
			bson.D{{Key: "_id", Value: int32(2)}, {Key: "n", Value: int32(0)}},
			bson.D{{Key: "_id", Value: int32(3)}, {Key: "n", Value: int32(1)}},
		})
		return err
	})

	// One getMore reads events 1 and 2: it fails, and returns neither.
	if cs.Next(ctx) {
		t.Fatalf("read %s, want the getMore to fail with BadValue (2)", cs.Current)
	}
	if code := csCode(cs.Err()); code != 2 {
		t.Fatalf("getMore error %v (code %d), want BadValue (2)", cs.Err(), code)
	}
	if got := cs.ResumeToken(); !bytes.Equal(got, start) {
		t.Errorf("resume token after the failed getMore %s, want the last batch's %s", got, start)
	}

	// The aggregate's first batch fails the same way.
	first, err := coll.Watch(ctx, div, options.ChangeStream().SetResumeAfter(start))
	if err == nil {
		_ = first.Close(ctx)
		t.Fatal("the aggregate returned a first batch, want it to fail with BadValue (2)")
	}
	if code := csCode(err); code != 2 {
		t.Fatalf("aggregate error %v (code %d), want BadValue (2)", err, code)
	}

	// One event per batch: event 1, then the getMore reading event 2 fails.
	one := csWatch(t, coll, div, options.ChangeStream().SetResumeAfter(start).SetBatchSize(1))
	csField(t, csNext(t, one), "documentKey", bson.D{{Key: "_id", Value: int32(1)}})
	if one.Next(ctx) {
		t.Fatalf("read %s, want the getMore to fail with BadValue (2)", one.Current)
	}
	if code := csCode(one.Err()); code != 2 {
		t.Fatalf("getMore error %v (code %d), want BadValue (2)", one.Err(), code)
	}
}
