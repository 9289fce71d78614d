package server

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/mongoerr"
)

// Command-level let (MongoDB 5.0+): variables visible as $$name in
// filters' $expr, pipelines, pipeline updates and projections.
func TestCommandLet(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("test").Collection("let")
	reset := func(t *testing.T) {
		t.Helper()
		if err := coll.Drop(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "_id", Value: 2}}, bson.D{{Key: "_id", Value: 3}}}); err != nil {
			t.Fatal(err)
		}
	}
	byID := bson.D{{Key: "$expr", Value: bson.D{{Key: "$eq", Value: bson.A{"$_id", "$$id"}}}}}
	setX := mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "x", Value: "$$x"}}}}}
	let := bson.D{{Key: "id", Value: 2}, {Key: "x", Value: "foo"}}
	ids := func(t *testing.T) bson.A {
		t.Helper()
		cur, err := coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.D
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatal(err)
		}
		out := bson.A{}
		for _, d := range docs {
			out = append(out, d)
		}
		return out
	}
	tests := []struct {
		name string
		run  func(t *testing.T) error
		want string // the collection afterwards, as canonical-free JSON
	}{
		{name: "updateOne", run: func(t *testing.T) error {
			_, err := coll.UpdateOne(ctx, byID, setX, options.UpdateOne().SetLet(let))
			return err
		}, want: `[{"_id":1},{"_id":2,"x":"foo"},{"_id":3}]`},
		{name: "updateMany", run: func(t *testing.T) error {
			_, err := coll.UpdateMany(ctx, bson.D{{Key: "$expr", Value: bson.D{{Key: "$gte", Value: bson.A{"$_id", "$$id"}}}}}, setX, options.UpdateMany().SetLet(let))
			return err
		}, want: `[{"_id":1},{"_id":2,"x":"foo"},{"_id":3,"x":"foo"}]`},
		{name: "replaceOne", run: func(t *testing.T) error {
			_, err := coll.ReplaceOne(ctx, byID, bson.D{{Key: "y", Value: 1}}, options.Replace().SetLet(let))
			return err
		}, want: `[{"_id":1},{"_id":2,"y":1},{"_id":3}]`},
		{name: "deleteOne", run: func(t *testing.T) error {
			_, err := coll.DeleteOne(ctx, byID, options.DeleteOne().SetLet(let))
			return err
		}, want: `[{"_id":1},{"_id":3}]`},
		{name: "deleteMany", run: func(t *testing.T) error {
			_, err := coll.DeleteMany(ctx, bson.D{{Key: "$expr", Value: bson.D{{Key: "$ne", Value: bson.A{"$_id", "$$id"}}}}}, options.DeleteMany().SetLet(let))
			return err
		}, want: `[{"_id":2}]`},
		{name: "findOneAndUpdate", run: func(t *testing.T) error {
			return coll.FindOneAndUpdate(ctx, byID, setX, options.FindOneAndUpdate().SetLet(let)).Err()
		}, want: `[{"_id":1},{"_id":2,"x":"foo"},{"_id":3}]`},
		{name: "findOneAndDelete", run: func(t *testing.T) error {
			return coll.FindOneAndDelete(ctx, byID, options.FindOneAndDelete().SetLet(let)).Err()
		}, want: `[{"_id":1},{"_id":3}]`},
		{name: "bulkWrite", run: func(t *testing.T) error {
			_, err := coll.BulkWrite(ctx, []mongo.WriteModel{
				mongo.NewUpdateOneModel().SetFilter(byID).SetUpdate(setX),
				mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "$expr", Value: bson.D{{Key: "$lt", Value: bson.A{"$_id", "$$id"}}}}}),
			}, options.BulkWrite().SetLet(let))
			return err
		}, want: `[{"_id":2,"x":"foo"},{"_id":3}]`},
		{name: "update statement constants c", run: func(t *testing.T) error {
			_, err := runCommand(t, c, "test", bson.D{{Key: "update", Value: "let"}, {Key: "updates", Value: bson.A{bson.D{
				{Key: "q", Value: byID}, {Key: "u", Value: bson.A{bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: "$$x"}, {Key: "k", Value: "$$k"}}}}}},
				{Key: "c", Value: bson.D{{Key: "k", Value: 7}}}}}}, {Key: "let", Value: let}})
			return err
		}, want: `[{"_id":1},{"_id":2,"x":"foo","k":7},{"_id":3}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reset(t)
			if err := tt.run(t); err != nil {
				t.Fatal(err)
			}
			got, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: ids(t)}}, false, false)
			if err != nil {
				t.Fatal(err)
			}
			if want := `{"v":` + tt.want + `}`; string(got) != want {
				t.Errorf("collection = %s, want %s", got, want)
			}
		})
	}

	t.Run("find and aggregate", func(t *testing.T) {
		reset(t)
		var found []bson.D
		cur, err := coll.Find(ctx, byID, options.Find().SetLet(let).SetProjection(bson.D{{Key: "x", Value: "$$x"}}))
		if err != nil {
			t.Fatal(err)
		}
		if err := cur.All(ctx, &found); err != nil {
			t.Fatal(err)
		}
		if len(found) != 1 || found[0].String() != `{"_id":{"$numberInt":"2"},"x":"foo"}` {
			t.Errorf("find = %v, want [{_id: 2, x: foo}]", found)
		}
		pipe := mongo.Pipeline{
			{{Key: "$match", Value: byID}},
			{{Key: "$project", Value: bson.D{{Key: "_id", Value: 0}, {Key: "x", Value: "$$x"}, {Key: "r", Value: bson.D{{Key: "$lt", Value: bson.A{bson.D{{Key: "$rand", Value: bson.D{}}}, 1}}}}}}},
		}
		cur, err = coll.Aggregate(ctx, pipe, options.Aggregate().SetLet(let))
		if err != nil {
			t.Fatal(err)
		}
		var agg []bson.D
		if err := cur.All(ctx, &agg); err != nil {
			t.Fatal(err)
		}
		if len(agg) != 1 || agg[0].String() != `{"x":"foo","r":true}` {
			t.Errorf("aggregate = %v, want [{x: foo, r: true}]", agg)
		}
	})

	t.Run("errors", func(t *testing.T) {
		reset(t)
		_, err := coll.Find(ctx, byID)
		wantCode(t, err, mongoerr.UndefinedVariable, "")
		_, err = runCommand(t, c, "test", bson.D{{Key: "find", Value: "let"}, {Key: "let", Value: 1}})
		wantCode(t, err, mongoerr.TypeMismatch, "")
		_, err = coll.Find(ctx, bson.D{}, options.Find().SetLet(bson.D{{Key: "Bad", Value: 1}}))
		wantCode(t, err, mongoerr.VariableNameBadStart, "")
	})
}
