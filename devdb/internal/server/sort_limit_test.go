package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/mongoerr"
)

// TestSortMemoryLimit checks the three cases MongoDB distinguishes for a
// find with a sort over more than 100 MiB of matching documents: a
// blocking sort fails with QueryExceededMemoryLimitNoDiskUseAllowed (292);
// a sort with a limit is a top-k sort holding only k documents; a sort an
// index provides (after fields the filter pins by equality, or reversed)
// has no memory limit at all; and a top-k sort whose k documents exceed
// the limit fails too.
func TestSortMemoryLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 120 MiB; skipped with -short")
	}
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := context.Background()
	coll := c.Database("db").Collection("big")
	const n, size = 120, 1 << 20 // 120 MiB
	pad := make([]byte, size)
	for i := 0; i < n; i += 10 {
		var docs []any
		for j := i; j < i+10; j++ {
			docs = append(docs, bson.D{{Key: "_id", Value: fmt.Sprintf("d%03d", j)}, {Key: "t", Value: fmt.Sprintf("t%d", j%2)},
				{Key: "at", Value: int32(n - j)}, {Key: "pad", Value: bson.Binary{Data: pad}}})
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	order := bson.D{{Key: "t", Value: 1}, {Key: "at", Value: 1}, {Key: "_id", Value: 1}}
	count := func(filter bson.D, o *options.FindOptionsBuilder) ([]string, error) {
		cur, err := coll.Find(ctx, filter, o.SetProjection(bson.D{{Key: "pad", Value: 0}}))
		if err != nil {
			return nil, err
		}
		var ids []string
		for cur.Next(ctx) {
			ids = append(ids, cur.Current.Lookup("_id").StringValue())
		}
		return ids, cur.Err()
	}
	wantErr := func(name string, err error) {
		t.Helper()
		var ce mongo.CommandError
		if err == nil || !(errors.As(err, &ce) && mongoerr.Code(ce.Code) == mongoerr.QueryExceededMemoryLimitNoDiskUseAllowed) {
			t.Fatalf("%s: err = %v, want QueryExceededMemoryLimitNoDiskUseAllowed", name, err)
		}
	}

	_, err := count(bson.D{}, options.Find().SetSort(order))
	wantErr("blocking sort without an index", err)

	ids, err := count(bson.D{}, options.Find().SetSort(order).SetLimit(3))
	if err != nil || len(ids) != 3 || ids[0] != "d118" {
		t.Fatalf("top-k sort = %v, %v; want d118 first of 3", ids, err)
	}
	_, err = count(bson.D{}, options.Find().SetSort(order).SetLimit(110))
	wantErr("top-k sort of 110 MiB", err)

	mustRun(t, c, "db", bson.D{{Key: "createIndexes", Value: "big"}, {Key: "indexes", Value: bson.A{
		bson.D{{Key: "key", Value: order}, {Key: "name", Value: "t_at_id"}}}}})
	for _, tc := range []struct {
		name   string
		filter bson.D
		sort   bson.D
		first  string
		n      int
	}{
		{"the index order", bson.D{}, order, "d118", n},
		{"the index order reversed", bson.D{}, bson.D{{Key: "t", Value: -1}, {Key: "at", Value: -1}, {Key: "_id", Value: -1}}, "d001", n},
		{"after a pinned prefix", bson.D{{Key: "t", Value: "t1"}}, bson.D{{Key: "at", Value: 1}, {Key: "_id", Value: 1}}, "d119", n / 2},
		{"keyset page with $or", bson.D{{Key: "$or", Value: bson.A{
			bson.D{{Key: "t", Value: bson.D{{Key: "$gt", Value: "t0"}}}},
			bson.D{{Key: "t", Value: "t0"}, {Key: "at", Value: bson.D{{Key: "$gt", Value: int32(100)}}}}}}}, order, "d018", 10 + n/2},
		{"the _id index", bson.D{}, bson.D{{Key: "_id", Value: -1}}, "d119", n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids, err := count(tc.filter, options.Find().SetSort(tc.sort))
			if err != nil {
				t.Fatalf("index-provided sort: %v", err)
			}
			if len(ids) != tc.n || ids[0] != tc.first {
				t.Fatalf("got %d documents starting %v, want %d starting %s", len(ids), ids[:min(3, len(ids))], tc.n, tc.first)
			}
		})
	}
	// A sort the index does not provide (a field in between is not pinned)
	// is still a blocking sort.
	_, err = count(bson.D{}, options.Find().SetSort(bson.D{{Key: "at", Value: 1}}))
	wantErr("sort on the index's second field", err)
}
