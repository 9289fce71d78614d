package server_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
)

// TestChangeStreamCollectionIgnoresDropDatabase checks that a collection
// stream never sees its database's dropDatabase, as MongoDB's oplog filter
// leaves it out of single-collection streams: when the collection exists
// its drop comes first and invalidates the stream, and a stream started
// after that invalidate continues with the next event of the collection;
// a stream on a collection that does not exist is not invalidated.
func TestChangeStreamCollectionIgnoresDropDatabase(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	db := client.Database("dropdb")
	coll := db.Collection("c")
	mustDo(t, func() error { _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}); return err })
	existing := csWatch(t, coll, nil, nil)
	missing := csWatch(t, db.Collection("none"), nil, nil)
	mustDo(t, func() error { return db.Drop(ctx) })
	mustDo(t, func() error { _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(2)}}); return err })
	mustDo(t, func() error {
		_, err := db.Collection("none").InsertOne(ctx, bson.D{{Key: "_id", Value: int32(3)}})
		return err
	})

	csExpect(t, csNext(t, existing), ev("drop", ns("dropdb", "c")))
	csExpect(t, csNext(t, existing), ev("invalidate"))
	invalidate := existing.ResumeToken()
	csEnded(t, existing)

	after := csWatch(t, coll, nil, options.ChangeStream().SetStartAfter(invalidate))
	csField(t, csNext(t, after), "documentKey", bson.D{{Key: "_id", Value: int32(2)}})

	csField(t, csNext(t, missing), "documentKey", bson.D{{Key: "_id", Value: int32(3)}})
}

// TestChangeStreamRenameDropTarget checks a rename that replaces an
// existing collection (dropTarget) as MongoDB reports it, from its one
// renameCollection oplog entry: a rename event, whose expanded
// operationDescription names the replaced collection's UUID as dropTarget,
// and no drop event for the replaced collection; a stream on the replaced
// collection sees the rename and is invalidated, as is one on the source.
func TestChangeStreamRenameDropTarget(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	db := client.Database("rn")
	for i, name := range []string{"src", "dst"} {
		mustDo(t, func() error {
			_, err := db.Collection(name).InsertOne(ctx, bson.D{{Key: "_id", Value: int32(i)}})
			return err
		})
	}
	var info struct {
		Info struct {
			UUID bson.Binary `bson:"uuid"`
		} `bson:"info"`
	}
	cur, err := db.ListCollections(ctx, bson.D{{Key: "name", Value: "dst"}})
	if err != nil || !cur.Next(ctx) {
		t.Fatalf("listCollections dst: %v", err)
	}
	mustDo(t, func() error { return cur.Decode(&info) })
	_ = cur.Close(ctx)

	plain := csWatch(t, db, nil, nil)
	expanded := csWatch(t, db, nil, options.ChangeStream().SetShowExpandedEvents(true))
	onSource := csWatch(t, db.Collection("src"), nil, nil)
	onTarget := csWatch(t, db.Collection("dst"), nil, nil)
	csRun(t, client.Database("admin"), bson.D{{Key: "renameCollection", Value: "rn.src"}, {Key: "to", Value: "rn.dst"}, {Key: "dropTarget", Value: true}})
	mustDo(t, func() error {
		_, err := db.Collection("next").InsertOne(ctx, bson.D{{Key: "_id", Value: int32(9)}})
		return err
	})

	to := bson.D{{Key: "db", Value: "rn"}, {Key: "coll", Value: "dst"}}
	rename := ev("rename", ns("rn", "src"), bson.E{Key: "to", Value: to})
	csExpect(t, csNext(t, plain), rename)
	csField(t, csNext(t, plain), "documentKey", bson.D{{Key: "_id", Value: int32(9)}})

	got := csNext(t, expanded)
	csField(t, got, "operationType", "rename")
	csField(t, got, "operationDescription", bson.D{{Key: "to", Value: to}, {Key: "dropTarget", Value: info.Info.UUID}})

	for name, cs := range map[string]*mongo.ChangeStream{"source": onSource, "target": onTarget} {
		t.Run(name, func(t *testing.T) {
			csExpect(t, csNext(t, cs), rename)
			csExpect(t, csNext(t, cs), ev("invalidate"))
			csEnded(t, cs)
		})
	}
}
