package server

import (
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/mongoerr"
)

// Query validators set by create or collMod: writes that fail them are
// DocumentValidationFailure (121) with errInfo; validationLevel,
// validationAction and bypassDocumentValidation change that as in MongoDB.
func TestValidators(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	db := c.Database("val")
	strX := bson.D{{Key: "x", Value: bson.D{{Key: "$type", Value: "string"}}}}
	if err := db.CreateCollection(ctx, "c", options.CreateCollection().SetValidator(strX)); err != nil {
		t.Fatal(err)
	}
	coll := db.Collection("c")
	wantFailure := func(t *testing.T, err error, id any) {
		t.Helper()
		var we mongo.WriteException
		var ce mongo.CommandError
		var info bson.Raw
		switch {
		case errors.As(err, &we) && len(we.WriteErrors) == 1 && we.WriteErrors[0].Code == int(mongoerr.DocumentValidationFailure):
			info = we.WriteErrors[0].Details
		case errors.As(err, &ce) && ce.Code == int32(mongoerr.DocumentValidationFailure):
			info = ce.Raw.Lookup("errInfo").Document()
		default:
			t.Fatalf("err = %v, want DocumentValidationFailure", err)
		}
		if got := info.Lookup("failingDocumentId"); got.String() != bson.RawValue(mustValue(t, id)).String() {
			t.Errorf("failingDocumentId = %v, want %v (errInfo %v)", got, id, info)
		}
		if op := info.Lookup("details", "operatorName").StringValue(); op != "$type" {
			t.Errorf("details.operatorName = %q, want $type (errInfo %v)", op, info)
		}
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "x", Value: "ok"}}); err != nil {
		t.Fatal(err)
	}
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}, {Key: "x", Value: 2}})
	wantFailure(t, err, 2)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
	wantFailure(t, err, 1)
	err = coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}).Err()
	wantFailure(t, err, 1)
	// bypassDocumentValidation.
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}, {Key: "x", Value: 3}}, options.InsertOne().SetBypassDocumentValidation(true)); err != nil {
		t.Fatal(err)
	}
	// moderate: an already invalid document may be updated, a valid one must stay valid.
	if err := db.RunCommand(ctx, bson.D{{Key: "collMod", Value: "c"}, {Key: "validationLevel", Value: "moderate"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 3}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 4}}}}); err != nil {
		t.Fatalf("moderate update of an invalid document: %v", err)
	}
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}})
	wantFailure(t, err, 1)
	// warn accepts the write.
	if err := db.RunCommand(ctx, bson.D{{Key: "collMod", Value: "c"}, {Key: "validationAction", Value: "warn"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 5}, {Key: "x", Value: 5}}); err != nil {
		t.Fatalf("validationAction warn: %v", err)
	}
	// Several clauses: details lists the unsatisfied ones.
	if err := db.RunCommand(ctx, bson.D{{Key: "collMod", Value: "c"}, {Key: "validationAction", Value: "error"}, {Key: "validationLevel", Value: "strict"},
		{Key: "validator", Value: bson.D{{Key: "x", Value: bson.D{{Key: "$type", Value: "string"}}}, {Key: "y", Value: bson.D{{Key: "$exists", Value: true}}}}}}).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 6}, {Key: "x", Value: "s"}})
	var we mongo.WriteException
	if !errors.As(err, &we) || len(we.WriteErrors) != 1 {
		t.Fatalf("err = %v", err)
	}
	details := we.WriteErrors[0].Details.Lookup("details").Document()
	if details.Lookup("operatorName").StringValue() != "$and" || details.Lookup("clausesNotSatisfied", "0", "index").Int32() != 1 {
		t.Fatalf("details = %v, want $and with clause 1 not satisfied", details)
	}
	// A $jsonSchema validator.
	if err := db.RunCommand(ctx, bson.D{{Key: "collMod", Value: "c"}, {Key: "validator", Value: bson.D{{Key: "$jsonSchema", Value: bson.D{{Key: "required", Value: bson.A{"y"}}}}}}}).Err(); err != nil {
		t.Fatal(err)
	}
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 7}, {Key: "x", Value: "s"}})
	if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Details.Lookup("details", "operatorName").StringValue() != "$jsonSchema" {
		t.Fatalf("err = %v, want a $jsonSchema validation failure", err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 8}, {Key: "y", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	// Bad options.
	for _, cmd := range []bson.D{
		{{Key: "collMod", Value: "c"}, {Key: "validationLevel", Value: "sometimes"}},
		{{Key: "collMod", Value: "c"}, {Key: "validator", Value: bson.D{{Key: "x", Value: bson.D{{Key: "$nope", Value: 1}}}}}},
	} {
		if err := db.RunCommand(ctx, cmd).Err(); err == nil {
			t.Errorf("%v accepted", cmd)
		}
	}
}

func mustValue(t *testing.T, v any) bson.RawValue {
	t.Helper()
	typ, data, err := bson.MarshalValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return bson.RawValue{Type: typ, Value: data}
}
