package server

import (
	"bytes"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestIdleStreamFollowsPeriodicNoops: as on a replica set, a server with
// nothing written writes a no-op oplog entry every NoopInterval, so an idle
// change stream's postBatchResumeToken moves on with the clock while it
// returns no event, and the oplog shows {op: "n", o: {msg: "periodic
// noop"}}. A stream resumed from the moved token goes on from there.
func TestIdleStreamFollowsPeriodicNoops(t *testing.T) {
	s := startTestServer(t, Options{NoopInterval: 200 * time.Millisecond}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("app").Collection("idle")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	cs, err := coll.Watch(ctx, bson.A{}, options.ChangeStream().SetMaxAwaitTime(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	start := append(bson.Raw(nil), cs.ResumeToken()...)
	// Each TryNext is one awaitData getMore, which returns when an entry
	// is written or after maxAwaitTime.
	deadline := time.Now().Add(20 * time.Second)
	for bytes.Equal(cs.ResumeToken(), start) {
		if time.Now().After(deadline) {
			t.Fatal("the idle stream's postBatchResumeToken did not move in 20s")
		}
		if cs.TryNext(ctx) {
			t.Fatalf("the idle stream returned an event: %v", cs.Current)
		}
		if err := cs.Err(); err != nil {
			t.Fatal(err)
		}
	}
	moved := append(bson.Raw(nil), cs.ResumeToken()...)

	var newest bson.D
	if err := c.Database("local").Collection("oplog.rs").FindOne(ctx, bson.D{},
		options.FindOne().SetSort(bson.D{{Key: "$natural", Value: -1}})).Decode(&newest); err != nil {
		t.Fatal(err)
	}
	if get(newest, "op") != "n" || get(newest, "ns") != "" || get(newest, "o", "msg") != "periodic noop" {
		t.Fatalf("newest oplog entry = %v, want a periodic no-op", newest)
	}

	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	resumed, err := coll.Watch(ctx, bson.A{}, options.ChangeStream().SetResumeAfter(moved))
	if err != nil {
		t.Fatalf("resume from the moved token: %v", err)
	}
	defer resumed.Close(ctx)
	if !resumed.Next(ctx) {
		t.Fatalf("resumed stream: no event: %v", resumed.Err())
	}
	if id := get(bsonD(t, resumed.Current), "documentKey", "_id"); id != int32(2) {
		t.Fatalf("resumed stream's first event is for _id %v, want 2", id)
	}
}
