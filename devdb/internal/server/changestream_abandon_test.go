package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
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

// TestChangeStreamExecutorErrorContext: every error raised while a change
// stream's batch is built carries the context MongoDB adds to executor
// errors — "Executor error during getMore :: caused by :: " on a getMore,
// "PlanExecutor error during aggregation :: caused by :: " on the
// aggregate — not only BSONObjectTooLarge; the code and labels are kept.
// That includes a resume point no longer in the oplog and a resume token
// that is not found, which MongoDB detects while reading the first batch.
func TestChangeStreamExecutorErrorContext(t *testing.T) {
	t.Parallel()
	const (
		getMoreCtx = "Executor error during getMore :: caused by :: "
		aggCtx     = "PlanExecutor error during aggregation :: caused by :: "
	)
	check := func(t *testing.T, what string, err error, code int, wantPrefix, wantMsg string, label string) {
		t.Helper()
		var ce mongo.CommandError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: %v, want a command error %d", what, err, code)
		}
		if int(ce.Code) != code || ce.Message != wantPrefix+wantMsg {
			t.Errorf("%s: (%d) %q, want (%d) %q", what, ce.Code, ce.Message, code, wantPrefix+wantMsg)
		}
		if label != "" && !ce.HasErrorLabel(label) {
			t.Errorf("%s: labels %v, want %s", what, ce.Labels, label)
		}
	}

	t.Run("pipeline error", func(t *testing.T) {
		t.Parallel()
		_, client := csStart(t, server.Options{})
		ctx := csCtx(t)
		coll := client.Database("ctx").Collection("c")
		div := mongo.Pipeline{{{Key: "$addFields", Value: bson.D{{Key: "q", Value: bson.D{{Key: "$divide", Value: bson.A{int32(1), "$fullDocument.n"}}}}}}}}
		cs := csWatch(t, coll, div, nil)
		start := cs.ResumeToken()
		mustDo(t, func() error {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(0)}})
			return err
		})
		if cs.Next(ctx) {
			t.Fatalf("read %s, want an error", cs.Current)
		}
		check(t, "getMore", cs.Err(), 2, getMoreCtx, "can't $divide by zero", "")
		_, err := coll.Watch(ctx, div, options.ChangeStream().SetResumeAfter(start))
		check(t, "aggregate", err, 2, aggCtx, "can't $divide by zero", "")
	})

	t.Run("resume token not found", func(t *testing.T) {
		t.Parallel()
		_, client := csStart(t, server.Options{})
		ctx := csCtx(t)
		db := client.Database("ctx")
		a := csWatch(t, db.Collection("a"), nil, nil)
		mustDo(t, func() error {
			_, err := db.Collection("a").InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}})
			return err
		})
		tok := csGet(csNext(t, a), "_id")
		mustDo(t, func() error {
			_, err := db.Collection("b").InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}})
			return err
		})
		_, err := db.Collection("b").Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(tok))
		var ce mongo.CommandError
		if !errors.As(err, &ce) || ce.Code != 280 || !strings.HasPrefix(ce.Message, aggCtx+"cannot resume stream; the resume token was not found. ") {
			t.Errorf("resume on another collection: %v, want ChangeStreamFatalError (280) after %q", err, aggCtx)
		}
	})

	t.Run("history lost", func(t *testing.T) {
		t.Parallel()
		_, client := csStart(t, server.Options{})
		ctx := csCtx(t)
		early := bson.Timestamp{T: 1, I: 1}
		_, err := client.Database("ctx").Collection("c").Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&early))
		check(t, "aggregate", err, 286, aggCtx, "Resume of change stream was not possible, as the resume point may no longer be in the oplog.", "NonResumableChangeStreamError")
	})
}

// TestChangeStreamHistoryLostFoundWhileReading: as on MongoDB, where the
// oplog scan finds out that a resume point has fallen off the oplog, an
// aggregate with an empty first batch (batchSize 0) reads nothing and
// succeeds; the first getMore then fails with ChangeStreamHistoryLost
// (286), non-resumable.
func TestChangeStreamHistoryLostFoundWhileReading(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	early := bson.Timestamp{T: 1, I: 1}
	cs, err := client.Database("lost").Collection("c").Watch(ctx, mongo.Pipeline{},
		options.ChangeStream().SetStartAtOperationTime(&early).SetBatchSize(0))
	if err != nil {
		t.Fatalf("aggregate with batchSize 0: %v, want it to succeed and the getMore to fail", err)
	}
	t.Cleanup(func() { _ = cs.Close(context.Background()) })
	if cs.Next(ctx) {
		t.Fatalf("read %s, want ChangeStreamHistoryLost", cs.Current)
	}
	var ce mongo.CommandError
	const want = "Executor error during getMore :: caused by :: Resume of change stream was not possible, as the resume point may no longer be in the oplog."
	if !errors.As(cs.Err(), &ce) || ce.Code != 286 || ce.Message != want || !ce.HasErrorLabel("NonResumableChangeStreamError") {
		t.Fatalf("getMore: %v, want ChangeStreamHistoryLost (286) %q, non-resumable", cs.Err(), want)
	}
}

// TestChangeStreamResumeTokenNotFound: as on MongoDB, whose oplog filter
// drops the entries a stream does not watch before the resume check, a
// stream resumed with a token it never produces (here an event of another
// collection) fails with ChangeStreamFatalError (280) only when it reads
// its first event after the token, and the message names that event's
// resume token in the server's notation. With no such event yet the
// aggregate succeeds.
func TestChangeStreamResumeTokenNotFound(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	db := client.Database("nf")
	a, b := db.Collection("a"), db.Collection("b")
	watchA := csWatch(t, a, nil, nil)
	watchB := csWatch(t, b, nil, nil)
	mustDo(t, func() error {
		_, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}})
		return err
	})
	tok := csGet(csNext(t, watchA), "_id")

	resumed := csWatch(t, b, nil, options.ChangeStream().SetResumeAfter(tok))
	mustDo(t, func() error {
		_, err := b.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(2)}})
		return err
	})
	bTok := csGet(csGet(csNext(t, watchB), "_id").(bson.D), "_data")
	if resumed.Next(ctx) {
		t.Fatalf("read %s, want ChangeStreamFatalError", resumed.Current)
	}
	var ce mongo.CommandError
	want := fmt.Sprintf(`Executor error during getMore :: caused by :: cannot resume stream; the resume token was not found. {_data: "%s"}`, bTok)
	if !errors.As(resumed.Err(), &ce) || ce.Code != 280 || ce.Message != want {
		t.Fatalf("getMore: %v, want ChangeStreamFatalError (280) %q", resumed.Err(), want)
	}
}
