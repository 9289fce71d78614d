package server

import (
	"math"
	"strconv"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// TestCursorSizeArguments: find's skip, limit and batchSize, getMore's
// batchSize and aggregate's cursor.batchSize are read as MongoDB's IDL reads
// them (safeInt64, validator gte 0): any number, a fractional one truncated
// toward zero, null as absent; a negative value is Location51024 "BSON field
// '<name>' value must be >= 0, actual value '<n>'" — also a negative find
// limit, which only the legacy OP_QUERY accepted — checked before any view
// or cursor is looked at. getMore's batchSize 0 means no document limit,
// as no batchSize does.
func TestCursorSizeArguments(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	docs := bson.A{}
	for i := range 5 {
		docs = append(docs, bson.D{{Key: "_id", Value: int32(i)}})
	}
	mustRun(t, c, "size", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: docs}})
	mustRun(t, c, "size", bson.D{{Key: "create", Value: "v"}, {Key: "viewOn", Value: "c"}, {Key: "pipeline", Value: bson.A{}}})
	outOfRange := func(name string, n int) string {
		return "BSON field '" + name + "' value must be >= 0, actual value '" + strconv.Itoa(n) + "'"
	}

	for _, tc := range []struct {
		name string
		cmd  bson.D
		msg  string
	}{
		{"find batchSize", bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: int32(-1)}}, outOfRange("batchSize", -1)},
		{"find skip", bson.D{{Key: "find", Value: "c"}, {Key: "skip", Value: int64(-3)}}, outOfRange("skip", -3)},
		{"find limit", bson.D{{Key: "find", Value: "c"}, {Key: "limit", Value: int32(-1)}}, outOfRange("limit", -1)},
		{"find limit fractional", bson.D{{Key: "find", Value: "c"}, {Key: "limit", Value: -2.5}}, outOfRange("limit", -2)},
		{"find limit on a view", bson.D{{Key: "find", Value: "v"}, {Key: "limit", Value: int32(-1)}}, outOfRange("limit", -1)},
		{"aggregate cursor.batchSize", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{}}, {Key: "cursor", Value: bson.D{{Key: "batchSize", Value: int32(-1)}}}}, outOfRange("batchSize", -1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCommand(t, c, "size", tc.cmd)
			wantError(t, err, mongoerr.IDLValueOutOfRange, tc.msg)
		})
	}

	firstBatch := func(t *testing.T, cmd bson.D) (bson.A, int64) {
		t.Helper()
		reply := mustRun(t, c, "size", cmd)
		return get(reply, "cursor", "firstBatch").(bson.A), get(reply, "cursor", "id").(int64)
	}
	getMore := func(id int64, batchSize any) bson.D {
		cmd := bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}}
		if batchSize != nil {
			cmd = append(cmd, bson.E{Key: "batchSize", Value: batchSize})
		}
		return cmd
	}

	t.Run("fractional and null sizes", func(t *testing.T) {
		if b, _ := firstBatch(t, bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: 2.9}}); len(b) != 2 {
			t.Errorf("find batchSize 2.9: %d documents, want 2", len(b))
		}
		if b, _ := firstBatch(t, bson.D{{Key: "find", Value: "c"}, {Key: "skip", Value: 1.5}, {Key: "limit", Value: math.NaN()}}); len(b) != 4 {
			t.Errorf("find skip 1.5, limit NaN: %d documents, want 4", len(b))
		}
		if b, _ := firstBatch(t, bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{}}, {Key: "cursor", Value: bson.D{{Key: "batchSize", Value: nil}}}}); len(b) != 5 {
			t.Errorf("aggregate batchSize null: %d documents, want 5", len(b))
		}
	})

	t.Run("getMore batchSize", func(t *testing.T) {
		_, id := firstBatch(t, bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: int32(1)}})
		// Refused before the cursor is used: the cursor stays open.
		_, err := runCommand(t, c, "size", getMore(id, int32(-1)))
		wantError(t, err, mongoerr.IDLValueOutOfRange, outOfRange("batchSize", -1))
		if n := len(get(mustRun(t, c, "size", getMore(id, 1.9)), "cursor", "nextBatch").(bson.A)); n != 1 {
			t.Fatalf("getMore batchSize 1.9: %d documents, want 1", n)
		}
		// 0 (here -0.5 truncated) is no limit: the rest, and the cursor ends.
		for _, zero := range []any{int32(0), -0.5} {
			_, id := firstBatch(t, bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: int32(1)}})
			reply := mustRun(t, c, "size", getMore(id, zero))
			if n := len(get(reply, "cursor", "nextBatch").(bson.A)); n != 4 || get(reply, "cursor", "id") != int64(0) {
				t.Fatalf("getMore batchSize %v: %v, want the 4 remaining documents and the cursor exhausted", zero, reply)
			}
		}
	})
}
