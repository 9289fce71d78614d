package server

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/internal/mongoerr"
)

// $listLocalSessions lists the sessions commands used; endSessions removes
// them; the stage runs only first, in a collection-less aggregate.
func TestListLocalSessions(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	sess, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := mongo.WithSession(ctx, sess, func(ctx context.Context) error {
		_, err := c.Database("test").Collection("s").InsertOne(ctx, bson.D{{Key: "x", Value: 1}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_, id := sess.ID().Lookup("id").Binary()
	list := func(t *testing.T) []bson.D {
		t.Helper()
		cur, err := c.Database("admin").Aggregate(ctx, mongo.Pipeline{{{Key: "$listLocalSessions", Value: bson.D{}}}})
		if err != nil {
			t.Fatal(err)
		}
		var docs []bson.D
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatal(err)
		}
		return docs
	}
	has := func(docs []bson.D) bool {
		for _, d := range docs {
			key, _ := fieldOf(d, "_id")
			v, _ := fieldOf(key.(bson.D), "id")
			if b, ok := v.(bson.Binary); ok && bytes.Equal(b.Data, id) {
				uid, _ := fieldOf(key.(bson.D), "uid")
				if ub, ok := uid.(bson.Binary); !ok || len(ub.Data) != 32 {
					t.Errorf("uid = %v, want 32 bytes of BinData", uid)
				}
				last, _ := fieldOf(d, "lastUse")
				if lu, ok := last.(bson.DateTime); !ok || time.Since(lu.Time()) > time.Hour {
					t.Errorf("lastUse = %v", last)
				}
				return true
			}
		}
		return false
	}
	if docs := list(t); !has(docs) {
		t.Fatalf("session %x not listed in %v", id, docs)
	}
	sess.EndSession(ctx)
	// The driver pools ended sessions for reuse, so end one it never saw:
	// a session startSession created.
	var started struct {
		ID struct {
			ID bson.Binary `bson:"id"`
		} `bson:"id"`
	}
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "startSession", Value: 1}}).Decode(&started); err != nil {
		t.Fatal(err)
	}
	id = started.ID.ID.Data
	if docs := list(t); !has(docs) {
		t.Fatalf("started session %x not listed", id)
	}
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "endSessions", Value: bson.A{bson.D{{Key: "id", Value: started.ID.ID}}}}}).Err(); err != nil {
		t.Fatal(err)
	}
	if docs := list(t); has(docs) {
		t.Fatalf("ended session %x still listed", id)
	}

	for _, tc := range []struct {
		name string
		db   string
		cmd  bson.D
		code mongoerr.Code
	}{
		{"on a collection", "admin", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$listLocalSessions", Value: bson.D{}}}}}, {Key: "cursor", Value: bson.D{}}}, mongoerr.InvalidNamespace},
		{"not first", "admin", bson.D{{Key: "aggregate", Value: 1}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$match", Value: bson.D{}}}, bson.D{{Key: "$listLocalSessions", Value: bson.D{}}}}}, {Key: "cursor", Value: bson.D{}}}, mongoerr.StageNotFirst},
		{"unknown option", "admin", bson.D{{Key: "aggregate", Value: 1}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$listLocalSessions", Value: bson.D{{Key: "nope", Value: 1}}}}}}, {Key: "cursor", Value: bson.D{}}}, mongoerr.IDLUnknownField},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Database(tc.db).RunCommand(ctx, tc.cmd).Err()
			var ce mongo.CommandError
			if !errors.As(err, &ce) || ce.Code != int32(tc.code) {
				t.Fatalf("err = %v, want code %d (%s)", err, tc.code, tc.code)
			}
		})
	}
}

// The cache is bounded: beyond maxLocalSessions the least recently used
// session is forgotten.
func TestSessionCacheBounded(t *testing.T) {
	var c sessionCache
	now := time.Unix(1_700_000_000, 0)
	for i := range maxLocalSessions + 10 {
		var k [16]byte
		k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
		c.touch(k, now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := len(c.list(now.Add(time.Minute))); n != maxLocalSessions {
		t.Fatalf("cache holds %d sessions, want %d", n, maxLocalSessions)
	}
	if n := len(c.list(now.Add(time.Hour))); n != 0 {
		t.Fatalf("%d sessions survive the timeout", n)
	}
}
