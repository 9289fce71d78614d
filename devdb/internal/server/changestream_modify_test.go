package server_test

import (
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
)

// TestChangeStreamModifyStateBeforeChange checks that an expanded modify
// event carries stateBeforeChange.collectionOptions: the collection's UUID
// and its options before the collMod, as MongoDB 6.0's does (the manual's
// modify event page; MongoDB's own change stream tests expect
// {collectionOptions: {uuid, …old options}}).
func TestChangeStreamModifyStateBeforeChange(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	db := client.Database("mod")
	csRun(t, db, bson.D{{Key: "create", Value: "c"}})
	var info struct {
		Info struct {
			UUID bson.Binary `bson:"uuid"`
		} `bson:"info"`
	}
	specs, err := db.ListCollections(csCtx(t), bson.D{{Key: "name", Value: "c"}})
	if err != nil {
		t.Fatalf("listCollections: %v", err)
	}
	if !specs.Next(csCtx(t)) {
		t.Fatalf("listCollections: no collection c: %v", specs.Err())
	}
	if err := specs.Decode(&info); err != nil {
		t.Fatalf("decode listCollections: %v", err)
	}
	_ = specs.Close(csCtx(t))
	uuid := info.Info.UUID

	streams := map[string]func() bson.D{}
	collStream := csWatch(t, db.Collection("c"), nil, options.ChangeStream().SetShowExpandedEvents(true))
	dbStream := csWatch(t, db, nil, options.ChangeStream().SetShowExpandedEvents(true))
	streams["collection"] = func() bson.D { return csNext(t, collStream) }
	streams["database"] = func() bson.D { return csNext(t, dbStream) }

	images := bson.D{{Key: "enabled", Value: true}}
	csRun(t, db, bson.D{{Key: "collMod", Value: "c"}, {Key: "changeStreamPreAndPostImages", Value: images}})
	csRun(t, db, bson.D{{Key: "collMod", Value: "c"}, {Key: "validationAction", Value: "warn"}})

	want := []struct {
		desc, before bson.D
	}{
		{
			desc:   bson.D{{Key: "changeStreamPreAndPostImages", Value: images}},
			before: bson.D{{Key: "collectionOptions", Value: bson.D{{Key: "uuid", Value: uuid}}}},
		},
		{
			desc: bson.D{{Key: "validationAction", Value: "warn"}},
			before: bson.D{{Key: "collectionOptions", Value: bson.D{
				{Key: "uuid", Value: uuid}, {Key: "changeStreamPreAndPostImages", Value: images}}}},
		},
	}
	for name, next := range streams {
		t.Run(name, func(t *testing.T) {
			for _, w := range want {
				got := next()
				csField(t, got, "operationType", "modify")
				csField(t, got, "operationDescription", w.desc)
				before, _ := csGet(got, "stateBeforeChange").(bson.D)
				if !reflect.DeepEqual(before, w.before) {
					t.Fatalf("stateBeforeChange = %v, want %v (event %v)", before, w.before, got)
				}
			}
		})
	}
}

// TestCollModValidatorStoresDefaults checks that collMod with a validator
// stores validationLevel and validationAction with it (their defaults,
// strict and error, when unset), as MongoDB's catalog does: listCollections
// shows them and the next modify event's stateBeforeChange includes them.
func TestCollModValidatorStoresDefaults(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	db := client.Database("modv")
	csRun(t, db, bson.D{{Key: "create", Value: "c"}})
	cs := csWatch(t, db.Collection("c"), nil, options.ChangeStream().SetShowExpandedEvents(true))

	validator := bson.D{{Key: "a", Value: bson.D{{Key: "$exists", Value: true}}}}
	csRun(t, db, bson.D{{Key: "collMod", Value: "c"}, {Key: "validator", Value: validator}})
	wantOptions := bson.D{{Key: "validator", Value: validator}, {Key: "validationLevel", Value: "strict"}, {Key: "validationAction", Value: "error"}}

	var spec struct {
		Options bson.D `bson:"options"`
		Info    struct {
			UUID bson.Binary `bson:"uuid"`
		} `bson:"info"`
	}
	cur, err := db.ListCollections(csCtx(t), bson.D{{Key: "name", Value: "c"}})
	if err != nil {
		t.Fatalf("listCollections: %v", err)
	}
	if !cur.Next(csCtx(t)) {
		t.Fatalf("listCollections: no collection c: %v", cur.Err())
	}
	if err := cur.Decode(&spec); err != nil {
		t.Fatalf("decode listCollections: %v", err)
	}
	_ = cur.Close(csCtx(t))
	if !reflect.DeepEqual(spec.Options, wantOptions) {
		t.Fatalf("options after collMod validator = %v, want %v", spec.Options, wantOptions)
	}

	csRun(t, db, bson.D{{Key: "collMod", Value: "c"}, {Key: "validationLevel", Value: "off"}})
	csField(t, csNext(t, cs), "operationDescription", bson.D{{Key: "validator", Value: validator}})
	got := csNext(t, cs)
	csField(t, got, "operationDescription", bson.D{{Key: "validationLevel", Value: "off"}})
	wantBefore := bson.D{{Key: "collectionOptions", Value: append(bson.D{{Key: "uuid", Value: spec.Info.UUID}}, wantOptions...)}}
	csField(t, got, "stateBeforeChange", wantBefore)
}
