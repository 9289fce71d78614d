package server_test

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
)

// TestChangeStreamViewEvents checks the events of creating and dropping a
// view as MongoDB reports them (its inserts and deletes in system.views):
// only to database and deployment streams with showExpandedEvents, and
// without collectionUUID, which the manual's create and drop event pages
// give only for changes to a collection. A plain stream, and a collection
// stream on the view's name, see neither, and the drop does not invalidate
// the collection stream.
func TestChangeStreamViewEvents(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	db := client.Database("views")
	csRun(t, db, bson.D{{Key: "create", Value: "base"}})
	expanded := options.ChangeStream().SetShowExpandedEvents(true)
	dbExpanded := csWatch(t, db, nil, expanded)
	cluster := csWatch(t, client, nil, options.ChangeStream().SetShowExpandedEvents(true))
	dbPlain := csWatch(t, db, nil, nil)
	onName := csWatch(t, db.Collection("v"), nil, options.ChangeStream().SetShowExpandedEvents(true))

	pipeline := bson.A{bson.D{{Key: "$match", Value: bson.D{{Key: "x", Value: int32(1)}}}}}
	csRun(t, db, bson.D{{Key: "create", Value: "v"}, {Key: "viewOn", Value: "base"}, {Key: "pipeline", Value: pipeline}})
	mustDo(t, func() error { return db.Collection("v").Drop(ctx) })
	// Then a real collection of that name, and a write to each collection.
	mustDo(t, func() error {
		_, err := db.Collection("v").InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}})
		return err
	})
	mustDo(t, func() error {
		_, err := db.Collection("base").InsertOne(ctx, bson.D{{Key: "_id", Value: int32(2)}})
		return err
	})

	viewNS := ns("views", "v")
	for _, s := range []struct {
		name string
		next func() bson.D
	}{
		{"database", func() bson.D { return csNext(t, dbExpanded) }},
		{"deployment", func() bson.D { return csNext(t, cluster) }},
	} {
		t.Run(s.name, func(t *testing.T) {
			csExpect(t, s.next(), ev("create", viewNS, bson.E{Key: "operationDescription", Value: bson.D{{Key: "viewOn", Value: "base"}, {Key: "pipeline", Value: pipeline}}}))
			csExpect(t, s.next(), ev("drop", viewNS))
			csField(t, s.next(), "operationType", "create") // the collection v
			csField(t, s.next(), "operationType", "insert")
		})
	}
	t.Run("plain database stream", func(t *testing.T) {
		csField(t, csNext(t, dbPlain), "documentKey", bson.D{{Key: "_id", Value: int32(1)}})
	})
	t.Run("collection stream on the view's name", func(t *testing.T) {
		csField(t, csNext(t, onName), "operationType", "create")
		csField(t, csNext(t, onName), "documentKey", bson.D{{Key: "_id", Value: int32(1)}})
	})
}
