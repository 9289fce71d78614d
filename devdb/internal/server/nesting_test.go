package server

import (
	"encoding/binary"
	"errors"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/wire"
	"github.com/changehook/changehook/internal/mongoerr"
)

// rawNested returns the raw BSON of {a: {a: ... {}}} nested levels deep,
// built without recursion (the driver's encoder recurses).
func rawNested(levels int) []byte {
	size := 5 + 8*(levels-1)
	b := make([]byte, 0, size)
	for i := range levels - 1 {
		b = binary.LittleEndian.AppendUint32(b, uint32(size-8*i))
		b = append(b, 0x03, 'a', 0)
	}
	b = append(b, 5, 0, 0, 0, 0)
	for range levels - 1 {
		b = append(b, 0)
	}
	return b
}

// nested returns {a: {a: ... {x: 1}}} as a bson.D nested levels deep.
func nested(levels int) bson.D {
	d := bson.D{{Key: "x", Value: int32(1)}}
	for range levels - 1 {
		d = bson.D{{Key: "a", Value: d}}
	}
	return d
}

// An insert nested a million levels (an 8 MB message) is answered with
// Overflow and the connection and the server keep serving.
func TestDeeplyNestedMessage(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	r := dialRaw(t, s)
	body, err := bson.Marshal(bson.D{{Key: "insert", Value: "c"}, {Key: "$db", Value: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	deep := rawNested(1_000_000)
	id := r.nextID()
	r.send(wire.AppendMsgSequence(wire.AppendMsg(nil, id, 0, 0, body), "documents", deep))
	reply := r.readReply(id)
	if get(reply, "ok") != 0.0 || get(reply, "code") != int32(mongoerr.Overflow) {
		t.Fatalf("reply = %v, want Overflow (15)", reply)
	}
	// The same in the command body.
	b := binary.LittleEndian.AppendUint32(nil, 0)
	b = append(b, 0x02)
	b = append(b, "insert\x00"...)
	b = binary.LittleEndian.AppendUint32(b, 2)
	b = append(b, "c\x00"...)
	b = append(b, 0x03)
	b = append(b, "doc\x00"...)
	b = append(b, deep...)
	b = append(b, 0x02)
	b = append(b, "$db\x00"...)
	b = binary.LittleEndian.AppendUint32(b, 5)
	b = append(b, "test\x00"...)
	b = append(b, 0)
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	id = r.nextID()
	r.send(wire.AppendMsg(nil, id, 0, 0, b))
	if reply := r.readReply(id); get(reply, "code") != int32(mongoerr.Overflow) {
		t.Fatalf("reply = %v, want Overflow (15)", reply)
	}
	id = r.command(0, bson.D{{Key: "ping", Value: 1}, {Key: "$db", Value: "admin"}})
	if reply := r.readReply(id); get(reply, "ok") != 1.0 {
		t.Fatalf("ping after the deep messages = %v", reply)
	}
}

// Stored documents are limited to 100 levels of nesting (MongoDB's limit),
// for inserts, updates, replacements, upserts and findAndModify.
func TestStoredNestingLimit(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("test").Collection("c")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: nested(99)}}); err != nil {
		t.Fatalf("insert of 100 levels: %v", err)
	}
	wantOverflow := func(what string, err error) {
		t.Helper()
		var se mongo.ServerError
		if !errors.As(err, &se) || !se.HasErrorCode(int(mongoerr.Overflow)) {
			t.Errorf("%s: err = %v, want Overflow (15)", what, err)
		}
	}
	_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}, {Key: "n", Value: nested(100)}})
	wantOverflow("insert of 101 levels", err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: nested(100)}}}})
	wantOverflow("update to 101 levels", err)
	_, err = coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "n", Value: bson.A{nested(99)}}})
	wantOverflow("replacement of 101 levels", err)
	_, err = coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 3}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: nested(100)}}}},
		options.UpdateOne().SetUpsert(true))
	wantOverflow("upsert of 101 levels", err)
	err = coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: nested(100)}}}}).Err()
	wantOverflow("findAndModify to 101 levels", err)
	if n, _ := coll.CountDocuments(ctx, bson.D{}); n != 1 {
		t.Errorf("documents = %d, want 1", n)
	}
}
