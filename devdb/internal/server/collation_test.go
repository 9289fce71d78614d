package server

import (
	"errors"
	"reflect"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/internal/mongoerr"
)

var (
	caseInsensitive = bson.D{{Key: "locale", Value: "en_US"}, {Key: "strength", Value: int32(2)}}
	simpleColl      = bson.D{{Key: "locale", Value: "simple"}}
)

// fullCollation is the collation document devdb stores and lists for
// {locale: "en_US", strength: 2}.
var fullCollation = bson.D{
	{Key: "locale", Value: "en_US"}, {Key: "caseLevel", Value: false}, {Key: "caseFirst", Value: "off"},
	{Key: "strength", Value: int32(2)}, {Key: "numericOrdering", Value: false}, {Key: "alternate", Value: "non-ignorable"},
	{Key: "maxVariable", Value: "punct"}, {Key: "normalization", Value: false}, {Key: "backwards", Value: false},
	{Key: "version", Value: "57.1"},
}

// collationIDs returns the _id values of the documents find returns.
func collationIDs(t *testing.T, coll *mongo.Collection, filter any, opts ...options.Lister[options.FindOptions]) []any {
	t.Helper()
	cur, err := coll.Find(testContext(t), filter, opts...)
	if err != nil {
		t.Fatalf("find %v: %v", filter, err)
	}
	var docs []bson.D
	if err := cur.All(testContext(t), &docs); err != nil {
		t.Fatalf("find %v: %v", filter, err)
	}
	ids := []any{}
	for _, d := range docs {
		ids = append(ids, get(d, "_id"))
	}
	return ids
}

func TestCollationReadCommands(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	coll := c.Database("test").Collection("c")
	ctx := testContext(t)
	if _, err := coll.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: int32(1)}, {Key: "x", Value: "ping"}},
		bson.D{{Key: "_id", Value: int32(2)}, {Key: "x", Value: "pINg"}},
		bson.D{{Key: "_id", Value: int32(3)}, {Key: "x", Value: "pong"}},
		bson.D{{Key: "_id", Value: int32(4)}, {Key: "x", Value: "péng"}},
		bson.D{{Key: "_id", Value: "a"}, {Key: "x", Value: int32(5)}},
	}); err != nil {
		t.Fatal(err)
	}
	ci := options.Find().SetCollation(&options.Collation{Locale: "en_US", Strength: 2})
	for _, tc := range []struct {
		name   string
		filter bson.D
		opts   *options.FindOptionsBuilder
		want   []any
	}{
		{"equality", bson.D{{Key: "x", Value: "PING"}}, ci, []any{int32(1), int32(2)}},
		{"equality simple", bson.D{{Key: "x", Value: "PING"}}, options.Find(), []any{}},
		{"explicit simple", bson.D{{Key: "x", Value: "PING"}}, options.Find().SetCollation(&options.Collation{Locale: "simple"}), []any{}},
		{"$in", bson.D{{Key: "x", Value: bson.D{{Key: "$in", Value: bson.A{"PONG", "x"}}}}}, ci, []any{int32(3)}},
		{"$gt", bson.D{{Key: "x", Value: bson.D{{Key: "$gt", Value: "PING"}}}}, ci, []any{int32(3)}},
		// The _id index is keyed bytewise: a case-insensitive query on a
		// string _id must not use it.
		{"_id under another collation", bson.D{{Key: "_id", Value: "A"}}, ci, []any{"a"}},
		{"_id simple", bson.D{{Key: "_id", Value: "A"}}, options.Find(), []any{}},
		{"sort", bson.D{{Key: "x", Value: bson.D{{Key: "$type", Value: "string"}}}},
			options.Find().SetSort(bson.D{{Key: "x", Value: int32(1)}, {Key: "_id", Value: int32(-1)}}).SetCollation(&options.Collation{Locale: "en_US", Strength: 2}),
			[]any{int32(4), int32(2), int32(1), int32(3)}},
		{"sort tertiary", bson.D{{Key: "x", Value: bson.D{{Key: "$type", Value: "string"}}}},
			options.Find().SetSort(bson.D{{Key: "x", Value: int32(1)}}).SetCollation(&options.Collation{Locale: "en_US"}),
			[]any{int32(4), int32(1), int32(2), int32(3)}},
		{"sort upper first", bson.D{{Key: "x", Value: bson.D{{Key: "$type", Value: "string"}}}},
			options.Find().SetSort(bson.D{{Key: "x", Value: int32(1)}}).SetCollation(&options.Collation{Locale: "en_US", CaseFirst: "upper"}),
			[]any{int32(4), int32(2), int32(1), int32(3)}},
		{"sort simple", bson.D{{Key: "x", Value: bson.D{{Key: "$type", Value: "string"}}}},
			options.Find().SetSort(bson.D{{Key: "x", Value: int32(1)}}),
			[]any{int32(2), int32(1), int32(3), int32(4)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := collationIDs(t, coll, tc.filter, tc.opts); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ids = %v, want %v", got, tc.want)
			}
		})
	}
	if n, err := coll.CountDocuments(ctx, bson.D{{Key: "x", Value: "PING"}}, options.Count().SetCollation(&options.Collation{Locale: "en_US", Strength: 2})); err != nil || n != 2 {
		t.Fatalf("countDocuments = %d, %v; want 2", n, err)
	}
	reply := mustRun(t, c, "test", bson.D{{Key: "count", Value: "c"}, {Key: "query", Value: bson.D{{Key: "x", Value: "PING"}}}, {Key: "collation", Value: caseInsensitive}})
	if n := get(reply, "n"); n != int32(2) {
		t.Fatalf("count n = %v, want 2", n)
	}
	var vals []any
	if err := coll.Distinct(ctx, "x", bson.D{{Key: "x", Value: bson.D{{Key: "$type", Value: "string"}}}},
		options.Distinct().SetCollation(&options.Collation{Locale: "en_US", Strength: 2})).Decode(&vals); err != nil {
		t.Fatal(err)
	}
	if want := []any{"péng", "ping", "pong"}; !reflect.DeepEqual(vals, want) {
		t.Fatalf("distinct = %v, want %v (the first of equal values, in collation order)", vals, want)
	}
	cur, err := coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: bson.D{{Key: "x", Value: bson.D{{Key: "$in", Value: bson.A{"PING", "PONG"}}}}}}},
		{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$x"}, {Key: "n", Value: bson.D{{Key: "$sum", Value: int32(1)}}}}}},
		{{Key: "$sort", Value: bson.D{{Key: "_id", Value: int32(1)}}}},
		{{Key: "$project", Value: bson.D{{Key: "n", Value: int32(1)}, {Key: "isPing", Value: bson.D{{Key: "$eq", Value: bson.A{"$_id", "PING"}}}}}}},
	}, options.Aggregate().SetCollation(&options.Collation{Locale: "en_US", Strength: 2}))
	if err != nil {
		t.Fatal(err)
	}
	var groups []bson.D
	if err := cur.All(ctx, &groups); err != nil {
		t.Fatal(err)
	}
	wantGroups := []bson.D{
		{{Key: "_id", Value: "ping"}, {Key: "n", Value: int32(2)}, {Key: "isPing", Value: true}},
		{{Key: "_id", Value: "pong"}, {Key: "n", Value: int32(1)}, {Key: "isPing", Value: false}},
	}
	if !reflect.DeepEqual(groups, wantGroups) {
		t.Fatalf("aggregate = %v\nwant %v", groups, wantGroups)
	}
}

func TestCollationWriteCommands(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	coll := c.Database("test").Collection("c")
	ctx := testContext(t)
	reset := func(t *testing.T) {
		t.Helper()
		if err := coll.Drop(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := coll.InsertMany(ctx, []any{
			bson.D{{Key: "_id", Value: int32(1)}, {Key: "x", Value: "ping"}, {Key: "tags", Value: bson.A{"A", "b"}}},
			bson.D{{Key: "_id", Value: int32(2)}, {Key: "x", Value: "pINg"}, {Key: "tags", Value: bson.A{"a"}}},
			bson.D{{Key: "_id", Value: int32(3)}, {Key: "x", Value: "pong"}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	ci := &options.Collation{Locale: "en_US", Strength: 2}
	pingFilter := bson.D{{Key: "x", Value: "PING"}}

	t.Run("updateMany", func(t *testing.T) {
		reset(t)
		res, err := coll.UpdateMany(ctx, pingFilter, bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: true}}}}, options.UpdateMany().SetCollation(ci))
		if err != nil || res.MatchedCount != 2 || res.ModifiedCount != 2 {
			t.Fatalf("updateMany = %+v, %v; want 2 matched and modified", res, err)
		}
	})
	t.Run("update operators", func(t *testing.T) {
		reset(t)
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{
			{Key: "$pull", Value: bson.D{{Key: "tags", Value: "a"}}},
			{Key: "$addToSet", Value: bson.D{{Key: "more", Value: bson.D{{Key: "$each", Value: bson.A{"X", "x"}}}}}},
			{Key: "$max", Value: bson.D{{Key: "x", Value: "PING"}}},
		}, options.UpdateOne().SetCollation(ci))
		if err != nil {
			t.Fatal(err)
		}
		var got bson.D
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}).Decode(&got); err != nil {
			t.Fatal(err)
		}
		want := bson.D{{Key: "_id", Value: int32(1)}, {Key: "x", Value: "ping"}, {Key: "tags", Value: bson.A{"b"}}, {Key: "more", Value: bson.A{"X"}}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after update %v\nwant %v ($pull, $addToSet and $max under the collation)", got, want)
		}
	})
	t.Run("arrayFilters", func(t *testing.T) {
		reset(t)
		_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "tags.$[t]", Value: "z"}}}},
			options.UpdateOne().SetCollation(ci).SetArrayFilters([]any{bson.D{{Key: "t", Value: "a"}}}))
		if err != nil {
			t.Fatal(err)
		}
		var got bson.D
		if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if tags := get(got, "tags"); !reflect.DeepEqual(tags, bson.A{"z", "b"}) {
			t.Fatalf("tags = %v, want [z b]", tags)
		}
	})
	t.Run("deleteMany", func(t *testing.T) {
		reset(t)
		res, err := coll.DeleteMany(ctx, pingFilter, options.DeleteMany().SetCollation(ci))
		if err != nil || res.DeletedCount != 2 {
			t.Fatalf("deleteMany = %+v, %v; want 2", res, err)
		}
	})
	t.Run("findOneAndUpdate", func(t *testing.T) {
		reset(t)
		var got bson.D
		err := coll.FindOneAndUpdate(ctx, pingFilter, bson.D{{Key: "$set", Value: bson.D{{Key: "x", Value: "done"}}}},
			options.FindOneAndUpdate().SetCollation(ci).SetSort(bson.D{{Key: "x", Value: int32(-1)}, {Key: "_id", Value: int32(-1)}})).Decode(&got)
		if err != nil || get(got, "_id") != int32(2) {
			t.Fatalf("findOneAndUpdate = %v, %v; want _id 2 (equal x under the collation, then _id descending)", got, err)
		}
	})
	t.Run("bulkWrite", func(t *testing.T) {
		reset(t)
		res, err := coll.BulkWrite(ctx, []mongo.WriteModel{
			mongo.NewUpdateManyModel().SetFilter(pingFilter).SetUpdate(bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: 1}}}}).SetCollation(ci),
			mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "x", Value: "PONG"}}).SetCollation(ci),
			mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "x", Value: "PING"}}),
		})
		if err != nil || res.ModifiedCount != 2 || res.DeletedCount != 1 {
			t.Fatalf("bulkWrite = %+v, %v; want 2 modified, 1 deleted", res, err)
		}
	})
}

func TestCollectionDefaultCollation(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	db := c.Database("test")
	ctx := testContext(t)
	mustRun(t, c, "test", bson.D{{Key: "create", Value: "ci"}, {Key: "collation", Value: caseInsensitive}})
	mustRun(t, c, "test", bson.D{{Key: "create", Value: "plain"}, {Key: "collation", Value: simpleColl}})

	specs, err := db.ListCollectionSpecifications(ctx, bson.D{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range specs {
		var opts bson.D
		if err := bson.Unmarshal(sp.Options, &opts); err != nil {
			t.Fatal(err)
		}
		switch sp.Name {
		case "ci":
			if got := get(opts, "collation"); !reflect.DeepEqual(got, fullCollation) {
				t.Fatalf("listCollections options.collation = %v\nwant %v", got, fullCollation)
			}
		case "plain":
			if len(opts) != 0 {
				t.Fatalf("{locale: simple} stored as %v, want no options", opts)
			}
		}
	}
	reply := mustRun(t, c, "test", bson.D{{Key: "listCollections", Value: 1}, {Key: "filter", Value: bson.D{{Key: "name", Value: "ci"}}}})
	fb := firstBatch(reply)
	if len(fb) != 1 || !reflect.DeepEqual(get(fb[0], "idIndex", "collation"), fullCollation) {
		t.Fatalf("listCollections = %v, want idIndex with the collection's collation", fb)
	}

	ci := db.Collection("ci")
	if _, err := ci.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "a"}, {Key: "x", Value: "ping"}},
		bson.D{{Key: "_id", Value: "b"}, {Key: "x", Value: "PING"}},
	}); err != nil {
		t.Fatal(err)
	}
	// The _id index compares under the collection's collation.
	_, err = ci.InsertOne(ctx, bson.D{{Key: "_id", Value: "A"}})
	var we mongo.WriteException
	if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Code != int(mongoerr.DuplicateKey) {
		t.Fatalf("insert _id A next to a = %v, want DuplicateKey", err)
	}
	for _, tc := range []struct {
		name   string
		filter bson.D
		opts   *options.FindOptionsBuilder
		want   []any
	}{
		{"inherited", bson.D{{Key: "x", Value: "Ping"}}, options.Find(), []any{"a", "b"}},
		{"overridden by simple", bson.D{{Key: "x", Value: "PING"}}, options.Find().SetCollation(&options.Collation{Locale: "simple"}), []any{"b"}},
		{"_id inherited", bson.D{{Key: "_id", Value: "B"}}, options.Find(), []any{"b"}},
		{"_id simple", bson.D{{Key: "_id", Value: "B"}}, options.Find().SetCollation(&options.Collation{Locale: "simple"}), []any{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := collationIDs(t, ci, tc.filter, tc.opts); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ids = %v, want %v", got, tc.want)
			}
		})
	}
	res, err := ci.UpdateOne(ctx, bson.D{{Key: "_id", Value: "A"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: 1}}}})
	if err != nil || res.MatchedCount != 1 {
		t.Fatalf("update by _id A = %+v, %v; want the document a (inherited collation)", res, err)
	}
	if n, err := ci.CountDocuments(ctx, bson.D{{Key: "x", Value: "PING"}}); err != nil || n != 2 {
		t.Fatalf("countDocuments = %d, %v; want 2", n, err)
	}

	// Indexes without a collation inherit the collection's; an explicit
	// simple one has none.
	if _, err := ci.Indexes().CreateMany(ctx, []mongo.IndexModel{
		{Keys: bson.D{{Key: "x", Value: int32(1)}}},
		{Keys: bson.D{{Key: "x", Value: int32(-1)}}, Options: options.Index().SetCollation(&options.Collation{Locale: "simple"})},
	}); err != nil {
		t.Fatal(err)
	}
	cur, err := ci.Indexes().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var indexes []bson.D
	if err := cur.All(ctx, &indexes); err != nil {
		t.Fatal(err)
	}
	got := map[string]any{}
	for _, ix := range indexes {
		got[get(ix, "name").(string)] = get(ix, "collation")
	}
	want := map[string]any{"_id_": fullCollation, "x_1": fullCollation, "x_-1": nil}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("listIndexes collations = %v\nwant %v", got, want)
	}
}

func TestIndexCollation(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	coll := c.Database("test").Collection("users")
	ctx := testContext(t)
	if _, err := coll.Indexes().CreateMany(ctx, []mongo.IndexModel{
		{Keys: bson.D{{Key: "name", Value: int32(1)}}, Options: options.Index().SetUnique(true).SetName("name_ci").
			SetCollation(&options.Collation{Locale: "en", Strength: 2})},
		{Keys: bson.D{{Key: "name", Value: int32(1)}}, Options: options.Index().SetName("name_plain")},
		{Keys: bson.D{{Key: "login", Value: int32(1)}}, Options: options.Index().SetUnique(true)},
	}); err != nil {
		t.Fatalf("two indexes on one key with different collations: %v", err)
	}
	if _, err := coll.InsertMany(ctx, []any{
		bson.D{{Key: "name", Value: "Bob"}, {Key: "login", Value: "bob"}},
		bson.D{{Key: "name", Value: "Alice"}, {Key: "login", Value: "BOB"}},
	}); err != nil {
		t.Fatalf("logins differing in case under a simple unique index: %v", err)
	}
	_, err := coll.InsertOne(ctx, bson.D{{Key: "name", Value: "BOB"}, {Key: "login", Value: "x"}})
	var we mongo.WriteException
	if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Code != int(mongoerr.DuplicateKey) {
		t.Fatalf("insert name BOB = %v, want DuplicateKey from the case-insensitive unique index", err)
	}
	// The same key with the same collation under another name conflicts.
	_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "name", Value: int32(1)}},
		Options: options.Index().SetUnique(true).SetName("again").SetCollation(&options.Collation{Locale: "en", Strength: 2})})
	wantCode(t, err, mongoerr.IndexOptionsConflict, "IndexOptionsConflict")
	// Building a unique collated index over existing case variants fails.
	_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "login", Value: int32(-1)}},
		Options: options.Index().SetUnique(true).SetCollation(&options.Collation{Locale: "en", Strength: 2})})
	wantCode(t, err, mongoerr.DuplicateKey, "DuplicateKey")
}

func TestCollationErrorsOnCommands(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	mustRun(t, c, "test", bson.D{{Key: "create", Value: "v"}, {Key: "viewOn", Value: "c"}, {Key: "pipeline", Value: bson.A{}}})
	bad := bson.D{{Key: "locale", Value: "xx"}}
	for _, tc := range []struct {
		name string
		cmd  bson.D
		code mongoerr.Code
	}{
		{"find", bson.D{{Key: "find", Value: "c"}, {Key: "collation", Value: bad}}, mongoerr.BadValue},
		{"aggregate", bson.D{{Key: "aggregate", Value: "c"}, {Key: "pipeline", Value: bson.A{}}, {Key: "cursor", Value: bson.D{}}, {Key: "collation", Value: bad}}, mongoerr.BadValue},
		{"count", bson.D{{Key: "count", Value: "c"}, {Key: "collation", Value: bson.D{{Key: "locale", Value: "en"}, {Key: "strength", Value: int32(9)}}}}, mongoerr.FailedToParse},
		{"distinct", bson.D{{Key: "distinct", Value: "c"}, {Key: "key", Value: "x"}, {Key: "collation", Value: bson.D{}}}, mongoerr.NoSuchKey},
		{"find wrong type", bson.D{{Key: "find", Value: "c"}, {Key: "collation", Value: "en"}}, mongoerr.TypeMismatch},
		{"create", bson.D{{Key: "create", Value: "d"}, {Key: "collation", Value: bad}}, mongoerr.BadValue},
		{"createIndexes", bson.D{{Key: "createIndexes", Value: "c"}, {Key: "indexes", Value: bson.A{bson.D{{Key: "key", Value: bson.D{{Key: "a", Value: int32(1)}}}, {Key: "name", Value: "a"}, {Key: "collation", Value: bad}}}}}, mongoerr.BadValue},
		{"view override", bson.D{{Key: "find", Value: "v"}, {Key: "collation", Value: caseInsensitive}}, mongoerr.OptionNotSupportedOnView},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCommand(t, c, "test", tc.cmd)
			wantCode(t, err, tc.code, "")
		})
	}
	// A bad statement collation is that statement's write error.
	_, err := runCommand(t, c, "test", bson.D{{Key: "delete", Value: "c"}, {Key: "deletes", Value: bson.A{
		bson.D{{Key: "q", Value: bson.D{}}, {Key: "limit", Value: int32(1)}, {Key: "collation", Value: bad}}}}})
	var we mongo.WriteException
	if !errors.As(err, &we) || len(we.WriteErrors) != 1 || we.WriteErrors[0].Code != int(mongoerr.BadValue) {
		t.Fatalf("delete with a bad collation = %v, want a BadValue write error", err)
	}
	// A simple collation on a view is its own default and accepted.
	mustRun(t, c, "test", bson.D{{Key: "find", Value: "v"}, {Key: "collation", Value: simpleColl}})
}

func TestCollectionDefaultCollationAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s := startTestServer(t, Options{Data: dir}, testHooks{})
	c := connect(t, s)
	mustRun(t, c, "test", bson.D{{Key: "create", Value: "ci"}, {Key: "collation", Value: caseInsensitive}})
	if _, err := c.Database("test").Collection("ci").InsertOne(testContext(t), bson.D{{Key: "_id", Value: int32(1)}, {Key: "x", Value: "ping"}}); err != nil {
		t.Fatal(err)
	}
	_ = c.Disconnect(testContext(t))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = startTestServer(t, Options{Data: dir}, testHooks{})
	c = connect(t, s)
	if got := collationIDs(t, c.Database("test").Collection("ci"), bson.D{{Key: "x", Value: "PING"}}); !reflect.DeepEqual(got, []any{int32(1)}) {
		t.Fatalf("after restart: ids = %v, want [1] (the stored default collation)", got)
	}
}

func TestViewCollation(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	db := c.Database("test")
	ctx := testContext(t)
	mustRun(t, c, "test", bson.D{{Key: "create", Value: "c"}, {Key: "collation", Value: caseInsensitive}})
	if _, err := db.Collection("c").InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: int32(1)}, {Key: "x", Value: "ping"}},
		bson.D{{Key: "_id", Value: int32(2)}, {Key: "x", Value: "PING"}},
	}); err != nil {
		t.Fatal(err)
	}
	view := func(name, on string, collation bson.D) bson.D {
		cmd := bson.D{{Key: "create", Value: name}, {Key: "viewOn", Value: on}, {Key: "pipeline", Value: bson.A{}}}
		if collation != nil {
			cmd = append(cmd, bson.E{Key: "collation", Value: collation})
		}
		return cmd
	}
	mustRun(t, c, "test", view("vci", "c", caseInsensitive))
	mustRun(t, c, "test", view("vsimple", "c", nil))
	mustRun(t, c, "test", view("vci2", "vci", caseInsensitive))
	_, err := runCommand(t, c, "test", view("vbad", "vci", nil))
	wantCode(t, err, mongoerr.OptionNotSupportedOnView, "OptionNotSupportedOnView")

	ping := bson.D{{Key: "x", Value: "Ping"}}
	for _, tc := range []struct {
		view string
		opts *options.FindOptionsBuilder
		want []any
	}{
		{"vci", options.Find(), []any{int32(1), int32(2)}},
		{"vci", options.Find().SetCollation(&options.Collation{Locale: "en_US", Strength: 2}), []any{int32(1), int32(2)}},
		{"vci2", options.Find(), []any{int32(1), int32(2)}},
		// A view does not inherit its collection's default collation.
		{"vsimple", options.Find(), []any{}},
	} {
		if got := collationIDs(t, db.Collection(tc.view), ping, tc.opts); !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("find on %s = %v, want %v", tc.view, got, tc.want)
		}
	}
	_, err = runCommand(t, c, "test", bson.D{{Key: "find", Value: "vci"}, {Key: "collation", Value: simpleColl}})
	wantCode(t, err, mongoerr.OptionNotSupportedOnView, "OptionNotSupportedOnView")
	reply := mustRun(t, c, "test", bson.D{{Key: "listCollections", Value: 1}, {Key: "filter", Value: bson.D{{Key: "name", Value: "vci"}}}})
	if fb := firstBatch(reply); len(fb) != 1 || !reflect.DeepEqual(get(fb[0], "options", "collation"), fullCollation) {
		t.Fatalf("listCollections = %v, want the view's collation in its options", fb)
	}
}

func TestCollationInTransaction(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	mustRun(t, c, "test", bson.D{{Key: "create", Value: "ci"}, {Key: "collation", Value: caseInsensitive}})
	coll := c.Database("test").Collection("ci")
	sess, ctx := txnSession(t, c)
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "x", Value: "ping"}}); err != nil {
		t.Fatal(err)
	}
	// Inside the transaction: its own write, under the collection's default.
	if got := findIDs(t, ctx, coll, bson.D{{Key: "x", Value: "PING"}}); !reflect.DeepEqual(got, []any{"a"}) {
		t.Fatalf("find in the transaction = %v, want [a]", got)
	}
	res, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "A"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "y", Value: 1}}}})
	if err != nil || res.MatchedCount != 1 {
		t.Fatalf("update by _id A in the transaction = %+v, %v; want the document a", res, err)
	}
	if err := sess.CommitTransaction(ctx); err != nil {
		t.Fatal(err)
	}
	if got := collationIDs(t, coll, bson.D{{Key: "y", Value: 1}, {Key: "x", Value: "Ping"}}); !reflect.DeepEqual(got, []any{"a"}) {
		t.Fatalf("after commit = %v, want [a]", got)
	}
}
