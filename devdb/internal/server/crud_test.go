package server_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
	"github.com/changehook/changehook/internal/mongoerr"
)

// crudTimeout bounds every driver call in these tests.
const crudTimeout = 20 * time.Second

// crudStart starts devdb with data directory dir ("" = temporary) and
// returns a connected client; both are closed at cleanup.
func crudStart(t testing.TB, dir string) (*server.Server, *mongo.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), crudTimeout)
	defer cancel()
	srv, err := server.Start(ctx, server.Options{Data: dir})
	if err != nil {
		t.Fatalf("start devdb: %v", err)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		_ = srv.Close()
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), crudTimeout)
		defer cancel()
		_ = client.Disconnect(ctx)
		if err := srv.Close(); err != nil {
			t.Errorf("close devdb: %v", err)
		}
	})
	return srv, client
}

// crudCtx returns a context bounded by crudTimeout.
func crudCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), crudTimeout)
	t.Cleanup(cancel)
	return ctx
}

// crudAll runs find and decodes every document.
func crudAll(t testing.TB, coll *mongo.Collection, filter any, opts ...options.Lister[options.FindOptions]) []bson.D {
	t.Helper()
	ctx := crudCtx(t)
	cur, err := coll.Find(ctx, filter, opts...)
	if err != nil {
		t.Fatalf("find %v: %v", filter, err)
	}
	var out []bson.D
	if err := cur.All(ctx, &out); err != nil {
		t.Fatalf("find %v: all: %v", filter, err)
	}
	return out
}

// crudIDs returns the _id values of docs.
func crudIDs(docs []bson.D) []any {
	out := []any{}
	for _, d := range docs {
		for _, e := range d {
			if e.Key == "_id" {
				out = append(out, e.Value)
			}
		}
	}
	return out
}

// crudCode returns the server error code of err: the command error's code
// or the first write error's (0 when err is not a server error).
func crudCode(err error) mongoerr.Code {
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		return mongoerr.Code(ce.Code)
	}
	var we mongo.WriteException
	if errors.As(err, &we) && len(we.WriteErrors) > 0 {
		return mongoerr.Code(we.WriteErrors[0].Code)
	}
	var bwe mongo.BulkWriteException
	if errors.As(err, &bwe) && len(bwe.WriteErrors) > 0 {
		return mongoerr.Code(bwe.WriteErrors[0].Code)
	}
	return 0
}

func crudInsert(t testing.TB, coll *mongo.Collection, docs ...any) {
	t.Helper()
	if _, err := coll.InsertMany(crudCtx(t), docs); err != nil {
		t.Fatalf("insert: %v", err)
	}
}

func TestCRUDInsertFindAcrossBatches(t *testing.T) {
	_, client := crudStart(t, "")
	coll := client.Database("db").Collection("c")
	docs := make([]any, 250)
	for i := range docs {
		docs[i] = bson.D{{Key: "_id", Value: int32(i)}, {Key: "n", Value: int32(i % 10)}}
	}
	crudInsert(t, coll, docs...)
	tests := []struct {
		name    string
		filter  bson.D
		opts    *options.FindOptionsBuilder
		wantIDs []any
		wantLen int
	}{
		{"all in natural order across getMore", bson.D{}, options.Find().SetBatchSize(7), nil, 250},
		{"filter", bson.D{{Key: "n", Value: 3}}, options.Find().SetBatchSize(5), nil, 25},
		{"sort skip limit", bson.D{{Key: "n", Value: bson.D{{Key: "$lt", Value: 2}}}}, options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetSkip(1).SetLimit(3),
			[]any{int32(240), int32(231), int32(230)}, 3},
		{"limit smaller than batch", bson.D{}, options.Find().SetLimit(150).SetBatchSize(100), nil, 150},
		{"by _id of another numeric type", bson.D{{Key: "_id", Value: 42.0}}, nil, []any{int32(42)}, 1},
		{"by _id $eq", bson.D{{Key: "_id", Value: bson.D{{Key: "$eq", Value: int64(7)}}}}, nil, []any{int32(7)}, 1},
		{"by _id with more conditions", bson.D{{Key: "_id", Value: 7}, {Key: "n", Value: 8}}, nil, []any{}, 0},
		{"sort on two keys", bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{1, 11, 2, 12}}}}},
			options.Find().SetSort(bson.D{{Key: "n", Value: 1}, {Key: "_id", Value: -1}}), []any{int32(11), int32(1), int32(12), int32(2)}, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []bson.D
			if tc.opts != nil {
				got = crudAll(t, coll, tc.filter, tc.opts)
			} else {
				got = crudAll(t, coll, tc.filter)
			}
			if len(got) != tc.wantLen {
				t.Fatalf("got %d documents, want %d", len(got), tc.wantLen)
			}
			if tc.wantIDs != nil && !reflect.DeepEqual(crudIDs(got), tc.wantIDs) {
				t.Fatalf("ids = %v, want %v", crudIDs(got), tc.wantIDs)
			}
		})
	}
	// Natural order is insertion order, as in MongoDB.
	ids := crudIDs(crudAll(t, coll, bson.D{}, options.Find().SetBatchSize(3)))
	for i, id := range ids {
		if id != int32(i) {
			t.Fatalf("document %d has _id %v: not insertion order", i, id)
		}
	}
}

func TestCRUDProjection(t *testing.T) {
	_, client := crudStart(t, "")
	coll := client.Database("db").Collection("p")
	crudInsert(t, coll, bson.D{{Key: "_id", Value: 1}, {Key: "a", Value: 1}, {Key: "b", Value: bson.D{{Key: "c", Value: 2}, {Key: "d", Value: 3}}},
		{Key: "arr", Value: bson.A{1, 2, 3, 4}}})
	tests := []struct {
		name string
		proj bson.D
		want bson.D
	}{
		{"inclusion", bson.D{{Key: "a", Value: 1}}, bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(1)}}},
		{"exclusion and no _id", bson.D{{Key: "_id", Value: 0}, {Key: "b", Value: 0}, {Key: "arr", Value: 0}}, bson.D{{Key: "a", Value: int32(1)}}},
		{"dotted", bson.D{{Key: "b.c", Value: 1}, {Key: "_id", Value: 0}}, bson.D{{Key: "b", Value: bson.D{{Key: "c", Value: int32(2)}}}}},
		{"slice", bson.D{{Key: "arr", Value: bson.D{{Key: "$slice", Value: -2}}}, {Key: "a", Value: 0}, {Key: "b", Value: 0}},
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(3), int32(4)}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got bson.D
			if err := coll.FindOne(crudCtx(t), bson.D{}, options.FindOne().SetProjection(tc.proj)).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// Positional projection uses the filter's array match.
	var got bson.D
	err := coll.FindOne(crudCtx(t), bson.D{{Key: "arr", Value: bson.D{{Key: "$gt", Value: 2}}}},
		options.FindOne().SetProjection(bson.D{{Key: "arr.$", Value: 1}})).Decode(&got)
	if err != nil {
		t.Fatal(err)
	}
	if want := (bson.D{{Key: "_id", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(3)}}}); !reflect.DeepEqual(got, want) {
		t.Fatalf("positional: got %v, want %v", got, want)
	}
}

func TestCRUDQueryOperators(t *testing.T) {
	_, client := crudStart(t, "")
	coll := client.Database("db").Collection("q")
	crudInsert(t, coll,
		bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: 1}, {Key: "s", Value: "apple"}, {Key: "tags", Value: bson.A{"a", "b"}}, {Key: "sub", Value: bson.D{{Key: "k", Value: 1}}}},
		bson.D{{Key: "_id", Value: 2}, {Key: "x", Value: 2.5}, {Key: "s", Value: "Banana"}, {Key: "tags", Value: bson.A{"b"}}, {Key: "items", Value: bson.A{bson.D{{Key: "q", Value: 5}, {Key: "p", Value: 1}}}}},
		bson.D{{Key: "_id", Value: 3}, {Key: "x", Value: int64(3)}, {Key: "s", Value: nil}, {Key: "tags", Value: bson.A{}}},
		bson.D{{Key: "_id", Value: 4}, {Key: "s", Value: "cherry"}, {Key: "items", Value: bson.A{bson.D{{Key: "q", Value: 1}, {Key: "p", Value: 9}}}}},
	)
	tests := []struct {
		name   string
		filter bson.D
		want   []any
	}{
		{"$eq number across types", bson.D{{Key: "x", Value: bson.D{{Key: "$eq", Value: 3.0}}}}, []any{int32(3)}},
		{"$gt", bson.D{{Key: "x", Value: bson.D{{Key: "$gt", Value: 1}}}}, []any{int32(2), int32(3)}},
		{"$gte $lte", bson.D{{Key: "x", Value: bson.D{{Key: "$gte", Value: 1}, {Key: "$lte", Value: 2.5}}}}, []any{int32(1), int32(2)}},
		{"$lt", bson.D{{Key: "x", Value: bson.D{{Key: "$lt", Value: 2}}}}, []any{int32(1)}},
		{"$ne includes missing", bson.D{{Key: "x", Value: bson.D{{Key: "$ne", Value: 1}}}}, []any{int32(2), int32(3), int32(4)}},
		{"$in", bson.D{{Key: "s", Value: bson.D{{Key: "$in", Value: bson.A{"apple", nil}}}}}, []any{int32(1), int32(3)}},
		{"$nin", bson.D{{Key: "tags", Value: bson.D{{Key: "$nin", Value: bson.A{"b"}}}}}, []any{int32(3), int32(4)}},
		{"null matches missing", bson.D{{Key: "x", Value: nil}}, []any{int32(4)}},
		{"$exists false", bson.D{{Key: "items", Value: bson.D{{Key: "$exists", Value: false}}}}, []any{int32(1), int32(3)}},
		{"$type", bson.D{{Key: "x", Value: bson.D{{Key: "$type", Value: "long"}}}}, []any{int32(3)}},
		{"$regex options", bson.D{{Key: "s", Value: bson.D{{Key: "$regex", Value: "^b"}, {Key: "$options", Value: "i"}}}}, []any{int32(2)}},
		{"$and $or", bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "x", Value: 1}}, bson.D{{Key: "s", Value: "cherry"}}}}}, []any{int32(1), int32(4)}},
		{"$nor", bson.D{{Key: "$nor", Value: bson.A{bson.D{{Key: "x", Value: 1}}, bson.D{{Key: "x", Value: 2.5}}}}}, []any{int32(3), int32(4)}},
		{"$not", bson.D{{Key: "x", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$gt", Value: 1}}}}}}, []any{int32(1), int32(4)}},
		{"$mod", bson.D{{Key: "x", Value: bson.D{{Key: "$mod", Value: bson.A{2, 1}}}}}, []any{int32(1), int32(3)}},
		{"$all", bson.D{{Key: "tags", Value: bson.D{{Key: "$all", Value: bson.A{"a", "b"}}}}}, []any{int32(1)}},
		{"$size", bson.D{{Key: "tags", Value: bson.D{{Key: "$size", Value: 0}}}}, []any{int32(3)}},
		{"$elemMatch", bson.D{{Key: "items", Value: bson.D{{Key: "$elemMatch", Value: bson.D{{Key: "q", Value: bson.D{{Key: "$gt", Value: 2}}}, {Key: "p", Value: 1}}}}}}, []any{int32(2)}},
		{"array element equality", bson.D{{Key: "tags", Value: "b"}}, []any{int32(1), int32(2)}},
		{"dotted through array", bson.D{{Key: "items.p", Value: 9}}, []any{int32(4)}},
		{"embedded", bson.D{{Key: "sub.k", Value: 1}}, []any{int32(1)}},
		{"$expr", bson.D{{Key: "$expr", Value: bson.D{{Key: "$gt", Value: bson.A{"$x", 2}}}}}, []any{int32(2), int32(3)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := crudIDs(crudAll(t, coll, tc.filter))
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ids = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("unknown operator is an error", func(t *testing.T) {
		_, err := coll.Find(crudCtx(t), bson.D{{Key: "x", Value: bson.D{{Key: "$bogus", Value: 1}}}})
		if crudCode(err) != 2 {
			t.Fatalf("got %v, want BadValue", err)
		}
	})
}

func TestCRUDUpdateOperators(t *testing.T) {
	_, client := crudStart(t, "")
	coll := client.Database("db").Collection("u")
	base := bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}},
		{Key: "grades", Value: bson.A{int32(80), int32(95), int32(90)}}}
	tests := []struct {
		name   string
		filter bson.D
		update bson.D
		opts   *options.UpdateOneOptionsBuilder
		want   bson.D
	}{
		{"$set $inc", bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "s", Value: "x"}}}, {Key: "$inc", Value: bson.D{{Key: "n", Value: 2}}}}, nil,
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(3)}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}}, {Key: "grades", Value: bson.A{int32(80), int32(95), int32(90)}}, {Key: "s", Value: "x"}}},
		{"$unset $push", bson.D{}, bson.D{{Key: "$unset", Value: bson.D{{Key: "grades", Value: ""}}}, {Key: "$push", Value: bson.D{{Key: "arr", Value: int32(4)}}}}, nil,
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3), int32(4)}}}},
		{"positional $", bson.D{{Key: "arr", Value: 2}}, bson.D{{Key: "$set", Value: bson.D{{Key: "arr.$", Value: int32(20)}}}, {Key: "$unset", Value: bson.D{{Key: "grades", Value: 1}}}}, nil,
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(1), int32(20), int32(3)}}}},
		{"arrayFilters", bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "grades.$[g]", Value: int32(100)}}}, {Key: "$unset", Value: bson.D{{Key: "arr", Value: 1}}}},
			options.UpdateOne().SetArrayFilters([]any{bson.D{{Key: "g", Value: bson.D{{Key: "$gte", Value: 90}}}}}),
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}, {Key: "grades", Value: bson.A{int32(80), int32(100), int32(100)}}}},
		{"$pull $addToSet", bson.D{}, bson.D{{Key: "$pull", Value: bson.D{{Key: "arr", Value: int32(1)}}}, {Key: "$addToSet", Value: bson.D{{Key: "grades", Value: int32(80)}}}}, nil,
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(2), int32(3)}}, {Key: "grades", Value: bson.A{int32(80), int32(95), int32(90)}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := crudCtx(t)
			if _, err := coll.DeleteMany(ctx, bson.D{}); err != nil {
				t.Fatal(err)
			}
			crudInsert(t, coll, base)
			var err error
			var res *mongo.UpdateResult
			if tc.opts != nil {
				res, err = coll.UpdateOne(ctx, tc.filter, tc.update, tc.opts)
			} else {
				res, err = coll.UpdateOne(ctx, tc.filter, tc.update)
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.MatchedCount != 1 || res.ModifiedCount != 1 {
				t.Fatalf("matched %d modified %d, want 1 1", res.MatchedCount, res.ModifiedCount)
			}
			var got bson.D
			if err := coll.FindOne(ctx, bson.D{}).Decode(&got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCRUDUpdateSemantics(t *testing.T) {
	_, client := crudStart(t, "")
	ctx := crudCtx(t)
	coll := client.Database("db").Collection("us")
	crudInsert(t, coll, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}}, bson.D{{Key: "_id", Value: 2}, {Key: "v", Value: 1}})

	res, err := coll.UpdateMany(ctx, bson.D{{Key: "v", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 1}}}})
	if err != nil || res.MatchedCount != 2 || res.ModifiedCount != 0 {
		t.Fatalf("no-op update: %+v %v, want matched 2 modified 0", res, err)
	}
	res, err = coll.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$inc", Value: bson.D{{Key: "v", Value: 1}}}})
	if err != nil || res.MatchedCount != 2 || res.ModifiedCount != 2 {
		t.Fatalf("multi update: %+v %v", res, err)
	}
	res, err = coll.UpdateOne(ctx, bson.D{{Key: "k", Value: "new"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 9}}}, {Key: "$setOnInsert", Value: bson.D{{Key: "ins", Value: true}}}},
		options.UpdateOne().SetUpsert(true))
	if err != nil || res.UpsertedCount != 1 || res.UpsertedID == nil {
		t.Fatalf("upsert: %+v %v", res, err)
	}
	var up bson.D
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: res.UpsertedID}}).Decode(&up); err != nil {
		t.Fatal(err)
	}
	if want := []string{"_id", "k", "ins", "v"}; !reflect.DeepEqual(crudKeys(up), want) {
		t.Fatalf("upserted doc %v, want keys %v", up, want)
	}
	rres, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "r", Value: true}})
	if err != nil || rres.ModifiedCount != 1 {
		t.Fatalf("replace: %+v %v", rres, err)
	}
	var rep bson.D
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: 1}}).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if want := (bson.D{{Key: "_id", Value: int32(1)}, {Key: "r", Value: true}}); !reflect.DeepEqual(rep, want) {
		t.Fatalf("replaced doc %v, want %v", rep, want)
	}
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "_id", Value: 5}}}})
	if crudCode(err) != 66 {
		t.Fatalf("changing _id: got %v, want ImmutableField 66", err)
	}
	_, err = coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 5}})
	if crudCode(err) != 66 {
		t.Fatalf("replacing _id: got %v, want ImmutableField 66", err)
	}
	_, err = coll.UpdateOne(ctx, bson.D{}, bson.D{{Key: "$bogus", Value: bson.D{{Key: "a", Value: 1}}}})
	if crudCode(err) != 9 {
		t.Fatalf("unknown modifier: got %v, want FailedToParse 9", err)
	}
}

func crudKeys(d bson.D) []string {
	out := make([]string, len(d))
	for i, e := range d {
		out[i] = e.Key
	}
	return out
}

func TestCRUDDeleteAndDistinct(t *testing.T) {
	_, client := crudStart(t, "")
	ctx := crudCtx(t)
	coll := client.Database("db").Collection("d")
	crudInsert(t, coll,
		bson.D{{Key: "_id", Value: 1}, {Key: "k", Value: bson.A{1, 2}}, {Key: "g", Value: "a"}},
		bson.D{{Key: "_id", Value: 2}, {Key: "k", Value: 2.0}, {Key: "g", Value: "a"}},
		bson.D{{Key: "_id", Value: 3}, {Key: "k", Value: "x"}, {Key: "g", Value: "b"}},
		bson.D{{Key: "_id", Value: 4}, {Key: "g", Value: "b"}})
	res := coll.Distinct(ctx, "k", bson.D{})
	var vals []any
	if err := res.Decode(&vals); err != nil {
		t.Fatal(err)
	}
	if want := []any{int32(1), int32(2), "x"}; !reflect.DeepEqual(vals, want) {
		t.Fatalf("distinct = %v, want %v", vals, want)
	}
	d1, err := coll.DeleteOne(ctx, bson.D{{Key: "g", Value: "a"}})
	if err != nil || d1.DeletedCount != 1 {
		t.Fatalf("deleteOne: %+v %v", d1, err)
	}
	dm, err := coll.DeleteMany(ctx, bson.D{{Key: "g", Value: bson.D{{Key: "$in", Value: bson.A{"a", "b"}}}}})
	if err != nil || dm.DeletedCount != 3 {
		t.Fatalf("deleteMany: %+v %v", dm, err)
	}
	n, err := coll.EstimatedDocumentCount(ctx)
	if err != nil || n != 0 {
		t.Fatalf("estimatedDocumentCount = %d %v, want 0", n, err)
	}
}

func TestCRUDDuplicateKeys(t *testing.T) {
	_, client := crudStart(t, "")
	ctx := crudCtx(t)
	coll := client.Database("db").Collection("dup")
	name, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "email", Value: 1}, {Key: "tenant", Value: -1}}, Options: options.Index().SetUnique(true)})
	if err != nil || name != "email_1_tenant_-1" {
		t.Fatalf("create index: %q %v", name, err)
	}
	crudInsert(t, coll, bson.D{{Key: "_id", Value: 1}, {Key: "email", Value: "a@x"}, {Key: "tenant", Value: 1}})
	batch := []any{
		bson.D{{Key: "_id", Value: 2}, {Key: "email", Value: "b@x"}, {Key: "tenant", Value: 1}},
		bson.D{{Key: "_id", Value: 3}, {Key: "email", Value: "a@x"}, {Key: "tenant", Value: 1}},
		bson.D{{Key: "_id", Value: 1}, {Key: "email", Value: "c@x"}},
		bson.D{{Key: "_id", Value: 4}, {Key: "email", Value: "a@x"}, {Key: "tenant", Value: 2}},
	}
	tests := []struct {
		name      string
		ordered   bool
		wantIdx   []int
		wantCount int64
	}{
		{"ordered stops at first error", true, []int{1}, 2},
		{"unordered reports every error", false, []int{1, 2}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := crudCtx(t)
			if _, err := coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$ne", Value: 1}}}}); err != nil {
				t.Fatal(err)
			}
			_, err := coll.InsertMany(ctx, batch, options.InsertMany().SetOrdered(tc.ordered))
			var bwe mongo.BulkWriteException
			if !errors.As(err, &bwe) {
				t.Fatalf("got %v, want BulkWriteException", err)
			}
			var idx []int
			for _, we := range bwe.WriteErrors {
				idx = append(idx, we.Index)
				if we.Code != 11000 {
					t.Errorf("write error code %d, want 11000", we.Code)
				}
			}
			if !reflect.DeepEqual(idx, tc.wantIdx) {
				t.Fatalf("write error indexes %v, want %v", idx, tc.wantIdx)
			}
			first := bwe.WriteErrors[0]
			if want := `E11000 duplicate key error collection: db.dup index: email_1_tenant_-1 dup key: { email: "a@x", tenant: 1 }`; first.Message != want {
				t.Errorf("message %q, want %q", first.Message, want)
			}
			n, err := coll.CountDocuments(ctx, bson.D{})
			if err != nil || n != tc.wantCount {
				t.Fatalf("count = %d %v, want %d", n, err, tc.wantCount)
			}
		})
	}
	t.Run("update into a taken key", func(t *testing.T) {
		_, err := coll.UpdateOne(crudCtx(t), bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "$set", Value: bson.D{{Key: "email", Value: "a@x"}}}})
		if crudCode(err) != 11000 {
			t.Fatalf("got %v, want 11000", err)
		}
	})
	t.Run("unique index over duplicates is refused", func(t *testing.T) {
		_, err := coll.Indexes().CreateOne(crudCtx(t), mongo.IndexModel{Keys: bson.D{{Key: "email", Value: 1}}, Options: options.Index().SetUnique(true)})
		if crudCode(err) != 11000 {
			t.Fatalf("got %v, want 11000", err)
		}
	})
}

func TestCRUDCounts(t *testing.T) {
	_, client := crudStart(t, "")
	ctx := crudCtx(t)
	coll := client.Database("db").Collection("cnt")
	docs := make([]any, 30)
	for i := range docs {
		docs[i] = bson.D{{Key: "i", Value: i}}
	}
	crudInsert(t, coll, docs...)
	tests := []struct {
		name   string
		filter bson.D
		opts   *options.CountOptionsBuilder
		want   int64
	}{
		{"all", bson.D{}, nil, 30},
		{"filter", bson.D{{Key: "i", Value: bson.D{{Key: "$gte", Value: 10}}}}, nil, 20},
		{"skip limit", bson.D{}, options.Count().SetSkip(5).SetLimit(10), 10},
		{"skip past end", bson.D{{Key: "i", Value: bson.D{{Key: "$lt", Value: 3}}}}, options.Count().SetSkip(5), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n int64
			var err error
			if tc.opts != nil {
				n, err = coll.CountDocuments(crudCtx(t), tc.filter, tc.opts)
			} else {
				n, err = coll.CountDocuments(crudCtx(t), tc.filter)
			}
			if err != nil || n != tc.want {
				t.Fatalf("countDocuments = %d %v, want %d", n, err, tc.want)
			}
		})
	}
	n, err := coll.EstimatedDocumentCount(ctx)
	if err != nil || n != 30 {
		t.Fatalf("estimatedDocumentCount = %d %v, want 30", n, err)
	}
	n, err = client.Database("db").Collection("missing").CountDocuments(ctx, bson.D{})
	if err != nil || n != 0 {
		t.Fatalf("count of missing collection = %d %v", n, err)
	}
}

func TestCRUDFindAndModify(t *testing.T) {
	_, client := crudStart(t, "")
	coll := client.Database("db").Collection("fam")
	seed := []any{bson.D{{Key: "_id", Value: 1}, {Key: "p", Value: 5}, {Key: "s", Value: "a"}}, bson.D{{Key: "_id", Value: 2}, {Key: "p", Value: 9}, {Key: "s", Value: "a"}}}
	reset := func(t *testing.T) {
		if _, err := coll.DeleteMany(crudCtx(t), bson.D{}); err != nil {
			t.Fatal(err)
		}
		crudInsert(t, coll, seed...)
	}
	tests := []struct {
		name string
		run  func(ctx context.Context) *mongo.SingleResult
		want bson.D // nil = ErrNoDocuments
	}{
		{"update returns old by default with sort", func(ctx context.Context) *mongo.SingleResult {
			return coll.FindOneAndUpdate(ctx, bson.D{{Key: "s", Value: "a"}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "p", Value: 1}}}},
				options.FindOneAndUpdate().SetSort(bson.D{{Key: "p", Value: -1}}))
		}, bson.D{{Key: "_id", Value: int32(2)}, {Key: "p", Value: int32(9)}, {Key: "s", Value: "a"}}},
		{"update returns new with projection", func(ctx context.Context) *mongo.SingleResult {
			return coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "p", Value: 0}}}},
				options.FindOneAndUpdate().SetReturnDocument(options.After).SetProjection(bson.D{{Key: "p", Value: 1}}))
		}, bson.D{{Key: "_id", Value: int32(1)}, {Key: "p", Value: int32(0)}}},
		{"upsert returns new", func(ctx context.Context) *mongo.SingleResult {
			return coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 7}}, bson.D{{Key: "$set", Value: bson.D{{Key: "p", Value: 1}}}},
				options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After))
		}, bson.D{{Key: "_id", Value: int32(7)}, {Key: "p", Value: int32(1)}}},
		{"upsert returns nothing without new", func(ctx context.Context) *mongo.SingleResult {
			return coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 8}}, bson.D{{Key: "$set", Value: bson.D{{Key: "p", Value: 1}}}},
				options.FindOneAndUpdate().SetUpsert(true))
		}, nil},
		{"replace", func(ctx context.Context) *mongo.SingleResult {
			return coll.FindOneAndReplace(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "z", Value: 1}}, options.FindOneAndReplace().SetReturnDocument(options.After))
		}, bson.D{{Key: "_id", Value: int32(1)}, {Key: "z", Value: int32(1)}}},
		{"delete with sort", func(ctx context.Context) *mongo.SingleResult {
			return coll.FindOneAndDelete(ctx, bson.D{}, options.FindOneAndDelete().SetSort(bson.D{{Key: "p", Value: 1}}))
		}, bson.D{{Key: "_id", Value: int32(1)}, {Key: "p", Value: int32(5)}, {Key: "s", Value: "a"}}},
		{"no match", func(ctx context.Context) *mongo.SingleResult {
			return coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 99}}, bson.D{{Key: "$set", Value: bson.D{{Key: "p", Value: 1}}}})
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reset(t)
			var got bson.D
			err := tc.run(crudCtx(t)).Decode(&got)
			if tc.want == nil {
				if !errors.Is(err, mongo.ErrNoDocuments) {
					t.Fatalf("got %v %v, want no document", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCRUDCatalog(t *testing.T) {
	_, client := crudStart(t, "")
	ctx := crudCtx(t)
	db := client.Database("cat")
	opts := options.CreateCollection().SetChangeStreamPreAndPostImages(bson.D{{Key: "enabled", Value: true}})
	if err := db.CreateCollection(ctx, "a", opts); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateCollection(ctx, "a"); crudCode(err) != 48 {
		t.Fatalf("create existing: %v, want NamespaceExists 48", err)
	}
	if err := db.CreateCollection(ctx, "capped", options.CreateCollection().SetCapped(true).SetSizeInBytes(4096)); crudCode(err) != 115 {
		t.Fatalf("create capped: %v, want CommandNotSupported 115", err)
	}
	crudInsert(t, db.Collection("b"), bson.D{{Key: "x", Value: 1}})
	specs, err := db.ListCollectionSpecifications(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 2 || specs[0].Name != "a" || specs[1].Name != "b" || specs[0].UUID == nil || specs[0].ReadOnly || specs[0].IDIndex.Name != "_id_" {
		t.Fatalf("specs = %+v", specs)
	}
	names, err := db.ListCollectionNames(ctx, bson.D{{Key: "name", Value: "b"}})
	if err != nil || !reflect.DeepEqual(names, []string{"b"}) {
		t.Fatalf("filtered names = %v %v", names, err)
	}
	dbs, err := client.ListDatabases(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, d := range dbs.Databases {
		if d.Name == "cat" {
			found = !d.Empty && d.SizeOnDisk > 0
		}
	}
	if !found {
		t.Fatalf("listDatabases = %+v, want non-empty cat", dbs)
	}
	iv := db.Collection("b").Indexes()
	if _, err := iv.CreateMany(ctx, []mongo.IndexModel{{Keys: bson.D{{Key: "x", Value: 1}}}, {Keys: bson.D{{Key: "y", Value: -1}, {Key: "z", Value: 1}}, Options: options.Index().SetSparse(true)}}); err != nil {
		t.Fatal(err)
	}
	list, err := iv.ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range list {
		got = append(got, s.Name)
	}
	if want := []string{"_id_", "x_1", "y_-1_z_1"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("indexes = %v, want %v", got, want)
	}
	if err := iv.DropOne(ctx, "x_1"); err != nil {
		t.Fatal(err)
	}
	if err := iv.DropOne(ctx, "nope"); crudCode(err) != 27 {
		t.Fatalf("drop missing index: %v, want IndexNotFound 27", err)
	}
	if err := iv.DropAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Collection("b").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Collection("never").Drop(ctx); err != nil {
		t.Fatalf("dropping a missing collection through the driver: %v", err)
	}
	if err := db.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	names, err = db.ListCollectionNames(ctx, bson.D{})
	if err != nil || len(names) != 0 {
		t.Fatalf("after dropDatabase: %v %v", names, err)
	}
	_, err = db.Collection("has$dollar").InsertOne(ctx, bson.D{{Key: "a", Value: 1}})
	if crudCode(err) != 73 {
		t.Fatalf("invalid collection name: %v, want InvalidNamespace 73", err)
	}
}

func TestCRUDRenameCollection(t *testing.T) {
	_, client := crudStart(t, "")
	ctx := crudCtx(t)
	admin := client.Database("admin")
	crudInsert(t, client.Database("r").Collection("src"), bson.D{{Key: "_id", Value: 1}})
	crudInsert(t, client.Database("r").Collection("other"), bson.D{{Key: "_id", Value: 2}})
	tests := []struct {
		name string
		cmd  bson.D
		code mongoerr.Code
	}{
		{"missing source", bson.D{{Key: "renameCollection", Value: "r.nope"}, {Key: "to", Value: "r.x"}}, 26},
		{"existing target", bson.D{{Key: "renameCollection", Value: "r.src"}, {Key: "to", Value: "r.other"}}, 48},
		{"not on admin", nil, 13},
		{"ok", bson.D{{Key: "renameCollection", Value: "r.src"}, {Key: "to", Value: "r.dst"}}, 0},
		{"dropTarget", bson.D{{Key: "renameCollection", Value: "r.dst"}, {Key: "to", Value: "r.other"}, {Key: "dropTarget", Value: true}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.cmd == nil {
				err = client.Database("r").RunCommand(ctx, bson.D{{Key: "renameCollection", Value: "r.src"}, {Key: "to", Value: "r.y"}}).Err()
			} else {
				err = admin.RunCommand(ctx, tc.cmd).Err()
			}
			if crudCode(err) != tc.code {
				t.Fatalf("got %v, want code %d", err, tc.code)
			}
		})
	}
	names, err := client.Database("r").ListCollectionNames(ctx, bson.D{})
	if err != nil || !reflect.DeepEqual(names, []string{"other"}) {
		t.Fatalf("collections = %v %v, want [other]", names, err)
	}
	if ids := crudIDs(crudAll(t, client.Database("r").Collection("other"), bson.D{})); !reflect.DeepEqual(ids, []any{int32(1)}) {
		t.Fatalf("renamed documents = %v", ids)
	}
}

func TestCRUDInsertValidation(t *testing.T) {
	_, client := crudStart(t, "")
	coll := client.Database("db").Collection("v")
	big := make([]byte, 17<<20)
	tests := []struct {
		name string
		doc  bson.D
		code mongoerr.Code
	}{
		{"array _id", bson.D{{Key: "_id", Value: bson.A{1}}}, 2},
		{"too large", bson.D{{Key: "b", Value: bson.Binary{Data: big[:16<<20]}}}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := coll.InsertOne(crudCtx(t), tc.doc)
			if crudCode(err) != tc.code {
				t.Fatalf("got %v, want code %d", err, tc.code)
			}
		})
	}
	// MongoDB 5.0+ stores dollar-prefixed field names given to insert.
	if _, err := coll.InsertOne(crudCtx(t), bson.D{{Key: "_id", Value: "dollar"}, {Key: "$price", Value: 1}}); err != nil {
		t.Fatalf("insert with a $-prefixed field: %v", err)
	}
	if _, err := coll.DeleteOne(crudCtx(t), bson.D{{Key: "_id", Value: "dollar"}}); err != nil {
		t.Fatal(err)
	}
	res, err := coll.InsertOne(crudCtx(t), bson.D{{Key: "a", Value: 1}, {Key: "_id", Value: "late"}})
	if err != nil || res.InsertedID != "late" {
		t.Fatalf("insert: %v %v", res, err)
	}
	var got bson.D
	if err := coll.FindOne(crudCtx(t), bson.D{}).Decode(&got); err != nil || got[0].Key != "_id" {
		t.Fatalf("stored %v %v, want _id first", got, err)
	}
	// Generated ids are ObjectIDs placed first.
	if _, err := client.Database("db").RunCommand(crudCtx(t), bson.D{{Key: "insert", Value: "gen"}, {Key: "documents", Value: bson.A{bson.D{{Key: "a", Value: 1}}}}}).Raw(); err != nil {
		t.Fatal(err)
	}
	if err := client.Database("db").Collection("gen").FindOne(crudCtx(t), bson.D{}).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got[0].Value.(bson.ObjectID); !ok || got[0].Key != "_id" {
		t.Fatalf("generated _id: %v", got)
	}
}

func TestCRUDRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	for round := range 3 {
		t.Run(fmt.Sprintf("round %d", round), func(t *testing.T) {
			ctx := crudCtx(t)
			srv, err := server.Start(ctx, server.Options{Data: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = srv.Close() })
			client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
			coll := client.Database("keep").Collection("c")
			n, err := coll.CountDocuments(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gte", Value: 0}}}})
			if err != nil || n != int64(round*100) {
				t.Fatalf("after restart %d: count %d %v, want %d", round, n, err, round*100)
			}
			docs := make([]any, 100)
			for i := range docs {
				docs[i] = bson.D{{Key: "_id", Value: round*100 + i}}
			}
			if _, err := coll.InsertMany(ctx, docs); err != nil {
				t.Fatal(err)
			}
			if round == 0 {
				if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "u", Value: 1}}, Options: options.Index().SetUnique(true).SetSparse(true)}); err != nil {
					t.Fatal(err)
				}
			}
			_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: -1 - round}, {Key: "u", Value: "same"}})
			if round == 0 && err != nil {
				t.Fatalf("first unique value: %v", err)
			}
			if round > 0 && crudCode(err) != 11000 {
				t.Fatalf("unique index after restart: got %v, want 11000", err)
			}
			_ = client.Disconnect(ctx)
			if err := srv.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
