package server_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb/internal/server"
	"github.com/changehook/changehook/internal/mongoerr"
)

// csTimeout bounds every wait for a change event in these tests.
const csTimeout = 10 * time.Second

// csStart starts a devdb instance and connects a driver client to it; both
// are closed when the test ends.
func csStart(t testing.TB, opts server.Options) (*server.Server, *mongo.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), csTimeout)
	defer cancel()
	srv, err := server.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start devdb: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close devdb: %v", err)
		}
	})
	return srv, csConnect(t, srv.URI())
}

// csConnect connects a driver client to uri and disconnects it at cleanup.
func csConnect(t testing.TB, uri string) *mongo.Client {
	t.Helper()
	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetRetryReads(true).SetRetryWrites(true).
		SetHeartbeatInterval(500 * time.Millisecond))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), csTimeout)
		defer cancel()
		_ = client.Disconnect(ctx)
	})
	return client
}

// csCtx returns a context bounded by csTimeout, cancelled at cleanup.
func csCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), csTimeout)
	t.Cleanup(cancel)
	return ctx
}

// largeTimeout bounds a whole test that writes and reads change events of
// 16 MiB and more (largeCtx): its work, not a wait, takes seconds, over
// csTimeout under the race detector on a busy machine.
const largeTimeout = 2 * time.Minute

// largeCtx returns a context bounded by largeTimeout, cancelled at cleanup.
func largeCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), largeTimeout)
	t.Cleanup(cancel)
	return ctx
}

// csWatch opens a change stream with a short await time, closed at cleanup.
func csWatch(t testing.TB, w interface {
	Watch(context.Context, any, ...options.Lister[options.ChangeStreamOptions]) (*mongo.ChangeStream, error)
}, pipeline any, opts *options.ChangeStreamOptionsBuilder) *mongo.ChangeStream {
	t.Helper()
	if pipeline == nil {
		pipeline = mongo.Pipeline{}
	}
	if opts == nil {
		opts = options.ChangeStream()
	}
	opts.SetMaxAwaitTime(200 * time.Millisecond)
	cs, err := w.Watch(csCtx(t), pipeline, opts)
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close(context.Background()) })
	return cs
}

// csNext waits for the next event and returns it as a document.
func csNext(t testing.TB, cs *mongo.ChangeStream) bson.D {
	t.Helper()
	if !cs.Next(csCtx(t)) {
		t.Fatalf("change stream ended: err=%v", cs.Err())
	}
	var d bson.D
	if err := bson.Unmarshal(cs.Current, &d); err != nil {
		t.Fatalf("decode event: %v", err)
	}
	return d
}

// csShape replaces the values that differ from run to run (resume token,
// cluster time, wall time, collection UUID) with placeholders after checking
// their types, so that events can be compared exactly, field order included.
func csShape(t testing.TB, ev bson.D) bson.D {
	t.Helper()
	out := make(bson.D, 0, len(ev))
	for _, e := range ev {
		switch e.Key {
		case "_id":
			d, ok := e.Value.(bson.D)
			if !ok || len(d) != 1 || d[0].Key != "_data" {
				t.Fatalf("event _id %v is not a resume token", e.Value)
			}
			if _, ok := d[0].Value.(string); !ok {
				t.Fatalf("event _id._data %v is not a string", d[0].Value)
			}
			e.Value = "<token>"
		case "clusterTime":
			if _, ok := e.Value.(bson.Timestamp); !ok {
				t.Fatalf("clusterTime %v is not a timestamp", e.Value)
			}
			e.Value = "<ts>"
		case "wallTime":
			if _, ok := e.Value.(bson.DateTime); !ok {
				t.Fatalf("wallTime %v is not a date", e.Value)
			}
			e.Value = "<date>"
		case "collectionUUID":
			if b, ok := e.Value.(bson.Binary); !ok || b.Subtype != 4 || len(b.Data) != 16 {
				t.Fatalf("collectionUUID %v is not a UUID", e.Value)
			}
			e.Value = "<uuid>"
		}
		out = append(out, e)
	}
	return out
}

// csExpect compares an event's shape with want.
func csExpect(t testing.TB, got bson.D, want bson.D) {
	t.Helper()
	shape := csShape(t, got)
	if !reflect.DeepEqual(shape, want) {
		t.Fatalf("event mismatch:\n got %v\nwant %v", shape, want)
	}
}

// ev builds an expected event with placeholders for the variable fields.
func ev(op string, rest ...bson.E) bson.D {
	d := bson.D{{Key: "_id", Value: "<token>"}, {Key: "operationType", Value: op}, {Key: "clusterTime", Value: "<ts>"}, {Key: "wallTime", Value: "<date>"}}
	return append(d, rest...)
}

func ns(db, coll string) bson.E {
	return bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: db}, {Key: "coll", Value: coll}}}
}

func dkey(id any) bson.E {
	return bson.E{Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}}
}

func fullDoc(d bson.D) bson.E { return bson.E{Key: "fullDocument", Value: d} }

// csCode returns the server error code of err, or 0.
func csCode(err error) mongoerr.Code {
	var se mongo.ServerError
	if errors.As(err, &se) {
		for _, c := range []int32{20, 47, 72, 73, 237, 260, 280, 286, 40415, 40324, 40602, 40674, 50865, 14, 2} {
			if se.HasErrorCode(int(c)) {
				return mongoerr.Code(c)
			}
		}
		return -1
	}
	return 0
}

func TestChangeStreamCRUDEvents(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	coll := client.Database("app").Collection("items")
	cs := csWatch(t, coll, nil, nil)

	mustDo(t, func() error {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: bson.D{{Key: "b", Value: int32(1)}, {Key: "c", Value: int32(2)}}}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}}, {Key: "gone", Value: true}})
		return err
	})
	csExpect(t, csNext(t, cs), ev("insert",
		fullDoc(bson.D{{Key: "_id", Value: int32(1)}, {Key: "a", Value: bson.D{{Key: "b", Value: int32(1)}, {Key: "c", Value: int32(2)}}}, {Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}}, {Key: "gone", Value: true}}),
		ns("app", "items"), dkey(int32(1))))

	mustDo(t, func() error {
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{
			{Key: "$set", Value: bson.D{{Key: "a.b", Value: int32(5)}, {Key: "n", Value: "x"}}},
			{Key: "$unset", Value: bson.D{{Key: "gone", Value: ""}}},
			{Key: "$push", Value: bson.D{{Key: "arr", Value: int32(4)}}},
		})
		return err
	})
	got := csNext(t, cs)
	csExpect(t, got, ev("update", ns("app", "items"), dkey(int32(1)),
		bson.E{Key: "updateDescription", Value: csUpdateDesc(got)}))
	ud := csUpdateDesc(got)
	wantFields := map[string]any{"a.b": int32(5), "n": "x", "arr.3": int32(4)}
	upd := ud[0].Value.(bson.D)
	if len(upd) != len(wantFields) {
		t.Fatalf("updatedFields = %v, want %v", upd, wantFields)
	}
	for _, e := range upd {
		if !reflect.DeepEqual(wantFields[e.Key], e.Value) {
			t.Fatalf("updatedFields = %v, want %v", upd, wantFields)
		}
	}
	if !reflect.DeepEqual(ud[1].Value, bson.A{"gone"}) || !reflect.DeepEqual(ud[2].Value, bson.A{}) || len(ud) != 3 {
		t.Fatalf("updateDescription = %v", ud)
	}

	mustDo(t, func() error {
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "$pop", Value: bson.D{{Key: "arr", Value: int32(1)}}}})
		return err
	})
	got = csNext(t, cs)
	// $pop logs the whole resulting array, as MongoDB's pop node does (only
	// a pipeline update reports truncatedArrays).
	csExpect(t, got, ev("update", ns("app", "items"), dkey(int32(1)),
		bson.E{Key: "updateDescription", Value: bson.D{
			{Key: "updatedFields", Value: bson.D{{Key: "arr", Value: bson.A{int32(1), int32(2), int32(3)}}}},
			{Key: "removedFields", Value: bson.A{}},
			{Key: "truncatedArrays", Value: bson.A{}},
		}}))

	mustDo(t, func() error {
		_, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "z", Value: int32(9)}})
		return err
	})
	csExpect(t, csNext(t, cs), ev("replace",
		fullDoc(bson.D{{Key: "_id", Value: int32(1)}, {Key: "z", Value: int32(9)}}),
		ns("app", "items"), dkey(int32(1))))

	mustDo(t, func() error {
		_, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: int32(1)}})
		return err
	})
	csExpect(t, csNext(t, cs), ev("delete", ns("app", "items"), dkey(int32(1))))

	// A multi-document write gives one event per document, in order.
	mustDo(t, func() error {
		_, err := coll.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: int32(10)}}, bson.D{{Key: "_id", Value: int32(11)}}, bson.D{{Key: "_id", Value: int32(12)}}})
		return err
	})
	for _, id := range []int32{10, 11, 12} {
		csExpect(t, csNext(t, cs), ev("insert", fullDoc(bson.D{{Key: "_id", Value: id}}), ns("app", "items"), dkey(id)))
	}
	mustDo(t, func() error {
		_, err := coll.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "k", Value: int32(1)}}}})
		return err
	})
	for _, id := range []int32{10, 11, 12} {
		got := csNext(t, cs)
		csExpect(t, got, ev("update", ns("app", "items"), dkey(id), bson.E{Key: "updateDescription", Value: bson.D{
			{Key: "updatedFields", Value: bson.D{{Key: "k", Value: int32(1)}}},
			{Key: "removedFields", Value: bson.A{}},
			{Key: "truncatedArrays", Value: bson.A{}},
		}}))
	}
}

// csUpdateDesc returns the updateDescription of an event.
func csUpdateDesc(ev bson.D) bson.D {
	for _, e := range ev {
		if e.Key == "updateDescription" {
			d, _ := e.Value.(bson.D)
			return d
		}
	}
	return nil
}

func mustDo(t testing.TB, fn func() error) {
	t.Helper()
	if err := fn(); err != nil {
		t.Fatal(err)
	}
}

// csRun runs a database command and fails the test on error.
func csRun(t testing.TB, db *mongo.Database, cmd bson.D) {
	t.Helper()
	if err := db.RunCommand(csCtx(t), cmd).Err(); err != nil {
		t.Fatalf("%v: %v", cmd, err)
	}
}

// csEnded waits for the stream to end after an invalidate and checks that
// the cursor is closed without error.
func csEnded(t testing.TB, cs *mongo.ChangeStream) {
	t.Helper()
	if cs.Next(csCtx(t)) {
		t.Fatalf("stream continued after invalidate with %v", cs.Current)
	}
	if cs.Err() != nil {
		t.Fatalf("stream error after invalidate: %v", cs.Err())
	}
	if cs.ID() != 0 {
		t.Fatalf("cursor id %d after invalidate, want 0", cs.ID())
	}
}

func TestChangeStreamInvalidation(t *testing.T) {
	t.Parallel()
	invalidate := ev("invalidate")
	tests := []struct {
		name string
		// watch opens the stream under test.
		watch func(t *testing.T, c *mongo.Client) *mongo.ChangeStream
		// act performs the DDL (after one insert into db1.c1).
		act  func(t *testing.T, c *mongo.Client)
		want []bson.D
		// ends reports that the stream is invalidated.
		ends bool
	}{
		{
			name: "collection stream, drop",
			watch: func(t *testing.T, c *mongo.Client) *mongo.ChangeStream {
				return csWatch(t, c.Database("db1").Collection("c1"), nil, nil)
			},
			act: func(t *testing.T, c *mongo.Client) {
				mustDo(t, func() error { return c.Database("db1").Collection("c1").Drop(csCtx(t)) })
			},
			want: []bson.D{ev("drop", ns("db1", "c1")), invalidate},
			ends: true,
		},
		{
			name: "collection stream, rename",
			watch: func(t *testing.T, c *mongo.Client) *mongo.ChangeStream {
				return csWatch(t, c.Database("db1").Collection("c1"), nil, nil)
			},
			act: func(t *testing.T, c *mongo.Client) {
				csRun(t, c.Database("admin"), bson.D{{Key: "renameCollection", Value: "db1.c1"}, {Key: "to", Value: "db1.c2"}})
			},
			want: []bson.D{ev("rename", ns("db1", "c1"), bson.E{Key: "to", Value: bson.D{{Key: "db", Value: "db1"}, {Key: "coll", Value: "c2"}}}), invalidate},
			ends: true,
		},
		{
			name: "collection stream, dropDatabase",
			watch: func(t *testing.T, c *mongo.Client) *mongo.ChangeStream {
				return csWatch(t, c.Database("db1").Collection("c1"), nil, nil)
			},
			act: func(t *testing.T, c *mongo.Client) {
				mustDo(t, func() error { return c.Database("db1").Drop(csCtx(t)) })
			},
			want: []bson.D{ev("drop", ns("db1", "c1")), invalidate},
			ends: true,
		},
		{
			name: "collection stream, another collection renamed onto it",
			watch: func(t *testing.T, c *mongo.Client) *mongo.ChangeStream {
				return csWatch(t, c.Database("db1").Collection("c9"), nil, nil)
			},
			act: func(t *testing.T, c *mongo.Client) {
				csRun(t, c.Database("admin"), bson.D{{Key: "renameCollection", Value: "db1.c1"}, {Key: "to", Value: "db1.c9"}})
			},
			want: []bson.D{ev("rename", ns("db1", "c1"), bson.E{Key: "to", Value: bson.D{{Key: "db", Value: "db1"}, {Key: "coll", Value: "c9"}}}), invalidate},
			ends: true,
		},
		{
			name: "database stream, drop and rename do not invalidate",
			watch: func(t *testing.T, c *mongo.Client) *mongo.ChangeStream {
				return csWatch(t, c.Database("db1"), nil, nil)
			},
			act: func(t *testing.T, c *mongo.Client) {
				csRun(t, c.Database("admin"), bson.D{{Key: "renameCollection", Value: "db1.c1"}, {Key: "to", Value: "db1.c2"}})
				mustDo(t, func() error { return c.Database("db1").Collection("c2").Drop(csCtx(t)) })
				mustDo(t, func() error {
					_, err := c.Database("db1").Collection("c3").InsertOne(csCtx(t), bson.D{{Key: "_id", Value: int32(7)}})
					return err
				})
			},
			want: []bson.D{
				ev("rename", ns("db1", "c1"), bson.E{Key: "to", Value: bson.D{{Key: "db", Value: "db1"}, {Key: "coll", Value: "c2"}}}),
				ev("drop", ns("db1", "c2")),
				ev("insert", fullDoc(bson.D{{Key: "_id", Value: int32(7)}}), ns("db1", "c3"), dkey(int32(7))),
			},
		},
		{
			name: "database stream, dropDatabase",
			watch: func(t *testing.T, c *mongo.Client) *mongo.ChangeStream {
				return csWatch(t, c.Database("db1"), nil, nil)
			},
			act: func(t *testing.T, c *mongo.Client) {
				mustDo(t, func() error { return c.Database("db1").Drop(csCtx(t)) })
			},
			want: []bson.D{ev("drop", ns("db1", "c1")), ev("dropDatabase", bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: "db1"}}}), invalidate},
			ends: true,
		},
		{
			name:  "deployment stream is never invalidated",
			watch: func(t *testing.T, c *mongo.Client) *mongo.ChangeStream { return csWatch(t, c, nil, nil) },
			act: func(t *testing.T, c *mongo.Client) {
				mustDo(t, func() error { return c.Database("db1").Drop(csCtx(t)) })
				mustDo(t, func() error {
					_, err := c.Database("db2").Collection("x").InsertOne(csCtx(t), bson.D{{Key: "_id", Value: int32(1)}})
					return err
				})
			},
			want: []bson.D{
				ev("drop", ns("db1", "c1")),
				ev("dropDatabase", bson.E{Key: "ns", Value: bson.D{{Key: "db", Value: "db1"}}}),
				ev("insert", fullDoc(bson.D{{Key: "_id", Value: int32(1)}}), ns("db2", "x"), dkey(int32(1))),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, client := csStart(t, server.Options{})
			coll := client.Database("db1").Collection("c1")
			mustDo(t, func() error {
				_, err := coll.InsertOne(csCtx(t), bson.D{{Key: "_id", Value: int32(1)}})
				return err
			})
			cs := tc.watch(t, client)
			tc.act(t, client)
			for _, want := range tc.want {
				csExpect(t, csNext(t, cs), want)
			}
			if tc.ends {
				csEnded(t, cs)
			}
		})
	}
}

func TestChangeStreamFullDocumentModes(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	db := client.Database("img")
	csRun(t, db, bson.D{{Key: "create", Value: "on"}, {Key: "changeStreamPreAndPostImages", Value: bson.D{{Key: "enabled", Value: true}}}})
	csRun(t, db, bson.D{{Key: "create", Value: "off"}})

	type step struct {
		coll string
		// want is fullDocument (for the update) and fullDocumentBeforeChange
		// (for update and delete); nil means null, "absent" the field is absent.
		fullDocument, before any
		code                 mongoerr.Code
	}
	post := bson.D{{Key: "_id", Value: int32(1)}, {Key: "v", Value: int32(2)}}
	pre := bson.D{{Key: "_id", Value: int32(1)}, {Key: "v", Value: int32(1)}}
	tests := []struct {
		name     string
		fd, fdbc string
		steps    []step
	}{
		{"default", "", "", []step{{coll: "on", fullDocument: "absent", before: "absent"}}},
		{"updateLookup", "updateLookup", "", []step{{coll: "on", fullDocument: post, before: "absent"}, {coll: "off", fullDocument: post, before: "absent"}}},
		{"whenAvailable", "whenAvailable", "whenAvailable", []step{{coll: "on", fullDocument: post, before: pre}, {coll: "off", fullDocument: nil, before: nil}}},
		{"required with images", "required", "required", []step{{coll: "on", fullDocument: post, before: pre}}},
		{"required post-image missing", "required", "", []step{{coll: "off", code: 47}}},
		{"required pre-image missing", "", "required", []step{{coll: "off", code: 47}}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for j, st := range tc.steps {
				coll := db.Collection(st.coll)
				opts := options.ChangeStream()
				if tc.fd != "" {
					opts.SetFullDocument(options.FullDocument(tc.fd))
				}
				if tc.fdbc != "" {
					opts.SetFullDocumentBeforeChange(options.FullDocument(tc.fdbc))
				}
				cs := csWatch(t, coll, nil, opts)
				start := cs.ResumeToken()
				id := int32(100*i + j)
				mustDo(t, func() error {
					_, err := coll.InsertOne(csCtx(t), bson.D{{Key: "_id", Value: id}, {Key: "v", Value: int32(1)}})
					return err
				})
				mustDo(t, func() error {
					_, err := coll.UpdateOne(csCtx(t), bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: int32(2)}}}})
					return err
				})
				if st.code != 0 {
					// The getMore reading the insert and the update fails as a
					// whole: as on MongoDB, the insert before the failing
					// event in the same batch is not returned.
					if cs.Next(csCtx(t)) {
						t.Fatalf("got %v, want error %d", cs.Current, st.code)
					}
					if got := csCode(cs.Err()); got != st.code {
						t.Fatalf("error %v (code %d), want code %d", cs.Err(), got, st.code)
					}
					// Read one event per batch, the insert is returned (it
					// needs no image) and the update fails.
					one := csWatch(t, coll, nil, opts.SetResumeAfter(start).SetBatchSize(1))
					csField(t, csNext(t, one), "operationType", "insert")
					if one.Next(csCtx(t)) {
						t.Fatalf("got %v, want error %d", one.Current, st.code)
					}
					if got := csCode(one.Err()); got != st.code {
						t.Fatalf("error %v (code %d), want code %d", one.Err(), got, st.code)
					}
					continue
				}
				csNext(t, cs) // insert
				withID := func(v any) any {
					d, ok := v.(bson.D)
					if !ok {
						return v
					}
					out := append(bson.D{}, d...)
					out[0].Value = id
					return out
				}
				upd := csNext(t, cs)
				csField(t, upd, "fullDocument", withID(st.fullDocument))
				csField(t, upd, "fullDocumentBeforeChange", withID(st.before))
				if got := upd[len(upd)-1].Key; st.before != "absent" && got != "fullDocumentBeforeChange" {
					t.Fatalf("last field %q, want fullDocumentBeforeChange", got)
				}
				mustDo(t, func() error {
					_, err := coll.DeleteOne(csCtx(t), bson.D{{Key: "_id", Value: id}})
					return err
				})
				del := csNext(t, cs)
				csField(t, del, "fullDocument", "absent")
				wantBefore := st.before
				if d, ok := wantBefore.(bson.D); ok {
					wantBefore = append(bson.D{}, d...)
					wantBefore.(bson.D)[1].Value = int32(2)
				}
				csField(t, del, "fullDocumentBeforeChange", withID(wantBefore))
			}
		})
	}

	t.Run("updateLookup of a deleted document is null", func(t *testing.T) {
		coll := db.Collection("off")
		cs := csWatch(t, coll, nil, options.ChangeStream().SetFullDocument(options.UpdateLookup))
		mustDo(t, func() error {
			_, err := coll.InsertOne(csCtx(t), bson.D{{Key: "_id", Value: "gone"}})
			return err
		})
		mustDo(t, func() error {
			_, err := coll.UpdateOne(csCtx(t), bson.D{{Key: "_id", Value: "gone"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: int32(1)}}}})
			return err
		})
		mustDo(t, func() error {
			_, err := coll.DeleteOne(csCtx(t), bson.D{{Key: "_id", Value: "gone"}})
			return err
		})
		csNext(t, cs)
		csField(t, csNext(t, cs), "fullDocument", nil)
	})
}

// csField checks the value of field key in ev; "absent" expects no field.
func csField(t testing.TB, ev bson.D, key string, want any) {
	t.Helper()
	for _, e := range ev {
		if e.Key == key {
			if want == "absent" {
				t.Fatalf("%s = %v, want absent (event %v)", key, e.Value, ev)
			}
			if !reflect.DeepEqual(e.Value, want) {
				t.Fatalf("%s = %v, want %v", key, e.Value, want)
			}
			return
		}
	}
	if want != "absent" {
		t.Fatalf("%s absent, want %v (event %v)", key, want, ev)
	}
}

func TestChangeStreamExpandedEvents(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	db := client.Database("exp")
	plain := csWatch(t, db, nil, nil)
	cs := csWatch(t, db, nil, options.ChangeStream().SetShowExpandedEvents(true))

	csRun(t, db, bson.D{{Key: "create", Value: "c"}})
	coll := db.Collection("c")
	mustDo(t, func() error {
		_, err := coll.Indexes().CreateOne(csCtx(t), mongo.IndexModel{Keys: bson.D{{Key: "a", Value: int32(1)}}})
		return err
	})
	mustDo(t, func() error {
		_, err := coll.InsertOne(csCtx(t), bson.D{{Key: "_id", Value: int32(1)}, {Key: "arr", Value: bson.A{int32(1)}}})
		return err
	})
	mustDo(t, func() error {
		_, err := coll.UpdateOne(csCtx(t), bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "arr.0", Value: int32(5)}}}})
		return err
	})
	mustDo(t, func() error { return coll.Indexes().DropOne(csCtx(t), "a_1") })

	wantOps := []string{"create", "createIndexes", "insert", "update", "dropIndexes"}
	for _, op := range wantOps {
		got := csNext(t, cs)
		csField(t, got, "operationType", op)
		shape := csShape(t, got)
		if shape[3].Key != "collectionUUID" {
			t.Fatalf("%s: fourth field %q, want collectionUUID: %v", op, shape[3].Key, shape)
		}
		switch op {
		case "create", "createIndexes", "dropIndexes":
			if _, ok := csGet(got, "operationDescription").(bson.D); !ok {
				t.Fatalf("%s: no operationDescription: %v", op, got)
			}
		case "update":
			ud := csUpdateDesc(got)
			want := bson.D{
				{Key: "updatedFields", Value: bson.D{{Key: "arr.0", Value: int32(5)}}},
				{Key: "removedFields", Value: bson.A{}},
				{Key: "truncatedArrays", Value: bson.A{}},
			}
			// No disambiguatedPaths: MongoDB adds it from 6.1 on, after
			// the version devdb presents.
			if !reflect.DeepEqual(ud, want) {
				t.Fatalf("updateDescription %v, want %v", ud, want)
			}
		}
	}
	// Without showExpandedEvents only the classic events appear.
	csField(t, csNext(t, plain), "operationType", "insert")
	csField(t, csNext(t, plain), "operationType", "update")
}

// csGet returns the value of key in d, or nil.
func csGet(d bson.D, key string) any {
	for _, e := range d {
		if e.Key == key {
			return e.Value
		}
	}
	return nil
}

func TestChangeStreamOptionErrors(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	db := client.Database("opt")
	agg := func(target any, dbName string, pipeline bson.A) error {
		return client.Database(dbName).RunCommand(csCtx(t), bson.D{
			{Key: "aggregate", Value: target}, {Key: "pipeline", Value: pipeline}, {Key: "cursor", Value: bson.D{}},
		}).Err()
	}
	stage := func(spec bson.D) bson.D { return bson.D{{Key: "$changeStream", Value: spec}} }
	ts := bson.Timestamp{T: 1, I: 1}
	badToken := bson.D{{Key: "_data", Value: "not hex"}}
	// A well-formed high-water-mark token for cluster time (1, 1).
	goodToken := bson.D{{Key: "_data", Value: "82" + "0000000100000001" + "01" + "00" + "00" + "00" + strings.Repeat("0", 32) + "00000000"}}
	tests := []struct {
		name     string
		db       string
		target   any
		pipeline bson.A
		code     mongoerr.Code
	}{
		{"unknown option", "opt", "c", bson.A{stage(bson.D{{Key: "foo", Value: 1}})}, 40415},
		{"bad fullDocument", "opt", "c", bson.A{stage(bson.D{{Key: "fullDocument", Value: "nope"}})}, 2},
		{"fullDocument wrong type", "opt", "c", bson.A{stage(bson.D{{Key: "fullDocument", Value: int32(1)}})}, 14},
		{"not first", "opt", "c", bson.A{bson.D{{Key: "$match", Value: bson.D{}}}, stage(bson.D{})}, 40602},
		{"both resume options", "opt", "c", bson.A{stage(bson.D{{Key: "resumeAfter", Value: goodToken}, {Key: "startAfter", Value: goodToken}})}, 50865},
		{"malformed token", "opt", "c", bson.A{stage(bson.D{{Key: "resumeAfter", Value: badToken}})}, 260},
		{"token and time", "opt", "c", bson.A{stage(bson.D{{Key: "startAtOperationTime", Value: ts}, {Key: "startAfter", Value: goodToken}})}, 40674},
		{"token not an object", "opt", "c", bson.A{stage(bson.D{{Key: "resumeAfter", Value: "x"}})}, 14},
		{"admin without allChangesForCluster", "admin", 1, bson.A{stage(bson.D{})}, 73},
		{"allChangesForCluster off admin", "opt", 1, bson.A{stage(bson.D{{Key: "allChangesForCluster", Value: true}})}, 72},
		{"local database", "local", 1, bson.A{stage(bson.D{})}, 73},
		{"system collection", "opt", "system.views", bson.A{stage(bson.D{})}, 73},
		{"forbidden stage", "opt", "c", bson.A{stage(bson.D{}), bson.D{{Key: "$group", Value: bson.D{{Key: "_id", Value: nil}}}}}, 20},
		{"unknown stage", "opt", "c", bson.A{stage(bson.D{}), bson.D{{Key: "$frobnicate", Value: bson.D{}}}}, 40324},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := agg(tc.target, tc.db, tc.pipeline)
			if got := csCode(err); got != tc.code {
				t.Fatalf("error %v (code %d), want code %d", err, got, tc.code)
			}
		})
	}
	// The aggregate command's own checks apply to a change stream too: the
	// cursor option is required (FailedToParse, 9, as on MongoDB), and
	// explain, which devdb does not support, is refused rather than ignored
	// (CommandNotSupported, 115).
	for _, tc := range []struct {
		name  string
		extra bson.E
		code  int32
	}{
		{"no cursor", bson.E{Key: "comment", Value: "x"}, 9},
		{"explain", bson.E{Key: "explain", Value: true}, 115},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := client.Database("opt").RunCommand(csCtx(t), bson.D{
				{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{stage(bson.D{})}}, tc.extra,
			}).Err()
			var ce mongo.CommandError
			if !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("error %v, want code %d", err, tc.code)
			}
		})
	}
	_ = db
}

func TestChangeStreamResume(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	coll := client.Database("res").Collection("c")
	insert := func(id int32) {
		t.Helper()
		mustDo(t, func() error {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}})
			return err
		})
	}
	cs := csWatch(t, coll, nil, nil)
	insert(1)
	insert(2)
	insert(3)
	first := csNext(t, cs)
	tok1 := csGet(first, "_id")
	third := func() bson.D { csNext(t, cs); return csNext(t, cs) }()
	opTime3 := csGet(third, "clusterTime").(bson.Timestamp)

	t.Run("resumeAfter is exclusive", func(t *testing.T) {
		r := csWatch(t, coll, nil, options.ChangeStream().SetResumeAfter(tok1))
		csField(t, csNext(t, r), "documentKey", bson.D{{Key: "_id", Value: int32(2)}})
		csField(t, csNext(t, r), "documentKey", bson.D{{Key: "_id", Value: int32(3)}})
	})
	t.Run("startAtOperationTime is inclusive", func(t *testing.T) {
		r := csWatch(t, coll, nil, options.ChangeStream().SetStartAtOperationTime(&opTime3))
		csField(t, csNext(t, r), "documentKey", bson.D{{Key: "_id", Value: int32(3)}})
	})
	t.Run("database stream accepts a collection token", func(t *testing.T) {
		r := csWatch(t, client.Database("res"), nil, options.ChangeStream().SetResumeAfter(tok1))
		csField(t, csNext(t, r), "documentKey", bson.D{{Key: "_id", Value: int32(2)}})
	})
	t.Run("startAfter an invalidate", func(t *testing.T) {
		ctx := csCtx(t)
		c2 := client.Database("res").Collection("dropme")
		mustDo(t, func() error {
			_, err := c2.InsertOne(ctx, bson.D{{Key: "_id", Value: "first"}})
			return err
		})
		s2 := csWatch(t, c2, nil, nil)
		mustDo(t, func() error { return c2.Drop(ctx) })
		csField(t, csNext(t, s2), "operationType", "drop")
		inv := csNext(t, s2)
		csField(t, inv, "operationType", "invalidate")
		invTok := csGet(inv, "_id")

		// resumeAfter an invalidate is refused, as in MongoDB.
		_, err := c2.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(invTok))
		if csCode(err) != 260 {
			t.Fatalf("resumeAfter invalidate: %v, want code 260", err)
		}
		mustDo(t, func() error {
			_, err := c2.InsertOne(ctx, bson.D{{Key: "_id", Value: "again"}})
			return err
		})
		r := csWatch(t, c2, nil, options.ChangeStream().SetStartAfter(invTok))
		got := csNext(t, r)
		csField(t, got, "operationType", "insert")
		csField(t, got, "documentKey", bson.D{{Key: "_id", Value: "again"}})
	})
	t.Run("token from another collection is not found", func(t *testing.T) {
		ctx := csCtx(t)
		other := client.Database("res").Collection("other")
		mustDo(t, func() error {
			_, err := other.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(1)}})
			return err
		})
		_, err := other.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(tok1))
		if csCode(err) != 280 {
			t.Fatalf("foreign token: %v, want code 280", err)
		}
	})
}

func TestChangeStreamPostBatchResumeTokenAdvances(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	coll := client.Database("pbrt").Collection("c")
	match := mongo.Pipeline{{{Key: "$match", Value: bson.D{{Key: "operationType", Value: "delete"}}}}}
	cs := csWatch(t, coll, match, nil)
	before := cs.ResumeToken()
	if before == nil {
		t.Fatal("no resume token after the first batch")
	}
	for i := range 5 {
		mustDo(t, func() error {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(i)}})
			return err
		})
	}
	// Each TryNext is one getMore; the token advances past the inserts even
	// though none matches.
	for bytesEqual(cs.ResumeToken(), before) {
		if cs.TryNext(ctx) {
			t.Fatalf("unexpected event %v", cs.Current)
		}
		if err := cs.Err(); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal("resume token never advanced")
		}
	}
	advanced := cs.ResumeToken()
	mustDo(t, func() error {
		_, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: int32(4)}})
		return err
	})
	r := csWatch(t, coll, nil, options.ChangeStream().SetResumeAfter(advanced))
	got := csNext(t, r)
	csField(t, got, "operationType", "delete")
	csField(t, got, "documentKey", bson.D{{Key: "_id", Value: int32(4)}})
}

// TestChangeStreamPostBatchResumeTokenAdvancesPastOtherNamespaces: a
// stream waiting in getMore is not woken by writes to other collections,
// yet the empty batch it returns at maxAwaitTimeMS carries a
// postBatchResumeToken past them (as MongoDB's), and resuming from it
// still finds the next event of its own collection.
func TestChangeStreamPostBatchResumeTokenAdvancesPastOtherNamespaces(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	db := client.Database("pbrtns")
	watched, other := db.Collection("watched"), db.Collection("other")
	mustDo(t, func() error { return db.CreateCollection(ctx, "watched") })
	cs := csWatch(t, watched, nil, nil)
	before := cs.ResumeToken()
	if before == nil {
		t.Fatal("no resume token after the first batch")
	}
	for i := range 5 {
		mustDo(t, func() error {
			_, err := other.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(i)}})
			return err
		})
	}
	// Nothing wakes the stream's getMore now: only the scan at the end of
	// its wait can move the token past the other collection's writes.
	for bytesEqual(cs.ResumeToken(), before) {
		if cs.TryNext(ctx) {
			t.Fatalf("unexpected event %v", cs.Current)
		}
		if err := cs.Err(); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal("resume token never advanced")
		}
	}
	advanced := cs.ResumeToken()
	mustDo(t, func() error {
		_, err := watched.InsertOne(ctx, bson.D{{Key: "_id", Value: "after"}})
		return err
	})
	if !cs.Next(ctx) {
		t.Fatalf("the waiting stream missed the write to its collection: %v", cs.Err())
	}
	r := csWatch(t, watched, nil, options.ChangeStream().SetResumeAfter(advanced))
	got := csNext(t, r)
	csField(t, got, "operationType", "insert")
	csField(t, got, "documentKey", bson.D{{Key: "_id", Value: "after"}})
}

func bytesEqual(a, b bson.Raw) bool { return string(a) == string(b) }

func TestChangeStreamAutoResumeAfterDisconnect(t *testing.T) {
	t.Parallel()
	srv, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	coll := client.Database("ar").Collection("c")
	cs := csWatch(t, coll, nil, nil)
	const n = 12
	insert := func(i int) {
		t.Helper()
		mustDo(t, func() error {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(i)}})
			return err
		})
	}
	// The stream has read some events and waits in getMore when its
	// connection is dropped; more events were written meanwhile.
	for i := range 4 {
		insert(i)
	}
	for i := range 2 {
		csField(t, csNext(t, cs), "documentKey", bson.D{{Key: "_id", Value: int32(i)}})
	}
	srv.CloseClientConnections()
	for i := 4; i < 8; i++ {
		insert(i)
	}
	for i := 2; i < 6; i++ {
		csField(t, csNext(t, cs), "documentKey", bson.D{{Key: "_id", Value: int32(i)}})
	}
	srv.CloseClientConnections()
	for i := 8; i < n; i++ {
		insert(i)
	}
	for i := 6; i < n; i++ {
		csField(t, csNext(t, cs), "documentKey", bson.D{{Key: "_id", Value: int32(i)}})
	}
	// Nothing is repeated: the next event is a new one.
	insert(n)
	csField(t, csNext(t, cs), "documentKey", bson.D{{Key: "_id", Value: int32(n)}})
}

func TestChangeStreamAutoResumeAfterRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := csCtx(t)
	srv, err := server.Start(ctx, server.Options{Data: dir})
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	client := csConnect(t, srv.URI())
	coll := client.Database("rs").Collection("c")
	cs := csWatch(t, coll, nil, nil)
	insert := func(id int32) {
		t.Helper()
		mustDo(t, func() error {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}})
			return err
		})
	}
	insert(0)
	insert(1)
	csField(t, csNext(t, cs), "documentKey", bson.D{{Key: "_id", Value: int32(0)}})

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv2, err := server.Start(ctx, server.Options{Data: dir, Addr: addr})
	if err != nil {
		t.Fatalf("restart on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = srv2.Close() })
	insert(2)
	for _, id := range []int32{1, 2} {
		csField(t, csNext(t, cs), "documentKey", bson.D{{Key: "_id", Value: id}})
	}
	insert(3)
	csField(t, csNext(t, cs), "documentKey", bson.D{{Key: "_id", Value: int32(3)}})
	// Disconnect while srv2 still runs: a client disconnecting from a
	// closed server waits for server selection to time out.
	if err := cs.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := client.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestChangeStreamHistoryLost(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{OplogMaxBytes: 16 << 10})
	ctx := csCtx(t)
	coll := client.Database("hl").Collection("c")
	cs := csWatch(t, coll, nil, nil)
	mustDo(t, func() error {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(-1)}})
		return err
	})
	old := csGet(csNext(t, cs), "_id")
	pad := make([]byte, 1024)
	for i := range 64 {
		mustDo(t, func() error {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(i)}, {Key: "pad", Value: pad}})
			return err
		})
	}
	_, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(old))
	if csCode(err) != 286 {
		t.Fatalf("resume from a trimmed token: %v, want ChangeStreamHistoryLost (286)", err)
	}
	// The open stream fell behind the retained oplog: its next getMore fails
	// instead of skipping the trimmed events.
	if cs.Next(ctx) {
		t.Fatalf("stream behind the oplog returned %v, want ChangeStreamHistoryLost", cs.Current)
	}
	if csCode(cs.Err()) != 286 {
		t.Fatalf("stream behind the oplog: %v, want 286", cs.Err())
	}
	early := bson.Timestamp{T: 1, I: 1}
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&early))
	if csCode(err) != 286 {
		t.Fatalf("startAtOperationTime before the oplog: %v, want 286", err)
	}
}

func TestChangeStreamConcurrentStreams(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	coll := client.Database("conc").Collection("c")
	const streams, events = 10, 50
	var css []*mongo.ChangeStream
	for range streams {
		css = append(css, csWatch(t, coll, nil, nil))
	}
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i, cs := range css {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for want := range int32(events) {
				if !cs.Next(ctx) {
					errs <- fmt.Errorf("stream %d ended at %d: %v", i, want, cs.Err())
					return
				}
				id, err := cs.Current.LookupErr("documentKey", "_id")
				if err != nil || id.Int32() != want {
					errs <- fmt.Errorf("stream %d: event %d has documentKey %v (%v)", i, want, id, err)
					return
				}
			}
		}()
	}
	for i := range int32(events) {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestChangeStreamNonexistentNamespace(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	coll := client.Database("nowhere").Collection("nothing")
	cs := csWatch(t, coll, nil, nil)
	if cs.TryNext(csCtx(t)) || cs.Err() != nil {
		t.Fatalf("TryNext on an empty stream: %v %v", cs.Current, cs.Err())
	}
	mustDo(t, func() error {
		_, err := coll.InsertOne(csCtx(t), bson.D{{Key: "_id", Value: int32(1)}})
		return err
	})
	csField(t, csNext(t, cs), "operationType", "insert")
}

func TestChangeStreamPipeline(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	when := bson.NewDateTimeFromTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	doc := bson.D{
		{Key: "_id", Value: int32(1)}, {Key: "name", Value: "Widget"}, {Key: "qty", Value: int32(5)},
		{Key: "price", Value: 2.5}, {Key: "tags", Value: bson.A{"a", "b"}}, {Key: "when", Value: when},
	}
	stage := func(name string, spec any) bson.D { return bson.D{{Key: name, Value: spec}} }
	tests := []struct {
		name     string
		pipeline mongo.Pipeline
		// want maps output fields to values; "absent" expects no field.
		want map[string]any
		// wantKeys, when set, is the exact list of output field names.
		wantKeys []string
		// filters says the pipeline drops delete events.
		filters bool
	}{
		{
			name: "$match on the event",
			pipeline: mongo.Pipeline{stage("$match", bson.D{
				{Key: "operationType", Value: "insert"},
				{Key: "fullDocument.qty", Value: bson.D{{Key: "$gte", Value: int32(5)}}},
				{Key: "fullDocument.tags", Value: bson.D{{Key: "$in", Value: bson.A{"a"}}}},
			})},
			want:    map[string]any{"operationType": "insert", "documentKey": bson.D{{Key: "_id", Value: int32(1)}}},
			filters: true,
		},
		{
			name:     "$project",
			pipeline: mongo.Pipeline{stage("$project", bson.D{{Key: "operationType", Value: int32(1)}, {Key: "fullDocument.name", Value: int32(1)}})},
			want:     map[string]any{"fullDocument": bson.D{{Key: "name", Value: "Widget"}}},
			wantKeys: []string{"_id", "operationType", "fullDocument"},
		},
		{
			name: "$addFields with expressions",
			pipeline: mongo.Pipeline{stage("$addFields", bson.D{
				{Key: "lit", Value: bson.D{{Key: "$literal", Value: "$name"}}},
				{Key: "label", Value: bson.D{{Key: "$concat", Value: bson.A{"$fullDocument.name", "-", bson.D{{Key: "$toString", Value: "$fullDocument.qty"}}}}}},
				{Key: "size", Value: bson.D{{Key: "$cond", Value: bson.A{bson.D{{Key: "$gte", Value: bson.A{"$fullDocument.qty", int32(5)}}}, "big", "small"}}}},
				{Key: "dflt", Value: bson.D{{Key: "$ifNull", Value: bson.A{"$fullDocument.nope", "none"}}}},
				{Key: "cmp", Value: bson.D{{Key: "$and", Value: bson.A{
					bson.D{{Key: "$gt", Value: bson.A{"$fullDocument.qty", int32(1)}}},
					bson.D{{Key: "$lt", Value: bson.A{"$fullDocument.price", int32(3)}}},
					bson.D{{Key: "$lte", Value: bson.A{"$fullDocument.qty", int32(5)}}},
					bson.D{{Key: "$eq", Value: bson.A{"$fullDocument.name", "Widget"}}},
					bson.D{{Key: "$ne", Value: bson.A{"$operationType", "delete"}}},
				}}}},
				{Key: "bools", Value: bson.D{{Key: "$or", Value: bson.A{false, bson.D{{Key: "$not", Value: bson.A{true}}}}}}},
				{Key: "sum", Value: bson.D{{Key: "$add", Value: bson.A{"$fullDocument.qty", int32(1)}}}},
				{Key: "diff", Value: bson.D{{Key: "$subtract", Value: bson.A{int32(10), "$fullDocument.qty"}}}},
				{Key: "prod", Value: bson.D{{Key: "$multiply", Value: bson.A{"$fullDocument.price", int32(2)}}}},
				{Key: "quot", Value: bson.D{{Key: "$divide", Value: bson.A{"$fullDocument.qty", int32(2)}}}},
				{Key: "ntags", Value: bson.D{{Key: "$size", Value: "$fullDocument.tags"}}},
				{Key: "last", Value: bson.D{{Key: "$arrayElemAt", Value: bson.A{"$fullDocument.tags", int32(-1)}}}},
				{Key: "day", Value: bson.D{{Key: "$dateToString", Value: bson.D{{Key: "format", Value: "%Y-%m-%d"}, {Key: "date", Value: "$fullDocument.when"}}}}},
				{Key: "ptype", Value: bson.D{{Key: "$type", Value: "$fullDocument.price"}}},
				{Key: "tagged", Value: bson.D{{Key: "$in", Value: bson.A{"a", "$fullDocument.tags"}}}},
			})},
			want: map[string]any{
				"lit": "$name", "label": "Widget-5", "size": "big", "dflt": "none", "cmp": true, "bools": false,
				"sum": int32(6), "diff": int32(5), "prod": 5.0, "quot": 2.5, "ntags": int32(2), "last": "b",
				"day": "2024-01-02", "ptype": "double", "tagged": true, "operationType": "insert",
			},
		},
		{
			name: "$set",
			pipeline: mongo.Pipeline{stage("$set", bson.D{
				{Key: "upper", Value: bson.D{{Key: "$toUpper", Value: "$fullDocument.name"}}},
				{Key: "lower", Value: bson.D{{Key: "$toLower", Value: "$fullDocument.name"}}},
			})},
			want: map[string]any{"upper": "WIDGET", "lower": "widget"},
		},
		{
			name:     "$unset",
			pipeline: mongo.Pipeline{stage("$unset", bson.A{"fullDocument", "ns", "wallTime"})},
			wantKeys: []string{"_id", "operationType", "clusterTime", "documentKey"},
		},
		{
			name:     "$replaceRoot",
			pipeline: mongo.Pipeline{stage("$replaceRoot", bson.D{{Key: "newRoot", Value: bson.D{{Key: "_id", Value: "$_id"}, {Key: "doc", Value: "$fullDocument.name"}}}})},
			want:     map[string]any{"doc": "Widget"},
			wantKeys: []string{"_id", "doc"},
		},
		{
			name:     "$replaceWith",
			pipeline: mongo.Pipeline{stage("$replaceWith", bson.D{{Key: "_id", Value: "$_id"}, {Key: "op", Value: "$operationType"}})},
			want:     map[string]any{"op": "insert"},
			wantKeys: []string{"_id", "op"},
		},
		{
			name: "$redact",
			pipeline: mongo.Pipeline{stage("$redact", bson.D{{Key: "$cond", Value: bson.D{
				{Key: "if", Value: bson.D{{Key: "$eq", Value: bson.A{"$operationType", "insert"}}}},
				{Key: "then", Value: "$$KEEP"}, {Key: "else", Value: "$$PRUNE"},
			}}})},
			want:    map[string]any{"operationType": "insert", "fullDocument": doc},
			filters: true,
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			coll := client.Database("pipe").Collection(fmt.Sprintf("c%d", i))
			mustDo(t, func() error {
				_, err := coll.InsertOne(csCtx(t), bson.D{{Key: "_id", Value: int32(0)}})
				return err
			})
			cs := csWatch(t, coll, tc.pipeline, nil)
			if tc.filters {
				// A delete event, which $match and $redact drop.
				mustDo(t, func() error {
					_, err := coll.DeleteOne(csCtx(t), bson.D{{Key: "_id", Value: int32(0)}})
					return err
				})
			}
			mustDo(t, func() error {
				_, err := coll.InsertOne(csCtx(t), doc)
				return err
			})
			got := csNext(t, cs)
			for k, v := range tc.want {
				csField(t, got, k, v)
			}
			if tc.wantKeys != nil {
				var keys []string
				for _, e := range got {
					keys = append(keys, e.Key)
				}
				if !reflect.DeepEqual(keys, tc.wantKeys) {
					t.Fatalf("fields %v, want %v (event %v)", keys, tc.wantKeys, got)
				}
			}
		})
	}
}

func TestChangeStreamPipelineModifiesID(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	tests := []struct {
		name     string
		pipeline mongo.Pipeline
	}{
		{"$project removes _id", mongo.Pipeline{{{Key: "$project", Value: bson.D{{Key: "_id", Value: int32(0)}}}}}},
		{"$set changes _id", mongo.Pipeline{{{Key: "$set", Value: bson.D{{Key: "_id", Value: "mine"}}}}}},
		{"$replaceWith drops _id", mongo.Pipeline{{{Key: "$replaceWith", Value: "$fullDocument"}}}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			coll := client.Database("badid").Collection(fmt.Sprintf("c%d", i))
			cs := csWatch(t, coll, tc.pipeline, nil)
			mustDo(t, func() error {
				_, err := coll.InsertOne(csCtx(t), bson.D{{Key: "_id", Value: int32(1)}})
				return err
			})
			if cs.Next(csCtx(t)) {
				t.Fatalf("got %v, want ChangeStreamFatalError", cs.Current)
			}
			if code := csCode(cs.Err()); code != 280 {
				t.Fatalf("error %v (code %d), want 280", cs.Err(), code)
			}
		})
	}
}

// TestChangeStreamStartBeforeFirstWrite checks that a start point after the
// server's oplog began but before the first write sees every write, and one
// before the oplog began is history lost, as on MongoDB.
func TestChangeStreamStartBeforeFirstWrite(t *testing.T) {
	t.Parallel()
	_, client := csStart(t, server.Options{})
	ctx := csCtx(t)
	db := client.Database("sbfw")
	var hello bson.D
	if err := db.RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Decode(&hello); err != nil {
		t.Fatal(err)
	}
	start, ok := csGet(hello, "operationTime").(bson.Timestamp)
	if !ok {
		t.Fatalf("ping reply has no operationTime: %v", hello)
	}
	coll := db.Collection("c")
	for i := range 3 {
		mustDo(t, func() error {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(i)}})
			return err
		})
	}
	cs := csWatch(t, coll, nil, options.ChangeStream().SetStartAtOperationTime(&start))
	for i := range 3 {
		got := csNext(t, cs)
		if id := csGet(csGet(got, "documentKey").(bson.D), "_id"); id != int32(i) {
			t.Fatalf("event %d has documentKey._id %v, want %d", i, id, i)
		}
	}
	early := bson.Timestamp{T: 1, I: 1}
	_, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetStartAtOperationTime(&early))
	if csCode(err) != 286 {
		t.Fatalf("startAtOperationTime before the oplog began: %v, want ChangeStreamHistoryLost (286)", err)
	}
}
