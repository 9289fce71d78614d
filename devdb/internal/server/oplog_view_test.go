package server

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// oplogEntries returns the entries of local.oplog.rs matching filter, in
// the order find with opts returns them.
func oplogEntries(t *testing.T, c *mongo.Client, filter bson.D, opts ...options.Lister[options.FindOptions]) []bson.D {
	t.Helper()
	ctx := testContext(t)
	cur, err := c.Database("local").Collection("oplog.rs").Find(ctx, filter, opts...)
	if err != nil {
		t.Fatalf("find local.oplog.rs: %v", err)
	}
	var out []bson.D
	if err := cur.All(ctx, &out); err != nil {
		t.Fatalf("read local.oplog.rs: %v", err)
	}
	return out
}

// keys returns d's field names.
func keys(d bson.D) []string {
	var k []string
	for _, e := range d {
		k = append(k, e.Key)
	}
	return k
}

func TestOplogServesWritesInMongoDBsFormat(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("app").Collection("things")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "n", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 2}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "m", Value: "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "m", Value: 1}}}); err != nil {
		t.Fatal(err)
	}

	var info struct {
		Info struct {
			UUID bson.Binary `bson:"uuid"`
		} `bson:"info"`
	}
	specs, err := c.Database("app").ListCollections(ctx, bson.D{{Key: "name", Value: "things"}})
	if err != nil || !specs.Next(ctx) {
		t.Fatalf("listCollections: %v", err)
	}
	if err := specs.Decode(&info); err != nil {
		t.Fatal(err)
	}
	ui := info.Info.UUID

	got := oplogEntries(t, c, bson.D{{Key: "ns", Value: bson.D{{Key: "$in", Value: bson.A{"app.things", "app.$cmd"}}}}})
	id := bson.D{{Key: "_id", Value: int32(1)}}
	want := []struct {
		op, ns string
		o, o2  bson.D
	}{
		{"c", "app.$cmd", nil, nil}, // create: its options checked below
		{"i", "app.things", bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(1)}}, id},
		{"u", "app.things", bson.D{{Key: "$v", Value: int32(2)}, {Key: "diff", Value: bson.D{{Key: "u", Value: bson.D{{Key: "n", Value: int32(2)}}}}}}, id},
		{"u", "app.things", bson.D{{Key: "_id", Value: int32(1)}, {Key: "m", Value: "x"}}, id},
		{"d", "app.things", id, nil},
		{"c", "app.$cmd", bson.D{{Key: "createIndexes", Value: "things"}, {Key: "v", Value: int32(2)}, {Key: "key", Value: bson.D{{Key: "m", Value: int32(1)}}}, {Key: "name", Value: "m_1"}}, nil},
	}
	if len(got) != len(want) {
		t.Fatalf("entries of app = %d, want %d: %v", len(got), len(want), got)
	}
	var last bson.Timestamp
	for i, w := range want {
		e := got[i]
		ts, _ := get(e, "ts").(bson.Timestamp)
		if !last.Before(ts) {
			t.Errorf("entry %d: ts %v not after %v", i, ts, last)
		}
		last = ts
		if get(e, "op") != w.op || get(e, "ns") != w.ns || get(e, "t") != int64(1) || get(e, "v") != int64(2) {
			t.Errorf("entry %d = %v, want op %q ns %q t 1 v 2", i, e, w.op, w.ns)
		}
		if u, _ := get(e, "ui").(bson.Binary); !slices.Equal(u.Data, ui.Data) {
			t.Errorf("entry %d: ui %v, want the collection's %v", i, get(e, "ui"), ui)
		}
		if _, ok := get(e, "wall").(bson.DateTime); !ok {
			t.Errorf("entry %d: wall %v, want a date", i, get(e, "wall"))
		}
		if w.o != nil && !equalDoc(t, get(e, "o"), w.o) {
			t.Errorf("entry %d: o = %v, want %v", i, get(e, "o"), w.o)
		}
		if !equalDoc(t, get(e, "o2"), w.o2) {
			t.Errorf("entry %d: o2 = %v, want %v", i, get(e, "o2"), w.o2)
		}
	}
	if get(got[0], "o", "create") != "things" || get(got[0], "o", "idIndex", "name") != "_id_" {
		t.Errorf("create entry's o = %v, want {create: things, idIndex: {…, name: _id_}}", get(got[0], "o"))
	}
	if k := keys(got[1]); !slices.Equal(k, []string{"op", "ns", "ui", "o", "o2", "ts", "t", "v", "wall"}) {
		t.Errorf("insert entry's fields = %v, want MongoDB's order", k)
	}
}

// equalDoc compares a rendered value with want (nil: absent).
func equalDoc(t *testing.T, got any, want bson.D) bool {
	t.Helper()
	if want == nil {
		return got == nil
	}
	a, err := bson.Marshal(got)
	if err != nil {
		return false
	}
	b, err := bson.Marshal(want)
	return err == nil && string(a) == string(b)
}

func TestOplogOldestAndNewestEntry(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	oplog := c.Database("local").Collection("oplog.rs")
	if _, err := c.Database("app").Collection("a").InsertOne(ctx, bson.D{{Key: "k", Value: "last"}}); err != nil {
		t.Fatal(err)
	}

	// The console's read: an unsorted findOne is the oldest entry, the
	// new data directory's "initiating set" no-op.
	var first bson.D
	if err := oplog.FindOne(ctx, bson.D{}).Decode(&first); err != nil {
		t.Fatalf("findOne: %v", err)
	}
	if get(first, "op") != "n" || get(first, "ns") != "" || get(first, "o", "msg") != "initiating set" {
		t.Fatalf("oldest entry = %v, want the initiating no-op", first)
	}

	// db.getReplicationInfo's reads: both ends by $natural.
	oldest := oplogEntries(t, c, bson.D{}, options.Find().SetSort(bson.D{{Key: "$natural", Value: 1}}).SetLimit(1))
	newest := oplogEntries(t, c, bson.D{}, options.Find().SetSort(bson.D{{Key: "$natural", Value: -1}}).SetLimit(1))
	hinted := oplogEntries(t, c, bson.D{}, options.Find().SetHint(bson.D{{Key: "$natural", Value: -1}}).SetLimit(1))
	if len(oldest) != 1 || !equalDoc(t, oldest[0], first) {
		t.Errorf("$natural: 1 first = %v, want %v", oldest, first)
	}
	if len(newest) != 1 || get(newest[0], "op") != "i" || get(newest[0], "o", "k") != "last" {
		t.Fatalf("$natural: -1 first = %v, want the last insert", newest)
	}
	if len(hinted) != 1 || !equalDoc(t, hinted[0], newest[0]) {
		t.Errorf("hint $natural: -1 first = %v, want %v", hinted, newest)
	}

	all := oplogEntries(t, c, bson.D{})
	back := oplogEntries(t, c, bson.D{}, options.Find().SetSort(bson.D{{Key: "$natural", Value: -1}}).SetBatchSize(2))
	slices.Reverse(back)
	if len(all) < 3 || len(back) != len(all) {
		t.Fatalf("forward %d entries, backward %d", len(all), len(back))
	}
	for i := range all {
		if !equalDoc(t, back[i], all[i]) {
			t.Fatalf("entry %d backward = %v, forward %v", i, back[i], all[i])
		}
	}
	n, err := oplog.CountDocuments(ctx, bson.D{{Key: "op", Value: "i"}})
	if err != nil || n != 1 {
		t.Errorf("count of inserts = %d, %v; want 1", n, err)
	}
}

func TestOplogTransactionIsOneApplyOps(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("app").Collection("t")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	sess, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	if _, err := sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
			return nil, err
		}
		return coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	}); err != nil {
		t.Fatalf("transaction: %v", err)
	}
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 3}}); err != nil {
		t.Fatal(err)
	}

	for _, dir := range []int{1, -1} {
		got := oplogEntries(t, c, bson.D{{Key: "op", Value: bson.D{{Key: "$ne", Value: "n"}}}}, options.Find().SetSort(bson.D{{Key: "$natural", Value: dir}}))
		if dir < 0 {
			slices.Reverse(got)
		}
		var ops []string
		for _, e := range got {
			ops = append(ops, get(e, "op").(string)+" "+get(e, "ns").(string))
		}
		if want := []string{"c app.$cmd", "i app.t", "c admin.$cmd", "i app.t"}; !slices.Equal(ops, want) {
			t.Fatalf("$natural %d: entries %v, want %v", dir, ops, want)
		}
		txn := got[2]
		applied, _ := get(txn, "o", "applyOps").(bson.A)
		if len(applied) != 2 || get(txn, "lsid") == nil || get(txn, "txnNumber") == nil {
			t.Fatalf("$natural %d: transaction entry = %v, want applyOps of 2 with lsid and txnNumber", dir, txn)
		}
		for i, a := range applied {
			d := a.(bson.D)
			if k := keys(d); !slices.Equal(k, []string{"op", "ns", "ui", "o", "o2"}) || get(d, "o", "_id") != int32(i+1) {
				t.Errorf("$natural %d: applyOps[%d] = %v, want the insert of _id %d", dir, i, d, i+1)
			}
		}
	}
}

// TestOplogUUIDSurvivesRestart: local.oplog.rs keeps its UUID (a v4 UUID,
// binary subtype 4) across restarts on one data directory, as a replica
// set member's oplog does; another data directory's oplog has another.
func TestOplogUUIDSurvivesRestart(t *testing.T) {
	uuidOf := func(data string) bson.Binary {
		t.Helper()
		s, err := start(testContext(t), Options{Data: data, Logger: testLogger(t)}, testHooks{})
		if err != nil {
			t.Fatalf("start devdb: %v", err)
		}
		defer func() {
			if err := s.Close(); err != nil {
				t.Errorf("close devdb: %v", err)
			}
		}()
		specs, err := connect(t, s).Database("local").ListCollectionSpecifications(testContext(t), bson.D{{Key: "name", Value: "oplog.rs"}})
		if err != nil || len(specs) != 1 || specs[0].UUID == nil {
			t.Fatalf("listCollections local: %v, %v; want oplog.rs with its uuid", specs, err)
		}
		u := *specs[0].UUID
		if u.Subtype != bson.TypeBinaryUUID || len(u.Data) != 16 || u.Data[6]>>4 != 4 || u.Data[8]>>6 != 2 {
			t.Fatalf("oplog.rs uuid %v, want a version 4 UUID of subtype 4", u)
		}
		return u
	}
	dir := t.TempDir()
	first := uuidOf(dir)
	if again := uuidOf(dir); !bytes.Equal(again.Data, first.Data) {
		t.Errorf("after a restart the oplog's uuid is %x, want %x as before", again.Data, first.Data)
	}
	if other := uuidOf(t.TempDir()); bytes.Equal(other.Data, first.Data) {
		t.Errorf("another data directory's oplog has the same uuid %x", other.Data)
	}
}

func TestOplogIsListedAndReadOnly(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	local := c.Database("local")

	specs, err := local.ListCollectionSpecifications(ctx, bson.D{{Key: "name", Value: "oplog.rs"}})
	if err != nil || len(specs) != 1 {
		t.Fatalf("listCollections local: %v, %v; want oplog.rs", specs, err)
	}
	var opts struct {
		Capped bool  `bson:"capped"`
		Size   int64 `bson:"size"`
	}
	if err := bson.Unmarshal(specs[0].Options, &opts); err != nil || !opts.Capped || opts.Size != DefaultOplogMaxBytes {
		t.Errorf("oplog.rs options = %v (%v), want capped with size %d", specs[0].Options, err, DefaultOplogMaxBytes)
	}

	hasCode := func(what string, err error, code mongoerr.Code) {
		t.Helper()
		var se mongo.ServerError
		if !errors.As(err, &se) || !se.HasErrorCode(int(code)) {
			t.Errorf("%s: err = %v, want %s", what, err, code)
		}
	}
	// Writes are refused as MongoDB refuses them on a replica set's oplog.
	_, err = local.Collection("oplog.rs").InsertOne(ctx, bson.D{{Key: "op", Value: "n"}})
	hasCode("insert", err, mongoerr.InvalidNamespace)
	_, err = local.Collection("oplog.rs").UpdateOne(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: 1}}}}, options.UpdateOne().SetUpsert(true))
	hasCode("upsert", err, mongoerr.InvalidNamespace)
	_, err = local.Collection("oplog.rs").DeleteMany(ctx, bson.D{})
	hasCode("delete", err, mongoerr.InvalidNamespace)
	hasCode("drop", local.Collection("oplog.rs").Drop(ctx), mongoerr.IllegalOperation)
	// It exists, so creating it is NamespaceExists; it has no indexes.
	hasCode("create", local.CreateCollection(ctx, "oplog.rs"), mongoerr.NamespaceExists)
	ixs, err := local.Collection("oplog.rs").Indexes().ListSpecifications(ctx)
	if err != nil || len(ixs) != 0 {
		t.Errorf("the oplog's indexes: %v, %v; want none", ixs, err)
	}
	if _, err := local.Collection("other").InsertOne(ctx, bson.D{}); err != nil {
		t.Fatal(err)
	}
	_, err = runCommand(t, c, "admin", bson.D{{Key: "renameCollection", Value: "local.other"}, {Key: "to", Value: "local.oplog.rs"}})
	hasCode("rename onto", err, mongoerr.IllegalOperation)
	if n, err := local.Collection("oplog.rs").CountDocuments(ctx, bson.D{{Key: "op", Value: "n"}, {Key: "o.msg", Value: "initiating set"}}); err != nil || n != 1 {
		t.Errorf("after the refused writes: %d initiating entries, %v", n, err)
	}
}

func TestNaturalOrderOfACollection(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("app").Collection("n")
	for _, id := range []int32{3, 1, 2} {
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(opts ...options.Lister[options.FindOptions]) []int32 {
		cur, err := coll.Find(ctx, bson.D{}, opts...)
		if err != nil {
			t.Fatalf("find: %v", err)
		}
		var docs []struct {
			ID int32 `bson:"_id"`
		}
		if err := cur.All(ctx, &docs); err != nil {
			t.Fatal(err)
		}
		var out []int32
		for _, d := range docs {
			out = append(out, d.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		opts *options.FindOptionsBuilder
		want []int32
	}{
		{"default", options.Find(), []int32{3, 1, 2}},
		{"$natural 1", options.Find().SetSort(bson.D{{Key: "$natural", Value: 1}}), []int32{3, 1, 2}},
		{"$natural -1", options.Find().SetSort(bson.D{{Key: "$natural", Value: -1}}), []int32{2, 1, 3}},
		{"$natural -1, skip 1, limit 1", options.Find().SetSort(bson.D{{Key: "$natural", Value: -1}}).SetSkip(1).SetLimit(1), []int32{1}},
		{"hint $natural -1", options.Find().SetHint(bson.D{{Key: "$natural", Value: -1}}), []int32{2, 1, 3}},
		{"hint $natural -1 under a sort", options.Find().SetHint(bson.D{{Key: "$natural", Value: -1}}).SetSort(bson.D{{Key: "_id", Value: 1}}), []int32{1, 2, 3}},
	} {
		if got := ids(tc.opts); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	_, err := coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "$natural", Value: 1}, {Key: "_id", Value: 1}}))
	wantCode(t, err, mongoerr.BadValue, "")
	_, err = coll.Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "$natural", Value: 2}}))
	wantCode(t, err, mongoerr.BadValue, "")
}

func TestUpdateOplogDelta(t *testing.T) {
	d := func(kv ...any) bson.D {
		var out bson.D
		for i := 0; i < len(kv); i += 2 {
			out = append(out, bson.E{Key: kv[i].(string), Value: kv[i+1]})
		}
		return out
	}
	big := string(make([]byte, 64))
	tests := []struct {
		name      string
		pre, post bson.D
		want      bson.D
	}{
		{"set one field", d("_id", 1, "a", 1, "b", big), d("_id", 1, "a", 2, "b", big),
			d("$v", int32(2), "diff", d("u", d("a", 2)))},
		{"new field appended", d("_id", 1, "b", big), d("_id", 1, "b", big, "c", true),
			d("$v", int32(2), "diff", d("i", d("c", true)))},
		{"unset", d("_id", 1, "a", 1, "b", big), d("_id", 1, "b", big),
			d("$v", int32(2), "diff", d("d", d("a", false)))},
		{"nested field", d("_id", 1, "x", d("y", 1, "z", big)), d("_id", 1, "x", d("y", 2, "z", big)),
			d("$v", int32(2), "diff", d("sx", d("u", d("y", 2))))},
		{"array element and append", d("_id", 1, "arr", bson.A{big, 1}), d("_id", 1, "arr", bson.A{big, 2, 3}),
			d("$v", int32(2), "diff", d("sarr", d("a", true, "u1", 2, "u2", 3)))},
		{"array truncated", d("_id", 1, "arr", bson.A{big, 1, 2}), d("_id", 1, "arr", bson.A{big}),
			d("$v", int32(2), "diff", d("sarr", d("a", true, "l", int32(1))))},
		{"document inside an array", d("_id", 1, "arr", bson.A{d("k", 1, "p", big)}), d("_id", 1, "arr", bson.A{d("k", 2, "p", big)}),
			d("$v", int32(2), "diff", d("sarr", d("a", true, "s0", d("u", d("k", 2)))))},
		{"type change", d("_id", 1, "a", d("k", 1), "b", big), d("_id", 1, "a", "flat", "b", big),
			d("$v", int32(2), "diff", d("u", d("a", "flat")))},
		{"order changed: fields out of line are inserted again", d("_id", 1, "p", big, "a", 1, "b", 2, "c", 3), d("_id", 1, "p", big, "b", 2, "a", 1, "c", 3),
			d("$v", int32(2), "diff", d("i", d("a", 1, "c", 3)))},
		{"deleted fields: the rest of pre, then the others in byte order", d("_id", 1, "p", big, "y", 1, "x", 1, "b", 2, "zz", 1), d("_id", 1, "p", big, "b", 2),
			d("$v", int32(2), "diff", d("d", d("zz", false, "x", false, "y", false)))},
		{"nested delta not smaller than the value: the value whole", d("_id", 1, "p", big, "x", d("a", 1)), d("_id", 1, "p", big, "x", d("a", 2)),
			d("$v", int32(2), "diff", d("u", d("x", d("a", 2))))},
		{"delta plus its padding not smaller than the document: replacement", d("_id", 1, "a", 1, "b", "01234"), d("_id", 1, "a", 2, "b", "01234"),
			d("_id", 1, "a", 2, "b", "01234")},
		{"delta larger than the document: replacement", d("_id", 1, "a", 1), d("_id", 1, "b", 2),
			d("_id", 1, "b", 2)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := updateOplogO(tc.pre, tc.post, nil); !equalDoc(t, got, tc.want) {
				t.Errorf("o = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOplogCursorOvertakenByRetention(t *testing.T) {
	s := startTestServer(t, Options{OplogMaxBytes: 256 << 10}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("app").Collection("t")
	insert := func(n int) {
		t.Helper()
		docs := make([]any, n)
		for i := range docs {
			docs[i] = bson.D{{Key: "pad", Value: string(make([]byte, 50))}}
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	insert(1000) // more than one read of the oplog
	cur, err := c.Database("local").Collection("oplog.rs").Find(ctx, bson.D{}, options.Find().SetBatchSize(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close(ctx)
	if !cur.Next(ctx) {
		t.Fatalf("first entry: %v", cur.Err())
	}
	insert(5000) // the retention bound drops the entries the cursor has not read
	read := 1
	for cur.Next(ctx) {
		read++
	}
	wantCode(t, cur.Err(), mongoerr.CappedPositionLost, "CappedPositionLost")
	if read >= 1000+5000 {
		t.Errorf("read %d entries, want the cursor to stop where the oplog was trimmed", read)
	}
}

func TestTSLowerBound(t *testing.T) {
	ts := bson.Timestamp{T: 100, I: 5}
	tests := []struct {
		name   string
		filter bson.D
		want   bson.Timestamp
		ok     bool
	}{
		{"none", bson.D{{Key: "op", Value: "i"}}, bson.Timestamp{}, false},
		{"$gt", bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: ts}}}}, ts, true},
		{"$gte", bson.D{{Key: "ts", Value: bson.D{{Key: "$gte", Value: ts}}}}, bson.Timestamp{T: 100, I: 4}, true},
		{"$gte at a second's start", bson.D{{Key: "ts", Value: bson.D{{Key: "$gte", Value: bson.Timestamp{T: 100}}}}}, bson.Timestamp{T: 99, I: ^uint32(0)}, true},
		{"equality", bson.D{{Key: "ts", Value: ts}}, bson.Timestamp{T: 100, I: 4}, true},
		{"$gt with $lt", bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: ts}, {Key: "$lt", Value: bson.Timestamp{T: 200}}}}}, ts, true},
		{"the larger of two in $and", bson.D{{Key: "$and", Value: bson.A{
			bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: ts}}}},
			bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: bson.Timestamp{T: 150}}}}},
		}}}, bson.Timestamp{T: 150}, true},
		{"$or is no bound", bson.D{{Key: "$or", Value: bson.A{bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: ts}}}}}}}, bson.Timestamp{}, false},
		{"$not is no bound", bson.D{{Key: "ts", Value: bson.D{{Key: "$not", Value: bson.D{{Key: "$gt", Value: ts}}}}}}, bson.Timestamp{}, false},
		{"a number is no bound", bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: 5}}}}, bson.Timestamp{}, false},
	}
	for _, tc := range tests {
		if got, ok := tsLowerBound(tc.filter); got != tc.want || ok != tc.ok {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOplogReadFromATimestamp(t *testing.T) {
	s := startTestServer(t, Options{OplogMaxBytes: 64 << 10}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("app").Collection("t")
	for i := range 20 { // past the size bound: the oldest entries are gone
		docs := make([]any, 100)
		for j := range docs {
			docs[j] = bson.D{{Key: "i", Value: i*100 + j}}
		}
		if _, err := coll.InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	all := oplogEntries(t, c, bson.D{})
	if get(all[0], "op") == "n" {
		t.Fatalf("the oldest entry is still the initiating no-op: the bound did not trim")
	}
	mid, _ := get(all[len(all)/2], "ts").(bson.Timestamp)
	after := oplogEntries(t, c, bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: mid}}}})
	from := oplogEntries(t, c, bson.D{{Key: "ts", Value: bson.D{{Key: "$gte", Value: mid}}}})
	if len(after) != len(all)-len(all)/2-1 || len(from) != len(after)+1 || !equalDoc(t, from[1], after[0]) {
		t.Fatalf("after %v: %d entries, from it: %d; want %d and %d", mid, len(after), len(from), len(all)-len(all)/2-1, len(all)-len(all)/2)
	}
	// From before the oldest entry kept: every entry, not an error.
	old := oplogEntries(t, c, bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: bson.Timestamp{T: 1}}}}})
	if len(old) != len(all) {
		t.Fatalf("from an old timestamp: %d entries, want all %d", len(old), len(all))
	}
}

func TestOplogLargeTransactionIsAChain(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("app").Collection("big")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: -1}}); err != nil {
		t.Fatal(err)
	}
	sess, err := c.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	const n = 20 // 20 MiB of documents: more than one applyOps entry holds
	pad := string(make([]byte, 1<<20))
	if _, err := sess.WithTransaction(ctx, func(ctx context.Context) (any, error) {
		for i := range n {
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: i}, {Key: "pad", Value: pad}}); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}); err != nil {
		t.Fatalf("transaction: %v", err)
	}
	proj := options.Find().SetProjection(bson.D{{Key: "o.applyOps.o.pad", Value: 0}})
	for _, dir := range []int{1, -1} {
		got := oplogEntries(t, c, bson.D{{Key: "ns", Value: "admin.$cmd"}}, proj.SetSort(bson.D{{Key: "$natural", Value: dir}}))
		if dir < 0 {
			slices.Reverse(got)
		}
		if len(got) < 2 {
			t.Fatalf("$natural %d: %d applyOps entries, want a chain of at least 2", dir, len(got))
		}
		ops := 0
		prev := bson.Timestamp{}
		for i, e := range got {
			applied, _ := get(e, "o", "applyOps").(bson.A)
			for _, a := range applied {
				if id := get(a.(bson.D), "o", "_id"); id != int32(ops) {
					t.Fatalf("$natural %d: operation %d is the insert of %v", dir, ops, id)
				}
				ops++
			}
			ts, _ := get(e, "ts").(bson.Timestamp)
			if p, _ := get(e, "prevOpTime", "ts").(bson.Timestamp); p != prev || !prev.Before(ts) && i > 0 {
				t.Errorf("$natural %d: entry %d prevOpTime %v, want %v before its ts %v", dir, i, p, prev, ts)
			}
			prev = ts
			last := i == len(got)-1
			if partial := get(e, "o", "partialTxn") == true; partial == last {
				t.Errorf("$natural %d: entry %d of %d partialTxn %v", dir, i, len(got), partial)
			}
			if last && get(e, "o", "count") != int64(n) {
				t.Errorf("$natural %d: the last entry's count %v, want %d", dir, get(e, "o", "count"), n)
			}
		}
		if ops != n {
			t.Fatalf("$natural %d: %d operations in the chain, want %d", dir, ops, n)
		}
	}
}

func TestOplogTailableCursor(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("app").Collection("tail")
	oplog := c.Database("local").Collection("oplog.rs")
	insert := func(id int) {
		t.Helper()
		if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			t.Fatal(err)
		}
	}
	idOf := func(cur *mongo.Cursor) any {
		var d bson.D
		if err := cur.Decode(&d); err != nil {
			t.Fatal(err)
		}
		return get(d, "o", "_id")
	}
	insert(1)
	filter := bson.D{{Key: "ns", Value: "app.tail"}, {Key: "op", Value: "i"}}

	// Tailable without awaitData: at the end, getMore answers at once with
	// nothing and the cursor stays open for what comes next.
	cur, err := oplog.Find(ctx, filter, options.Find().SetCursorType(options.Tailable).SetBatchSize(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close(ctx)
	if !cur.TryNext(ctx) || idOf(cur) != int32(1) {
		t.Fatalf("first entry: %v", cur.Err())
	}
	if cur.TryNext(ctx) || cur.Err() != nil || cur.ID() == 0 {
		t.Fatalf("at the end: an entry, or err %v, or cursor id %d closed", cur.Err(), cur.ID())
	}
	insert(2)
	insert(3)
	for _, want := range []int32{2, 3} {
		if !cur.TryNext(ctx) || idOf(cur) != want {
			t.Fatalf("after the inserts: want _id %d (%v)", want, cur.Err())
		}
	}

	// awaitData: a getMore waits for the next write.
	await, err := oplog.Find(ctx, filter, options.Find().SetCursorType(options.TailableAwait).SetMaxAwaitTime(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer await.Close(ctx)
	for range 3 {
		if !await.Next(ctx) {
			t.Fatalf("existing entries: %v", await.Err())
		}
	}
	got := make(chan any, 1)
	go func() {
		if await.Next(ctx) {
			got <- idOf(await)
		} else {
			got <- await.Err()
		}
	}()
	insert(4)
	if v := <-got; v != int32(4) {
		t.Fatalf("awaited entry: %v, want _id 4", v)
	}

	// A tailable cursor whose first batch matches nothing stays open (as
	// MongoDB keeps one on any collection that is not empty) and returns
	// what comes later: the oplog tailer's find of the entries after the
	// last one it saw.
	last := oplogEntries(t, c, bson.D{}, options.Find().SetSort(bson.D{{Key: "$natural", Value: -1}}).SetLimit(1))
	later, err := oplog.Find(ctx, bson.D{{Key: "ts", Value: bson.D{{Key: "$gt", Value: get(last[0], "ts")}}}}, options.Find().SetCursorType(options.Tailable))
	if err != nil {
		t.Fatal(err)
	}
	defer later.Close(ctx)
	if later.TryNext(ctx) || later.ID() == 0 {
		t.Fatalf("a tailable cursor with nothing after its ts: an entry, or cursor id %d closed (%v)", later.ID(), later.Err())
	}
	insert(5)
	if !later.TryNext(ctx) || idOf(later) != int32(5) {
		t.Fatalf("the entry after its ts: %v", later.Err())
	}

	_, err = coll.Find(ctx, bson.D{}, options.Find().SetCursorType(options.Tailable))
	wantCode(t, err, mongoerr.BadValue, "")
	_, err = oplog.Find(ctx, bson.D{}, options.Find().SetCursorType(options.Tailable).SetSort(bson.D{{Key: "$natural", Value: -1}}))
	wantCode(t, err, mongoerr.BadValue, "")
	_, err = runCommand(t, c, "local", bson.D{{Key: "find", Value: "oplog.rs"}, {Key: "awaitData", Value: true}})
	wantCode(t, err, mongoerr.FailedToParse, "")
}
