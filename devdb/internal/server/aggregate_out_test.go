package server

import (
	"errors"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/mongoerr"
)

// $out, $merge (every whenMatched/whenNotMatched mode, "on" fields) and
// $documents through the Go driver.
func TestAggregateOutMergeDocuments(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	db := c.Database("out")
	src, dst := db.Collection("src"), db.Collection("dst")
	all := func(t *testing.T, coll *mongo.Collection) string {
		t.Helper()
		cur, err := coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.D
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatal(err)
		}
		b, err := bson.MarshalExtJSON(bson.D{{Key: "d", Value: docs}}, false, false)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(strings.TrimPrefix(string(b), `{"d":`), "}")
	}
	reset := func(t *testing.T, srcDocs, dstDocs []any) {
		t.Helper()
		for _, coll := range []*mongo.Collection{src, dst} {
			if err := coll.Drop(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := src.InsertMany(ctx, srcDocs); err != nil {
			t.Fatal(err)
		}
		if len(dstDocs) > 0 {
			if _, err := dst.InsertMany(ctx, dstDocs); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := func(kv ...any) bson.D {
		out := bson.D{}
		for i := 0; i < len(kv); i += 2 {
			out = append(out, bson.E{Key: kv[i].(string), Value: kv[i+1]})
		}
		return out
	}
	srcDocs := []any{d("_id", 1, "x", 11), d("_id", 2, "x", 22)}
	dstDocs := []any{d("_id", 2, "x", 0, "y", 2), d("_id", 3, "x", 33)}
	merge := func(spec ...any) mongo.Pipeline { return mongo.Pipeline{{{Key: "$merge", Value: d(spec...)}}} }
	tests := []struct {
		name     string
		pipeline mongo.Pipeline
		want     string
		code     mongoerr.Code
	}{
		{"out replaces", mongo.Pipeline{{{Key: "$out", Value: "dst"}}}, `[{"_id":1,"x":11},{"_id":2,"x":22}]`, 0},
		{"merge default (merge, insert)", merge("into", "dst"), `[{"_id":1,"x":11},{"_id":2,"x":22,"y":2},{"_id":3,"x":33}]`, 0},
		{"merge replace", merge("into", "dst", "whenMatched", "replace"), `[{"_id":1,"x":11},{"_id":2,"x":22},{"_id":3,"x":33}]`, 0},
		{"merge keepExisting discard", merge("into", "dst", "whenMatched", "keepExisting", "whenNotMatched", "discard"), `[{"_id":2,"x":0,"y":2},{"_id":3,"x":33}]`, 0},
		{"merge pipeline with let", merge("into", "dst", "let", d("nx", "$x"), "whenMatched", bson.A{d("$set", d("x", d("$add", bson.A{"$x", "$$nx"}), "from", "$$new._id"))}), `[{"_id":1,"x":11},{"_id":2,"x":22,"y":2,"from":2},{"_id":3,"x":33}]`, 0},
		{"merge fail on match", merge("into", "dst", "whenMatched", "fail"), "", mongoerr.DuplicateKey},
		{"merge fail when not matched", merge("into", "dst", "whenNotMatched", "fail"), "", mongoerr.MergeStageNoMatchingDocument},
		{"merge on without unique index", merge("into", "dst", "on", "x"), "", mongoerr.MergeOnNoUniqueIndex},
		{"merge on empty", merge("into", "dst", "on", bson.A{}), "", mongoerr.MergeOnEmpty},
		{"merge unknown field", merge("into", "dst", "nope", 1), "", mongoerr.IDLUnknownField},
		{"out not last", mongo.Pipeline{{{Key: "$out", Value: "dst"}}, {{Key: "$match", Value: d()}}}, "", mongoerr.OutputStageNotLast},
		{"out to admin", mongo.Pipeline{{{Key: "$out", Value: d("db", "admin", "coll", "x")}}}, "", mongoerr.OutToInternalDatabase},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reset(t, srcDocs, dstDocs)
			cur, err := src.Aggregate(ctx, tc.pipeline)
			if tc.code != 0 {
				var ce mongo.ServerError
				if !errors.As(err, &ce) || !ce.HasErrorCode(int(tc.code)) {
					t.Fatalf("err = %v, want code %d (%s)", err, tc.code, tc.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cur.Next(ctx) {
				t.Fatalf("output stage returned a document: %v", cur.Current)
			}
			if got := all(t, dst); got != tc.want {
				t.Fatalf("target = %s, want %s", got, tc.want)
			}
		})
	}

	t.Run("out keeps the target's indexes and leaves no temporary collection", func(t *testing.T) {
		reset(t, srcDocs, dstDocs)
		if _, err := dst.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: d("x", 1), Options: options.Index().SetUnique(true)}); err != nil {
			t.Fatal(err)
		}
		if _, err := src.Aggregate(ctx, mongo.Pipeline{{{Key: "$out", Value: "dst"}}}); err != nil {
			t.Fatal(err)
		}
		specs, err := dst.Indexes().ListSpecifications(ctx)
		if err != nil || len(specs) != 2 {
			t.Fatalf("indexes after $out = %v, %v; want _id_ and x_1", specs, err)
		}
		// A document the target's unique index refuses fails the whole $out.
		if _, err := src.InsertOne(ctx, d("_id", 9, "x", 11)); err != nil {
			t.Fatal(err)
		}
		_, err = src.Aggregate(ctx, mongo.Pipeline{{{Key: "$out", Value: "dst"}}})
		var ce mongo.ServerError
		if !errors.As(err, &ce) || !ce.HasErrorCode(int(mongoerr.DuplicateKey)) {
			t.Fatalf("err = %v, want DuplicateKey", err)
		}
		if got := all(t, dst); got != `[{"_id":1,"x":11},{"_id":2,"x":22}]` {
			t.Fatalf("target after a failed $out = %s", got)
		}
		names, err := db.ListCollectionNames(ctx, d())
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if strings.HasPrefix(n, "tmp.agg_out.") {
				t.Fatalf("temporary collection %s left behind (%v)", n, names)
			}
		}
	})

	t.Run("merge on a unique index", func(t *testing.T) {
		reset(t, []any{d("_id", 1, "k", "a", "v", 1), d("_id", 2, "k", "b", "v", 2), d("_id", 3, "k", bson.A{"z"})}, []any{d("_id", 10, "k", "a", "v", 0)})
		if _, err := dst.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: d("k", 1), Options: options.Index().SetUnique(true)}); err != nil {
			t.Fatal(err)
		}
		p := mongo.Pipeline{{{Key: "$match", Value: d("_id", d("$lt", 3))}}, {{Key: "$project", Value: d("_id", 0)}}, {{Key: "$merge", Value: d("into", "dst", "on", "k", "whenMatched", "replace")}}}
		if _, err := src.Aggregate(ctx, p); err != nil {
			t.Fatal(err)
		}
		cur, err := dst.Find(ctx, d(), options.Find().SetProjection(d("_id", 0)).SetSort(d("k", 1)))
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.D
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatal(err)
		}
		if len(docs) != 2 || docs[0][1].Value != int32(1) || docs[1][1].Value != int32(2) {
			t.Fatalf("target = %v", docs)
		}
		var id struct {
			ID int32 `bson:"_id"`
		}
		if err := dst.FindOne(ctx, d("k", "a")).Decode(&id); err != nil || id.ID != 10 {
			t.Fatalf("replace on k kept _id %v (%v), want 10", id.ID, err)
		}
		for _, tc := range []struct {
			filter bson.D
			code   mongoerr.Code
		}{{d("_id", 3), mongoerr.MergeOnFieldArray}, {d("_id", 1), 0}} {
			p := mongo.Pipeline{{{Key: "$match", Value: tc.filter}}, {{Key: "$merge", Value: d("into", "dst", "on", "k")}}}
			_, err := src.Aggregate(ctx, p)
			if tc.code == 0 {
				// _id 1 has k "a", matching _id 10: changing _id is refused.
				var ce mongo.ServerError
				if !errors.As(err, &ce) || !ce.HasErrorCode(int(mongoerr.ImmutableField)) {
					t.Fatalf("err = %v, want ImmutableField", err)
				}
				continue
			}
			var ce mongo.ServerError
			if !errors.As(err, &ce) || !ce.HasErrorCode(int(tc.code)) {
				t.Fatalf("err = %v, want %s", err, tc.code)
			}
		}
	})

	t.Run("documents", func(t *testing.T) {
		cur, err := db.Aggregate(ctx, mongo.Pipeline{{{Key: "$documents", Value: bson.A{d("a", 1), d("a", 2)}}}, {{Key: "$match", Value: d("a", 2)}}})
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.D
		if err := cur.All(ctx, &docs); err != nil || len(docs) != 1 {
			t.Fatalf("docs = %v, %v", docs, err)
		}
		_, err = db.Aggregate(ctx, mongo.Pipeline{{{Key: "$documents", Value: bson.A{1}}}})
		var ce mongo.ServerError
		if !errors.As(err, &ce) || !ce.HasErrorCode(int(mongoerr.ReplaceRootNewRootNotObject)) {
			t.Fatalf("err = %v, want 40228", err)
		}
		_, err = src.Aggregate(ctx, mongo.Pipeline{{{Key: "$documents", Value: bson.A{}}}})
		if !errors.As(err, &ce) || !ce.HasErrorCode(int(mongoerr.InvalidNamespace)) {
			t.Fatalf("err = %v, want InvalidNamespace", err)
		}
	})
}
