package server

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// TestFilterErrorAfterEarlierMatches: when a filter fails on a document (an
// $expr dividing by its zero field), the documents matched before it are
// still returned first, as MongoDB's executor returns them before it reaches
// the failing one: with batchSize 1, find and aggregate return the first
// document and the getMore reading the next fails; a first batch that would
// reach the failing document fails as a whole.
func TestFilterErrorAfterEarlierMatches(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	mustRun(t, c, "scan", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{
		bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: int32(1)}},
		bson.D{{Key: "_id", Value: int32(2)}, {Key: "a", Value: int32(0)}},
	}}})
	filter := bson.D{{Key: "$expr", Value: bson.D{{Key: "$divide", Value: bson.A{int32(1), "$a"}}}}}
	for _, tc := range []struct {
		name  string
		batch func(n int32) bson.D
	}{
		{"find", func(n int32) bson.D {
			return bson.D{{Key: "find", Value: "c"}, {Key: "filter", Value: filter}, {Key: "batchSize", Value: n}}
		}},
		{"aggregate", func(n int32) bson.D {
			return bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: filter}}}},
				{Key: "cursor", Value: bson.D{{Key: "batchSize", Value: n}}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reply := mustRun(t, c, "scan", tc.batch(1))
			first := get(reply, "cursor", "firstBatch").(bson.A)
			if len(first) != 1 || get(first[0].(bson.D), "_id") != int32(1) {
				t.Fatalf("first batch %v, want the document with _id 1", first)
			}
			_, err := runCommand(t, c, "scan", bson.D{{Key: "getMore", Value: get(reply, "cursor", "id")}, {Key: "collection", Value: "c"}})
			wantCode(t, err, mongoerr.BadValue, "BadValue")
			_, err = runCommand(t, c, "scan", tc.batch(101))
			wantCode(t, err, mongoerr.BadValue, "BadValue")
		})
	}
}
