package server

import (
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/mongoerr"
)

// Views: reads through the view's pipeline (also views on views and across
// getMore), listCollections type "view", writes refused with 166, the
// change stream's create event.
func TestViews(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	db := c.Database("views")
	cs, err := db.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetShowExpandedEvents(true))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	base := db.Collection("base")
	var docs []any
	for i := 1; i <= 10; i++ {
		docs = append(docs, bson.D{{Key: "_id", Value: i}, {Key: "even", Value: i%2 == 0}, {Key: "tags", Value: bson.A{"t", i % 3}}})
	}
	if _, err := base.InsertMany(ctx, docs); err != nil {
		t.Fatal(err)
	}
	evenPipeline := bson.A{bson.D{{Key: "$match", Value: bson.D{{Key: "even", Value: true}}}}}
	if err := db.CreateView(ctx, "evens", "base", evenPipeline); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateView(ctx, "bigEvens", "evens", bson.A{bson.D{{Key: "$match", Value: bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: 4}}}}}}}); err != nil {
		t.Fatal(err)
	}
	ids := func(cur *mongo.Cursor, err error) []int32 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var out []struct {
			ID int32 `bson:"_id"`
		}
		if err := cur.All(ctx, &out); err != nil {
			t.Fatal(err)
		}
		r := make([]int32, len(out))
		for i, o := range out {
			r[i] = o.ID
		}
		return r
	}
	evens, bigEvens := db.Collection("evens"), db.Collection("bigEvens")
	if got := ids(evens.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$lte", Value: 8}}}}, options.Find().SetSort(bson.D{{Key: "_id", Value: -1}}).SetSkip(1).SetLimit(2).SetBatchSize(1))); !equalInts(got, []int32{6, 4}) {
		t.Fatalf("find on view = %v, want [6 4]", got)
	}
	if got := ids(bigEvens.Find(ctx, bson.D{}, options.Find().SetBatchSize(1))); !equalInts(got, []int32{6, 8, 10}) {
		t.Fatalf("find on a view of a view = %v, want [6 8 10]", got)
	}
	if got := ids(bigEvens.Aggregate(ctx, mongo.Pipeline{{{Key: "$sort", Value: bson.D{{Key: "_id", Value: -1}}}}})); !equalInts(got, []int32{10, 8, 6}) {
		t.Fatalf("aggregate on a view = %v", got)
	}
	if n, err := evens.EstimatedDocumentCount(ctx); err != nil || n != 5 {
		t.Fatalf("estimatedDocumentCount = %d, %v; want 5", n, err)
	}
	if n, err := evens.CountDocuments(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$gt", Value: 5}}}}); err != nil || n != 3 {
		t.Fatalf("countDocuments = %d, %v; want 3", n, err)
	}
	var proj bson.D
	if err := evens.FindOne(ctx, bson.D{{Key: "_id", Value: 2}}, options.FindOne().SetProjection(bson.D{{Key: "even", Value: 0}, {Key: "tags", Value: 0}})).Decode(&proj); err != nil || len(proj) != 1 {
		t.Fatalf("projected findOne = %v, %v", proj, err)
	}
	res := evens.Distinct(ctx, "tags", bson.D{})
	var tags []any
	if err := res.Decode(&tags); err != nil || len(tags) != 4 {
		t.Fatalf("distinct tags = %v, %v; want t, 0, 1, 2", tags, err)
	}
	specs, err := db.ListCollectionSpecifications(ctx, bson.D{{Key: "name", Value: "evens"}})
	if err != nil || len(specs) != 1 || specs[0].Type != "view" || !specs[0].ReadOnly {
		t.Fatalf("listCollections = %+v, %v", specs, err)
	}
	for name, op := range map[string]func() error{
		"insert": func() error { _, err := evens.InsertOne(ctx, bson.D{}); return err },
		"update": func() error {
			_, err := evens.UpdateOne(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "a", Value: 1}}}})
			return err
		},
		"delete": func() error { _, err := evens.DeleteMany(ctx, bson.D{}); return err },
		"createIndex": func() error {
			_, err := evens.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "a", Value: 1}}})
			return err
		},
		"watch": func() error { _, err := evens.Watch(ctx, mongo.Pipeline{}); return err },
	} {
		var se mongo.ServerError
		if err := op(); !errors.As(err, &se) || !se.HasErrorCode(int(mongoerr.CommandNotSupportedOnView)) {
			t.Errorf("%s on a view: err = %v, want CommandNotSupportedOnView", name, err)
		}
	}
	// The view's create event (after base's create and inserts).
	for cs.Next(ctx) {
		var ev struct {
			Op   string                `bson:"operationType"`
			NS   struct{ Coll string } `bson:"ns"`
			Desc bson.D                `bson:"operationDescription"`
		}
		if err := cs.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		if ev.Op == "create" && ev.NS.Coll == "evens" {
			if v, _ := fieldOf(ev.Desc, "viewOn"); v != "base" {
				t.Fatalf("create event description = %v, want viewOn base", ev.Desc)
			}
			if _, ok := fieldOf(ev.Desc, "idIndex"); ok {
				t.Fatalf("view create event has an idIndex: %v", ev.Desc)
			}
			break
		}
	}
	if err := cs.Err(); err != nil {
		t.Fatal(err)
	}
}

func equalInts(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
