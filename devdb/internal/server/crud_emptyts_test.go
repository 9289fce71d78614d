package server

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// lastOplogTime returns the cluster time of the newest oplog entry.
func lastOplogTime(t *testing.T, c *mongo.Client) bson.Timestamp {
	t.Helper()
	ents := oplogEntries(t, c, bson.D{}, options.Find().SetSort(bson.D{{Key: "$natural", Value: -1}}).SetLimit(1))
	ts, ok := get(ents[0], "ts").(bson.Timestamp)
	if !ok {
		t.Fatalf("newest oplog entry %v has no ts", ents[0])
	}
	return ts
}

// storedDocument returns the newest whole document the oplog holds, after
// the cluster time from, for the document with _id id of ns: the o of an
// insert or of a replacement, also inside a transaction's applyOps.
func storedDocument(t *testing.T, c *mongo.Client, from bson.Timestamp, ns string, id any) bson.D {
	t.Helper()
	var last bson.D
	var visit func(ent bson.D)
	visit = func(ent bson.D) {
		o, _ := get(ent, "o").(bson.D)
		if ops, ok := get(o, "applyOps").(bson.A); ok {
			for _, op := range ops {
				sub, _ := op.(bson.D)
				visit(sub)
			}
			return
		}
		if get(ent, "ns") != ns || !reflect.DeepEqual(get(o, "_id"), id) {
			return
		}
		switch op := get(ent, "op"); {
		case op == "i", op == "u" && get(o, "$v") == nil:
			last = o
		}
	}
	for _, ent := range oplogEntries(t, c, bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: from}}}}) {
		visit(ent)
	}
	return last
}

// sameDocument reports whether a and b encode to the same bytes.
func sameDocument(t *testing.T, a, b bson.D) bool {
	t.Helper()
	ra, err := bson.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := bson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ra, rb)
}

// TestEmptyTimestampsFilledIn: as MongoDB 6.0, devdb replaces the empty
// timestamp Timestamp(0, 0) of a top-level field other than _id with a new
// cluster time in the documents inserts store (insert, $out) and in
// replacement documents (replaceOne, upserts with a replacement,
// findOneAndReplace, $merge's replace, insert and supplied-document
// writes), and keeps it in embedded fields, in _id and in what update
// operators, pipelines and operator upserts write. Each time filled in is
// later than every write before, earlier than the write's own change event
// (its oplog entry), and later than the one filled in before it; the
// change event's fullDocument and the oplog entry hold the stored document.
func TestEmptyTimestampsFilledIn(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	db := c.Database("emptyts")
	zero, one := bson.Timestamp{}, bson.Timestamp{T: 0, I: 1}
	d := func(kv ...any) bson.D {
		out := bson.D{}
		for i := 0; i < len(kv); i += 2 {
			out = append(out, bson.E{Key: kv[i].(string), Value: kv[i+1]})
		}
		return out
	}
	pad := strings.Repeat("p", 200)
	// aggregate runs {$documents: docs} and then stage on the database.
	aggregate := func(ctx context.Context, stage bson.D, docs ...any) error {
		cur, err := db.Aggregate(ctx, mongo.Pipeline{{{Key: "$documents", Value: bson.A(docs)}}, stage})
		if err == nil {
			err = cur.Close(ctx)
		}
		return err
	}
	type op func(ctx context.Context, coll *mongo.Collection) (bson.D, error)
	tests := []struct {
		name   string
		setup  []any
		op     op
		filled []string // top-level fields filled in, in field order, in every document
		kept   bson.D   // values at dotted paths every document keeps
		events []string // the change events' operation types, one per document by _id; nil: not checked
	}{
		{"insert", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.InsertOne(ctx, d("_id", 1, "t", zero, "n", d("t", zero), "a", bson.A{zero}, "one", one))
			return nil, err
		}, []string{"t"}, d("n.t", zero, "a", bson.A{zero}, "one", one), []string{"insert"}},
		{"insert keeps an empty _id", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.InsertOne(ctx, d("_id", zero, "t", zero))
			return nil, err
		}, []string{"t"}, d("_id", zero), []string{"insert"}},
		{"insert without _id", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.InsertOne(ctx, d("t", zero, "x", int32(1)))
			return nil, err
		}, []string{"t"}, d("x", int32(1)), []string{"insert"}},
		{"insert of two empty timestamps", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.InsertOne(ctx, d("_id", 1, "t1", zero, "x", 1, "t2", zero))
			return nil, err
		}, []string{"t1", "t2"}, nil, []string{"insert"}},
		{"insertMany", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.InsertMany(ctx, []any{d("_id", 1, "t", zero), d("_id", 2, "t", zero), d("_id", 3, "t", zero)})
			return nil, err
		}, []string{"t"}, nil, []string{"insert", "insert", "insert"}},
		{"bulk write", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.BulkWrite(ctx, []mongo.WriteModel{
				mongo.NewInsertOneModel().SetDocument(d("_id", 1, "t", zero)),
				mongo.NewReplaceOneModel().SetFilter(d("_id", 2)).SetReplacement(d("t", zero)).SetUpsert(true),
			})
			return nil, err
		}, []string{"t"}, nil, []string{"insert", "insert"}},
		{"replaceOne", []any{d("_id", 1, "t", "old")}, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.ReplaceOne(ctx, d("_id", 1), d("t", zero, "n", d("t", zero)))
			return nil, err
		}, []string{"t"}, d("n.t", zero), []string{"replace"}},
		{"replaceOne upsert", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.ReplaceOne(ctx, d("_id", 1), d("t", zero), options.Replace().SetUpsert(true))
			return nil, err
		}, []string{"t"}, nil, []string{"insert"}},
		{"findOneAndReplace", []any{d("_id", 1)}, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			var out bson.D
			err := coll.FindOneAndReplace(ctx, d("_id", 1), d("t", zero), options.FindOneAndReplace().SetReturnDocument(options.After)).Decode(&out)
			return out, err
		}, []string{"t"}, nil, []string{"replace"}},
		{"findOneAndReplace upsert", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			var out bson.D
			err := coll.FindOneAndReplace(ctx, d("_id", 1), d("t", zero), options.FindOneAndReplace().SetUpsert(true).SetReturnDocument(options.After)).Decode(&out)
			return out, err
		}, []string{"t"}, nil, []string{"insert"}},
		{"$set keeps it", []any{d("_id", 1, "pad", pad)}, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.UpdateOne(ctx, d("_id", 1), d("$set", d("t", zero)))
			return nil, err
		}, nil, d("t", zero), []string{"update"}},
		{"findOneAndUpdate keeps it", []any{d("_id", 1, "pad", pad)}, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			var out bson.D
			err := coll.FindOneAndUpdate(ctx, d("_id", 1), d("$set", d("t", zero)), options.FindOneAndUpdate().SetReturnDocument(options.After)).Decode(&out)
			return out, err
		}, nil, d("t", zero), []string{"update"}},
		{"upsert with $set keeps it", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.UpdateOne(ctx, d("_id", 1), d("$set", d("t", zero)), options.UpdateOne().SetUpsert(true))
			return nil, err
		}, nil, d("t", zero), []string{"insert"}},
		{"upsert with $setOnInsert keeps it", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.UpdateOne(ctx, d("_id", 1), d("$setOnInsert", d("t", zero)), options.UpdateOne().SetUpsert(true))
			return nil, err
		}, nil, d("t", zero), []string{"insert"}},
		{"upsert seeded from the filter keeps it", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.UpdateOne(ctx, d("_id", 1, "t", zero), d("$set", d("x", 1)), options.UpdateOne().SetUpsert(true))
			return nil, err
		}, nil, d("t", zero), []string{"insert"}},
		{"pipeline update keeps it", []any{d("_id", 1, "pad", pad)}, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			_, err := coll.UpdateOne(ctx, d("_id", 1), mongo.Pipeline{d("$set", d("t", d("$literal", zero)))})
			return nil, err
		}, nil, d("t", zero), []string{"update"}},
		{"insert in a transaction", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			sess, err := c.StartSession()
			if err != nil {
				return nil, err
			}
			defer sess.EndSession(ctx)
			_, err = sess.WithTransaction(ctx, func(sctx context.Context) (any, error) {
				if _, err := coll.InsertOne(sctx, d("_id", 1, "t", zero)); err != nil {
					return nil, err
				}
				return coll.ReplaceOne(sctx, d("_id", 2), d("t", zero), options.Replace().SetUpsert(true))
			})
			return nil, err
		}, []string{"t"}, nil, []string{"insert", "insert"}},
		{"$out", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			return nil, aggregate(ctx, d("$out", coll.Name()), d("_id", 1, "t", zero, "n", d("t", zero)), d("_id", 2, "t", zero, "n", d("t", zero)))
		}, []string{"t"}, d("n.t", zero), nil},
		{"$merge replace, insert", []any{d("_id", 1, "x", 1)}, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			return nil, aggregate(ctx, d("$merge", d("into", coll.Name(), "whenMatched", "replace")), d("_id", 1, "t", zero), d("_id", 2, "t", zero))
		}, []string{"t"}, nil, []string{"replace", "insert"}},
		{"$merge pipeline, insert", nil, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			return nil, aggregate(ctx, d("$merge", d("into", coll.Name(), "whenMatched", bson.A{d("$set", d("y", 1))})), d("_id", 1, "t", zero))
		}, []string{"t"}, nil, []string{"insert"}},
		{"$merge merge keeps it", []any{d("_id", 1, "pad", pad)}, func(ctx context.Context, coll *mongo.Collection) (bson.D, error) {
			return nil, aggregate(ctx, d("$merge", d("into", coll.Name(), "whenMatched", "merge")), d("_id", 1, "t", zero), d("_id", 2, "t", zero))
		}, nil, d("t", zero), []string{"update", "insert"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			coll := db.Collection(fmt.Sprintf("c%d", i))
			if len(tc.setup) > 0 {
				if _, err := coll.InsertMany(ctx, tc.setup); err != nil {
					t.Fatal(err)
				}
			}
			before := lastOplogTime(t, c)
			cs := watchStream(t, coll, nil)
			returned, err := tc.op(ctx, coll)
			if err != nil {
				t.Fatal(err)
			}
			cur, err := coll.Find(ctx, bson.D{}, options.Find().SetSort(d("_id", 1)))
			if err != nil {
				t.Fatal(err)
			}
			var docs []bson.D
			if err := cur.All(ctx, &docs); err != nil {
				t.Fatal(err)
			}
			if tc.events != nil && len(docs) != len(tc.events) {
				t.Fatalf("stored %v, want %d documents", docs, len(tc.events))
			}
			if returned != nil && !sameDocument(t, returned, docs[0]) {
				t.Errorf("command returned %v, stored %v", returned, docs[0])
			}
			after := lastOplogTime(t, c)
			prev := before
			for j, doc := range docs {
				limit := after
				if tc.events != nil {
					ev := nextEvent(t, cs)
					if get(ev, "operationType") != tc.events[j] {
						t.Fatalf("event %v, want %s", ev, tc.events[j])
					}
					limit, _ = get(ev, "clusterTime").(bson.Timestamp)
					if full, ok := get(ev, "fullDocument").(bson.D); ok && !sameDocument(t, full, doc) {
						t.Errorf("event's fullDocument %v, stored %v", full, doc)
					}
					if tc.events[j] != "update" {
						o := storedDocument(t, c, before, coll.Database().Name()+"."+coll.Name(), get(doc, "_id"))
						if !sameDocument(t, o, doc) {
							t.Errorf("oplog holds %v, stored %v", o, doc)
						}
					}
				}
				for _, f := range tc.filled {
					ts, ok := get(doc, f).(bson.Timestamp)
					switch {
					case !ok || ts.IsZero():
						t.Errorf("%s of %v is not filled in", f, doc)
					case ts.Compare(prev) <= 0 || ts.Compare(limit) >= 0:
						t.Errorf("%s = %v, want after %v (the write before or the previous value) and before %v (the write's entry)", f, ts, prev, limit)
					}
					prev = ts
				}
				for _, k := range tc.kept {
					if got := get(doc, strings.Split(k.Key, ".")...); !reflect.DeepEqual(got, k.Value) {
						t.Errorf("%s of %v = %v, want %v kept", k.Key, doc, got, k.Value)
					}
				}
			}
		})
	}
}
