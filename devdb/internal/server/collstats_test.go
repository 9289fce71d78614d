package server

import (
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestCollStats(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	coll := c.Database("app").Collection("things")
	var size int64
	for i := range 10 {
		doc := bson.D{{Key: "_id", Value: int32(i)}, {Key: "pad", Value: string(make([]byte, 100*i))}}
		raw, err := bson.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		size += int64(len(raw))
		if _, err := coll.InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	stats := func(db, name string, spec bson.D) (bson.D, error) {
		t.Helper()
		cur, err := c.Database(db).Collection(name).Aggregate(ctx, bson.A{bson.D{{Key: "$collStats", Value: spec}}})
		if err != nil {
			return nil, err
		}
		var out []bson.D
		if err := cur.All(ctx, &out); err != nil {
			return nil, err
		}
		if len(out) != 1 {
			t.Fatalf("$collStats returned %d documents, want 1: %v", len(out), out)
		}
		return out[0], nil
	}

	got, err := stats("app", "things", bson.D{{Key: "storageStats", Value: bson.D{}}, {Key: "count", Value: bson.D{}}})
	if err != nil {
		t.Fatalf("$collStats: %v", err)
	}
	if get(got, "ns") != "app.things" || get(got, "host") == nil || get(got, "localTime") == nil {
		t.Errorf("$collStats = %v, want ns, host and localTime", got)
	}
	for _, f := range []struct {
		path []string
		want any
	}{
		{[]string{"count"}, int32(10)},
		{[]string{"storageStats", "count"}, int32(10)},
		{[]string{"storageStats", "size"}, int32(size)},
		{[]string{"storageStats", "avgObjSize"}, int32(size / 10)},
		{[]string{"storageStats", "capped"}, false},
		{[]string{"storageStats", "nindexes"}, int32(1)},
		{[]string{"storageStats", "scaleFactor"}, int32(1)},
	} {
		if v := get(got, f.path...); v != f.want {
			t.Errorf("%v = %v (%T), want %v", f.path, v, v, f.want)
		}
	}
	total, _ := get(got, "storageStats", "totalSize").(int32)
	storage, _ := get(got, "storageStats", "storageSize").(int32)
	index, _ := get(got, "storageStats", "indexSizes", "_id_").(int32)
	if int64(storage) < size || index <= 0 || total != storage+index {
		t.Errorf("storageSize %d, _id_ %d, totalSize %d: want storage ≥ %d and total the sum", storage, index, total, size)
	}

	scaled, err := stats("app", "things", bson.D{{Key: "storageStats", Value: bson.D{{Key: "scale", Value: 1024}}}})
	if err != nil {
		t.Fatal(err)
	}
	if v := get(scaled, "storageStats", "size"); v != int32(size/1024) {
		t.Errorf("scaled size = %v, want %d", v, size/1024)
	}
	if v := get(scaled, "storageStats", "avgObjSize"); v != int32(size/10) {
		t.Errorf("scaled avgObjSize = %v, want the unscaled %d", v, size/10)
	}

	oplog, err := stats("local", "oplog.rs", bson.D{{Key: "storageStats", Value: bson.D{}}})
	if err != nil {
		t.Fatal(err)
	}
	if get(oplog, "storageStats", "capped") != true || get(oplog, "storageStats", "maxSize") != int32(DefaultOplogMaxBytes) {
		t.Errorf("oplog storageStats = %v, want capped with maxSize %d", get(oplog, "storageStats"), DefaultOplogMaxBytes)
	}
	n, err := c.Database("local").Collection("oplog.rs").CountDocuments(ctx, bson.D{})
	if err != nil || get(oplog, "storageStats", "count") != int32(n) {
		t.Errorf("oplog count %v, want %d (%v)", get(oplog, "storageStats", "count"), n, err)
	}

	_, err = stats("app", "missing", bson.D{{Key: "storageStats", Value: bson.D{}}})
	wantCode(t, err, mongoerr.NamespaceNotFound, "NamespaceNotFound")
	_, err = stats("app", "things", bson.D{{Key: "storageStats", Value: bson.D{{Key: "scale", Value: 0}}}})
	wantCode(t, err, mongoerr.BadValue, "")
	_, err = stats("app", "things", bson.D{{Key: "bogus", Value: bson.D{}}})
	wantCode(t, err, mongoerr.FailedToParse, "")
	_, err = runCommand(t, c, "app", bson.D{{Key: "aggregate", Value: 1}, {Key: "pipeline", Value: bson.A{bson.D{{Key: "$collStats", Value: bson.D{}}}}}, {Key: "cursor", Value: bson.D{}}})
	wantCode(t, err, mongoerr.InvalidNamespace, "")
}

func TestCollStatsAndDBStatsCommands(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	app := c.Database("app")
	var size int64
	for i := range 4 {
		doc := bson.D{{Key: "_id", Value: int32(i)}, {Key: "s", Value: "some text"}}
		raw, _ := bson.Marshal(doc)
		size += int64(len(raw))
		if _, err := app.Collection("a").InsertOne(ctx, doc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := app.Collection("b").InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := app.CreateView(ctx, "v", "a", bson.A{}); err != nil {
		t.Fatal(err)
	}

	cs := mustRun(t, c, "app", bson.D{{Key: "collStats", Value: "a"}})
	if get(cs, "ns") != "app.a" || get(cs, "count") != int32(4) || get(cs, "size") != int32(size) || get(cs, "nindexes") != int32(1) {
		t.Errorf("collStats = %v, want ns app.a, count 4, size %d, 1 index", cs, size)
	}
	missing := mustRun(t, c, "app", bson.D{{Key: "collStats", Value: "missing"}})
	if get(missing, "count") != int32(0) || get(missing, "size") != int32(0) {
		t.Errorf("collStats of a missing collection = %v, want zero sizes", missing)
	}
	oplog := mustRun(t, c, "local", bson.D{{Key: "collStats", Value: "oplog.rs"}, {Key: "scale", Value: 1024}})
	if get(oplog, "capped") != true || get(oplog, "maxSize") != int32(DefaultOplogMaxBytes/1024) || get(oplog, "scaleFactor") != int32(1024) {
		t.Errorf("collStats of the oplog = %v, want capped, maxSize in KiB", oplog)
	}
	_, err := runCommand(t, c, "app", bson.D{{Key: "collStats", Value: "v"}})
	wantCode(t, err, mongoerr.CommandNotSupportedOnView, "")
	_, err = runCommand(t, c, "app", bson.D{{Key: "collStats", Value: "a"}, {Key: "scale", Value: -1}})
	wantCode(t, err, mongoerr.BadValue, "")

	ds := mustRun(t, c, "app", bson.D{{Key: "dbStats", Value: 1}})
	for _, f := range []struct {
		key  string
		want any
	}{{"db", "app"}, {"collections", int32(2)}, {"views", int32(1)}, {"objects", int32(5)}, {"indexes", int32(2)}} {
		if v := get(ds, f.key); v != f.want {
			t.Errorf("dbStats %s = %v (%T), want %v", f.key, v, v, f.want)
		}
	}
	if d, _ := get(ds, "dataSize").(float64); d <= float64(size) {
		t.Errorf("dbStats dataSize = %v, want more than collection a's %d", get(ds, "dataSize"), size)
	}
	scaled := mustRun(t, c, "app", bson.D{{Key: "dbStats", Value: 1}, {Key: "scale", Value: 1024}})
	if d, _ := get(ds, "dataSize").(float64); get(scaled, "dataSize") != d/1024 {
		t.Errorf("dbStats dataSize at scale 1024 = %v, want %v (divided in floating point)", get(scaled, "dataSize"), d/1024)
	}
	local := mustRun(t, c, "local", bson.D{{Key: "dbStats", Value: 1}})
	if get(local, "collections") != int32(1) {
		t.Errorf("local's dbStats = %v, want the oplog as its collection", local)
	}
	empty := mustRun(t, c, "nothing", bson.D{{Key: "dbStats", Value: 1}})
	if get(empty, "collections") != int32(0) || get(empty, "objects") != int32(0) {
		t.Errorf("dbStats of a database that does not exist = %v, want zeros", empty)
	}
}
