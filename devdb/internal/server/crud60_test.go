package server

import (
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/mongoerr"
)

// MongoDB 6.0 behaviours a client can tell apart.
func TestMongoDB60WriteBehaviours(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("test").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: "foo"}}); err != nil {
		t.Fatal(err)
	}

	t.Run("sort in an update statement is an unknown field", func(t *testing.T) {
		_, err := runCommand(t, c, "test", bson.D{{Key: "update", Value: "c"}, {Key: "updates", Value: bson.A{bson.D{
			{Key: "q", Value: bson.D{}}, {Key: "u", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: 1}}}}},
			{Key: "sort", Value: bson.D{{Key: "_id", Value: -1}}}}}}})
		wantCode(t, err, mongoerr.IDLUnknownField, "")
	})

	t.Run("$-prefixed key inside _id", func(t *testing.T) {
		for _, id := range []any{bson.D{{Key: "$a", Value: 1}}, bson.D{{Key: "a", Value: bson.D{{Key: "$b", Value: 1}}}}} {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}})
			var we mongo.WriteException
			if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Code != int(mongoerr.DollarPrefixedFieldName) {
				t.Errorf("insert _id %v: err = %v, want DollarPrefixedFieldName (52)", id, err)
			}
		}
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "a", Value: "$b"}}}}); err != nil {
			t.Errorf("a $ in a value of _id is fine: %v", err)
		}
	})

	t.Run("findAndModify DuplicateKey carries keyPattern and keyValue", func(t *testing.T) {
		if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "x", Value: 1}}, Options: options.Index().SetUnique(true)}); err != nil {
			t.Fatal(err)
		}
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}, {Key: "x", Value: "bar"}}); err != nil {
			t.Fatal(err)
		}
		_, err := runCommand(t, c, "test", bson.D{{Key: "findAndModify", Value: "c"}, {Key: "query", Value: bson.D{{Key: "_id", Value: 2}}},
			{Key: "update", Value: bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: "foo"}}}}}})
		var ce mongo.CommandError
		if !errors.As(err, &ce) || ce.Code != int32(mongoerr.DuplicateKey) {
			t.Fatalf("err = %v, want DuplicateKey", err)
		}
		raw := bson.Raw(ce.Raw)
		if kp, err := raw.LookupErr("keyPattern"); err != nil || kp.String() != `{"x": {"$numberInt":"1"}}` {
			t.Errorf("keyPattern = %v (%v), want {x: 1}", kp, err)
		}
		if kv, err := raw.LookupErr("keyValue"); err != nil || kv.String() != `{"x": "foo"}` {
			t.Errorf("keyValue = %v (%v), want {x: \"foo\"}", kv, err)
		}
	})
}
