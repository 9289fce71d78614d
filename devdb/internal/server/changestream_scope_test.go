package server_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
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
