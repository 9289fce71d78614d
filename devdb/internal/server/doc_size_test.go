package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
	"github.com/changehook/changehook/devdb/internal/storage"
)

// TestWriteResultTooLarge: a write whose resulting document is larger than
// 16 MiB fails as on MongoDB 6.0 (jstests/core/max_doc_size.js) on every
// path, through the official driver: an update's operators, pipeline or
// replacement with Location17419 "Resulting document after update is larger
// than 16777216", an upsert with Location17420 "Document to upsert is larger
// than 16777216", an insert with BadValue "object to insert too large"; the
// update, insert and bulk paths as a writeErrors entry with the statement's
// index, findAndModify as a command error with MongoDB's executor context.
// Nothing is stored (the documents keep their bytes, nothing is upserted)
// and a database change stream opened before sees none of these writes: its
// next event is a later insert.
func TestWriteResultTooLarge(t *testing.T) {
	_, client := csStart(t, server.Options{})
	db := client.Database("size")
	// Sixteen cases writing and reading 16 MiB documents: longer than
	// csCtx's bound on a loaded machine (a bound, not a timing check).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	const max = storage.MaxDocumentSize
	const (
		updateMsg = "Resulting document after update is larger than 16777216"
		upsertMsg = "Document to upsert is larger than 16777216"
		famCtx    = "Plan executor error during findAndModify :: caused by :: "
	)
	// near is a document just under the limit; one more field of 200 bytes
	// takes it over.
	near := bson.D{{Key: "_id", Value: int32(1)}, {Key: "k", Value: int32(1)}, {Key: "s", Value: strings.Repeat("a", max-100)}}
	// longID has a 100-byte _id: a replacement without _id that fits a
	// statement is over the limit once the _id is added to it.
	longID := strings.Repeat("i", 100)
	small := bson.D{{Key: "_id", Value: longID}, {Key: "k", Value: int32(1)}}
	replacement := bson.D{{Key: "s", Value: strings.Repeat("r", max-50)}}
	half := strings.Repeat("h", max/2+100)
	grow := bson.D{{Key: "$set", Value: bson.D{{Key: "t", Value: strings.Repeat("b", 200)}}}}
	byID := func(id any) bson.D { return bson.D{{Key: "_id", Value: id}} }
	other := bson.D{{Key: "_id", Value: int32(2)}}
	insertTooLarge := bson.D{{Key: "_id", Value: int32(3)}, {Key: "s", Value: strings.Repeat("x", max)}}
	insertSize := len(mustMarshal(t, insertTooLarge))

	type result struct {
		command bool // a command error rather than a write error
		index   int
		code    int32
		msg     string
	}
	for _, tc := range []struct {
		name string
		seed []any
		run  func(c *mongo.Collection) error
		want result
	}{
		{"update operators", []any{near}, func(c *mongo.Collection) error {
			_, err := c.UpdateOne(ctx, byID(1), grow)
			return err
		}, result{code: 17419, msg: updateMsg}},
		{"update multi", []any{near}, func(c *mongo.Collection) error {
			_, err := c.UpdateMany(ctx, byID(1), grow)
			return err
		}, result{code: 17419, msg: updateMsg}},
		{"update pipeline", []any{near}, func(c *mongo.Collection) error {
			_, err := c.UpdateOne(ctx, byID(1), mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "t", Value: "$s"}}}}})
			return err
		}, result{code: 17419, msg: updateMsg}},
		{"update replacement", []any{small}, func(c *mongo.Collection) error {
			_, err := c.ReplaceOne(ctx, bson.D{{Key: "k", Value: int32(1)}}, replacement)
			return err
		}, result{code: 17419, msg: updateMsg}},
		{"update replacement, upsert matching", []any{small}, func(c *mongo.Collection) error {
			_, err := c.ReplaceOne(ctx, bson.D{{Key: "k", Value: int32(1)}}, replacement, options.Replace().SetUpsert(true))
			return err
		}, result{code: 17419, msg: updateMsg}},
		{"upsert operators", nil, func(c *mongo.Collection) error {
			_, err := c.UpdateOne(ctx, bson.D{{Key: "k", Value: half}}, bson.D{{Key: "$set", Value: bson.D{{Key: "t", Value: half}}}}, options.UpdateOne().SetUpsert(true))
			return err
		}, result{code: 17420, msg: upsertMsg}},
		{"upsert pipeline", nil, func(c *mongo.Collection) error {
			_, err := c.UpdateOne(ctx, bson.D{{Key: "k", Value: half}}, mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "t", Value: "$k"}}}}}, options.UpdateOne().SetUpsert(true))
			return err
		}, result{code: 17420, msg: upsertMsg}},
		{"bulkWrite", []any{near, other}, func(c *mongo.Collection) error {
			_, err := c.BulkWrite(ctx, []mongo.WriteModel{
				mongo.NewUpdateOneModel().SetFilter(byID(2)).SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: int32(1)}}}}),
				mongo.NewUpdateOneModel().SetFilter(byID(1)).SetUpdate(grow),
			})
			return err
		}, result{index: 1, code: 17419, msg: updateMsg}},
		{"bulkWrite replacement", []any{small}, func(c *mongo.Collection) error {
			_, err := c.BulkWrite(ctx, []mongo.WriteModel{mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "k", Value: int32(1)}}).SetReplacement(replacement)})
			return err
		}, result{code: 17419, msg: updateMsg}},
		{"insert", nil, func(c *mongo.Collection) error {
			_, err := c.InsertOne(ctx, insertTooLarge)
			return err
		}, result{code: 2, msg: fmt.Sprintf("object to insert too large. size in bytes: %d, max size: 16777216", insertSize)}},
		{"insert unordered", nil, func(c *mongo.Collection) error {
			_, err := c.InsertMany(ctx, []any{insertTooLarge, other}, options.InsertMany().SetOrdered(false))
			return err
		}, result{index: 0, code: 2, msg: fmt.Sprintf("object to insert too large. size in bytes: %d, max size: 16777216", insertSize)}},
		{"findAndModify operators", []any{near}, func(c *mongo.Collection) error {
			return c.FindOneAndUpdate(ctx, byID(1), grow).Err()
		}, result{command: true, code: 17419, msg: famCtx + updateMsg}},
		{"findAndModify pipeline", []any{near}, func(c *mongo.Collection) error {
			return c.FindOneAndUpdate(ctx, byID(1), mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "t", Value: "$s"}}}}}).Err()
		}, result{command: true, code: 17419, msg: famCtx + updateMsg}},
		{"findAndModify replacement", []any{small}, func(c *mongo.Collection) error {
			return c.FindOneAndReplace(ctx, bson.D{{Key: "k", Value: int32(1)}}, replacement).Err()
		}, result{command: true, code: 17419, msg: famCtx + updateMsg}},
		{"findAndModify upsert operators", nil, func(c *mongo.Collection) error {
			return c.FindOneAndUpdate(ctx, bson.D{{Key: "k", Value: half}}, bson.D{{Key: "$set", Value: bson.D{{Key: "t", Value: half}}}}, options.FindOneAndUpdate().SetUpsert(true)).Err()
		}, result{command: true, code: 17420, msg: famCtx + upsertMsg}},
		{"findAndModify upsert replacement", nil, func(c *mongo.Collection) error {
			return c.FindOneAndReplace(ctx, byID(longID), replacement, options.FindOneAndReplace().SetUpsert(true)).Err()
		}, result{command: true, code: 17420, msg: famCtx + upsertMsg}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := db.Collection(strings.ReplaceAll(tc.name, " ", "_"))
			mustDo(t, func() error { return db.CreateCollection(ctx, c.Name()) })
			if len(tc.seed) > 0 {
				mustDo(t, func() error { _, err := c.InsertMany(ctx, tc.seed); return err })
			}
			before := collectionBytes(t, c)
			cs := csWatch(t, db, nil, nil)

			err := tc.run(c)
			var got result
			var we mongo.WriteException
			var be mongo.BulkWriteException
			var ce mongo.CommandError
			switch {
			case errors.As(err, &we) && len(we.WriteErrors) == 1 && we.WriteConcernError == nil:
				got = result{index: we.WriteErrors[0].Index, code: int32(we.WriteErrors[0].Code), msg: we.WriteErrors[0].Message}
			case errors.As(err, &be) && len(be.WriteErrors) == 1 && be.WriteConcernError == nil:
				got = result{index: be.WriteErrors[0].Index, code: int32(be.WriteErrors[0].Code), msg: be.WriteErrors[0].Message}
			case errors.As(err, &ce):
				got = result{command: true, code: ce.Code, msg: ce.Message}
			default:
				t.Fatalf("err = %v (%T), want %+v", err, err, tc.want)
			}
			if got != tc.want {
				t.Errorf("error %+v\nwant  %+v", got, tc.want)
			}

			after := collectionBytes(t, c)
			// What a bulk write or an unordered insert did besides the
			// failing statement is kept, as on MongoDB.
			switch tc.name {
			case "bulkWrite":
				before[1] = mustMarshal(t, bson.D{{Key: "_id", Value: int32(2)}, {Key: "n", Value: int32(1)}})
			case "insert unordered":
				before = append(before, mustMarshal(t, other))
			}
			if len(after) != len(before) {
				t.Fatalf("%d documents stored after the failed write, want %d", len(after), len(before))
			}
			for i := range before {
				if !bytes.Equal(before[i], after[i]) {
					t.Errorf("document %d changed by the failed write (%d bytes, was %d)", i, len(after[i]), len(before[i]))
				}
			}

			// The stream's next event is the marker insert, or, after a
			// partly successful write, the successful statement's event.
			mustDo(t, func() error { _, err := db.Collection("marker").InsertOne(ctx, bson.D{}); return err })
			ev := csNext(t, cs)
			switch tc.name {
			case "bulkWrite":
				wantEvent(t, ev, "update", c.Name())
				ev = csNext(t, cs)
			case "insert unordered":
				wantEvent(t, ev, "insert", c.Name())
				ev = csNext(t, cs)
			}
			wantEvent(t, ev, "insert", "marker")
		})
	}
}

// wantEvent checks a change event's operationType and collection.
func wantEvent(t *testing.T, ev bson.D, op, coll string) {
	t.Helper()
	var e struct {
		OperationType string `bson:"operationType"`
		NS            struct {
			Coll string `bson:"coll"`
		} `bson:"ns"`
	}
	raw := mustMarshal(t, ev)
	if err := bson.Unmarshal(raw, &e); err != nil || e.OperationType != op || e.NS.Coll != coll {
		t.Fatalf("event %s %s (%v), want %s on %s", e.OperationType, e.NS.Coll, err, op, coll)
	}
}

// collectionBytes returns the stored documents of c, in _id order, as BSON.
func collectionBytes(t *testing.T, c *mongo.Collection) [][]byte {
	t.Helper()
	cur, err := c.Find(csCtx(t), bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
	if err != nil {
		t.Fatalf("find: %v", err)
	}
	var out [][]byte
	for cur.Next(csCtx(t)) {
		out = append(out, bytes.Clone(cur.Current))
	}
	if err := cur.Err(); err != nil {
		t.Fatalf("find: %v", err)
	}
	return out
}

// mustMarshal encodes v as BSON.
func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}
