package server_test

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
)

// tooLargeMessage is MongoDB's message for a change event larger than
// 16 MiB, after the command's context: the size in decimal and hex and the
// event's first element, its resume token.
var tooLargeMessage = regexp.MustCompile(`^(Executor error during getMore|PlanExecutor error during aggregation) :: caused by :: ` +
	`BSONObj size: (\d+) \(0x([0-9A-F]+)\) is invalid\. Size must be between 0 and 16793600\(16MB\) First element: _id: \{ _data: "([0-9A-F]+)" \}$`)

// TestChangeStreamEventTooLarge: an update event with updateLookup on a
// 9 MiB field is 18 MiB, and the server fails the read with
// BSONObjectTooLarge (10334) and MongoDB's message, naming the event's
// resume token. As MongoDB's getMore, the batch being built is abandoned:
// an event before the large one in the same batch is not returned; read one
// event per batch it is, and then the read fails on the large one. Resuming
// after the token the message names continues with the next event.
func TestChangeStreamEventTooLarge(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	coll := client.Database("shop").Collection("big")
	ctx := largeCtx(t)
	mustDo(t, func() error { _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}); return err })
	cs := csWatch(t, coll, nil, options.ChangeStream().SetFullDocument(options.UpdateLookup))
	start := cs.ResumeToken()
	mustDo(t, func() error { _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(2)}}); return err })
	big := strings.Repeat("x", 9<<20)
	mustDo(t, func() error {
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "big", Value: big}}}})
		return err
	})
	mustDo(t, func() error { _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(3)}}); return err })

	tooLarge := func(cs *mongo.ChangeStream, command string) string {
		t.Helper()
		if cs.Next(ctx) {
			t.Fatalf("read %s, want BSONObjectTooLarge", cs.Current)
		}
		var ce mongo.CommandError
		if !errors.As(cs.Err(), &ce) || ce.Code != 10334 || ce.Name != "BSONObjectTooLarge" {
			t.Fatalf("read error %v, want BSONObjectTooLarge (10334)", cs.Err())
		}
		m := tooLargeMessage.FindStringSubmatch(ce.Message)
		if m == nil || m[1] != command {
			t.Fatalf("message %q, want MongoDB's after %q", ce.Message, command)
		}
		size, _ := strconv.Atoi(m[2])
		if hex := fmt.Sprintf("%X", size); hex != m[3] || size <= 18<<20 {
			t.Errorf("message %q: size %d (0x%s), want one above 18 MiB with its hex", ce.Message, size, m[3])
		}
		return m[4]
	}
	// Events 2 and the update are read by one getMore: nothing is returned.
	token := tooLarge(cs, "Executor error during getMore")

	// One event per batch: event 2, then the update fails the next getMore.
	one, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(options.UpdateLookup).
		SetResumeAfter(start).SetBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = one.Close(ctx) })
	csField(t, csNext(t, one), "documentKey", bson.D{{Key: "_id", Value: int32(2)}})
	if got := tooLarge(one, "Executor error during getMore"); got != token {
		t.Errorf("read one by one, the message names token %s, want %s", got, token)
	}

	// The aggregate's first batch fails the same way, with its own context.
	first, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetFullDocument(options.UpdateLookup).SetResumeAfter(start))
	if err == nil {
		_ = first.Close(ctx)
		t.Fatal("the aggregate's first batch returned the event too large")
	}
	var ce mongo.CommandError
	if !errors.As(err, &ce) || ce.Code != 10334 || !tooLargeMessage.MatchString(ce.Message) ||
		!strings.HasPrefix(ce.Message, "PlanExecutor error during aggregation :: caused by :: ") {
		t.Errorf("aggregate: %v, want BSONObjectTooLarge with MongoDB's message", err)
	}

	// Resuming after the token in the message reads the next event.
	after, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(bson.D{{Key: "_data", Value: token}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = after.Close(ctx) })
	csField(t, csNext(t, after), "documentKey", bson.D{{Key: "_id", Value: int32(3)}})
}

// TestChangeStreamEventOfLargestDocument: the insert event of a document of
// the largest size a client may store (16 MiB) is a little larger than
// 16 MiB, and MongoDB returns it: an event is refused with
// BSONObjectTooLarge only above the server's internal limit, 16 MiB +
// 16 KiB (the 16793600 its message names). A pre-image of that size, with
// the rest of a delete event, is returned too.
func TestChangeStreamEventOfLargestDocument(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	db := client.Database("shop")
	csRun(t, db, bson.D{{Key: "create", Value: "max"}, {Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}})
	coll := db.Collection("max")
	ctx := largeCtx(t)
	cs := csWatch(t, coll, nil, options.ChangeStream().SetFullDocumentBeforeChange(options.Required))
	// {_id: 1, big: "x…"}: 4 + (1+4+4) + (1+4+4+len+1) + 1 bytes.
	big := strings.Repeat("x", 16<<20-24)
	doc := bson.D{{Key: "_id", Value: int32(1)}, {Key: "big", Value: big}}
	if raw, err := bson.Marshal(doc); err != nil || len(raw) != 16<<20 {
		t.Fatalf("document of %d bytes (%v), want 16 MiB", len(raw), err)
	}
	mustDo(t, func() error { _, err := coll.InsertOne(ctx, doc); return err })
	mustDo(t, func() error { _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}); return err })

	for _, op := range []string{"insert", "delete"} {
		if !cs.Next(ctx) {
			t.Fatalf("%s event of a 16 MiB document: %v", op, cs.Err())
		}
		if len(cs.Current) <= 16<<20 {
			t.Fatalf("%s event of %d bytes, want one over 16 MiB", op, len(cs.Current))
		}
		csField(t, csShape(t, csDecode(t, cs.Current)), "operationType", op)
	}
}

// csDecode decodes raw.
func csDecode(t testing.TB, raw bson.Raw) bson.D {
	t.Helper()
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return d
}
