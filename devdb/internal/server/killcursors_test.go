package server

import (
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/mongoerr"
)

// TestKillCursorsByID: killCursors finds a cursor by its id whatever
// collection or database the command names, as MongoDB's one cursor
// manager does; null elements are skipped; the whole list is read before
// anything is killed, so an element of the wrong type kills nothing.
func TestKillCursorsByID(t *testing.T) {
	t.Parallel()
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	mustRun(t, c, "kc", bson.D{{Key: "insert", Value: "c"}, {Key: "documents", Value: bson.A{
		bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "_id", Value: int32(2)}}, bson.D{{Key: "_id", Value: int32(3)}},
	}}})
	open := func(t *testing.T) int64 {
		t.Helper()
		return get(mustRun(t, c, "kc", bson.D{{Key: "find", Value: "c"}, {Key: "batchSize", Value: int32(1)}}), "cursor", "id").(int64)
	}
	kill := func(t *testing.T, db, coll string, ids bson.A) bson.D {
		t.Helper()
		return mustRun(t, c, db, bson.D{{Key: "killCursors", Value: coll}, {Key: "cursors", Value: ids}})
	}
	wantLists := func(t *testing.T, reply bson.D, killed, notFound bson.A) {
		t.Helper()
		for _, f := range []struct {
			name string
			want bson.A
		}{{"cursorsKilled", killed}, {"cursorsNotFound", notFound}, {"cursorsAlive", bson.A{}}, {"cursorsUnknown", bson.A{}}} {
			got, ok := get(reply, f.name).(bson.A)
			if !ok || len(got) != len(f.want) {
				t.Fatalf("%s = %v, want %v (reply %v)", f.name, get(reply, f.name), f.want, reply)
			}
			for i := range got {
				if got[i] != f.want[i] {
					t.Fatalf("%s = %v, want %v", f.name, got, f.want)
				}
			}
		}
	}
	getMore := func(id int64) error {
		_, err := runCommand(t, c, "kc", bson.D{{Key: "getMore", Value: id}, {Key: "collection", Value: "c"}, {Key: "batchSize", Value: int32(1)}})
		return err
	}

	t.Run("other collection and database", func(t *testing.T) {
		for _, ns := range [][2]string{{"kc", "other"}, {"otherdb", "c"}} {
			id := open(t)
			wantLists(t, kill(t, ns[0], ns[1], bson.A{id}), bson.A{id}, bson.A{})
			wantCode(t, getMore(id), mongoerr.CursorNotFound, "CursorNotFound")
		}
	})
	t.Run("null elements and an empty list", func(t *testing.T) {
		id := open(t)
		wantLists(t, kill(t, "kc", "c", bson.A{nil}), bson.A{}, bson.A{})
		wantLists(t, kill(t, "kc", "c", bson.A{}), bson.A{}, bson.A{})
		wantLists(t, kill(t, "kc", "c", bson.A{nil, id, int64(12345)}), bson.A{id}, bson.A{int64(12345)})
	})
	t.Run("wrong type kills nothing", func(t *testing.T) {
		id := open(t)
		_, err := runCommand(t, c, "kc", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{id, "x"}}})
		wantError(t, err, mongoerr.TypeMismatch, "BSON field 'killCursors.cursors.1' is the wrong type 'string', expected type 'long'")
		_, err = runCommand(t, c, "kc", bson.D{{Key: "killCursors", Value: "c"}, {Key: "cursors", Value: bson.A{int32(5)}}})
		wantError(t, err, mongoerr.TypeMismatch, "BSON field 'killCursors.cursors.0' is the wrong type 'int', expected type 'long'")
		if err := getMore(id); err != nil {
			t.Fatalf("getMore after the refused killCursors: %v, want the cursor alive", err)
		}
	})
}
