package server

import (
	"slices"
	"testing"

	"github.com/changehook/changehook/internal/mongoerr"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestListDatabasesSystemDatabases(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)

	fresh, err := c.ListDatabases(ctx, bson.D{})
	if err != nil {
		t.Fatalf("listDatabases: %v", err)
	}
	var names []string
	sizes := map[string]int64{}
	for _, d := range fresh.Databases {
		names = append(names, d.Name)
		sizes[d.Name] = d.SizeOnDisk
		if d.SizeOnDisk%4096 != 0 {
			t.Errorf("%s: sizeOnDisk %d is not a whole number of 4 KiB pages", d.Name, d.SizeOnDisk)
		}
		if d.Empty || d.SizeOnDisk <= 0 {
			t.Errorf("%s: empty %v, sizeOnDisk %d; want a non-empty database with a size", d.Name, d.Empty, d.SizeOnDisk)
		}
	}
	if want := []string{"admin", "config", "local"}; !slices.Equal(names, want) {
		t.Fatalf("fresh server databases = %v, want %v", names, want)
	}
	if fresh.TotalSize != sizes["admin"]+sizes["config"]+sizes["local"] {
		t.Fatalf("totalSize = %d, want the sum %v", fresh.TotalSize, sizes)
	}

	docs := make([]any, 200)
	for i := range docs {
		docs[i] = bson.D{{Key: "i", Value: i}, {Key: "pad", Value: string(make([]byte, 100))}}
	}
	if _, err := c.Database("app").Collection("things").InsertMany(ctx, docs); err != nil {
		t.Fatalf("insert: %v", err)
	}
	if _, err := c.Database("admin").Collection("mine").InsertOne(ctx, bson.D{{Key: "x", Value: 1}}); err != nil {
		t.Fatalf("insert into admin: %v", err)
	}

	tests := []struct {
		name     string
		filter   bson.D
		nameOnly bool
		want     []string
	}{
		{name: "all", filter: bson.D{}, want: []string{"admin", "app", "config", "local"}},
		{name: "name filter", filter: bson.D{{Key: "name", Value: bson.Regex{Pattern: "^a"}}}, want: []string{"admin", "app"}},
		{name: "size filter", filter: bson.D{{Key: "sizeOnDisk", Value: bson.D{{Key: "$gt", Value: 0}}}}, want: []string{"admin", "app", "config", "local"}},
		{name: "nameOnly", filter: bson.D{}, nameOnly: true, want: []string{"admin", "app", "config", "local"}},
		{name: "nameOnly filters on the name", filter: bson.D{{Key: "name", Value: "local"}}, nameOnly: true, want: []string{"local"}},
		// With nameOnly MongoDB matches the filter against {name} alone.
		{name: "nameOnly ignores other fields", filter: bson.D{{Key: "empty", Value: false}}, nameOnly: true, want: nil},
		{name: "expr", filter: bson.D{{Key: "$expr", Value: bson.D{{Key: "$eq", Value: bson.A{"$name", "config"}}}}}, want: []string{"config"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := bson.D{{Key: "listDatabases", Value: 1}, {Key: "filter", Value: tc.filter}, {Key: "nameOnly", Value: tc.nameOnly},
				{Key: "authorizedDatabases", Value: true}}
			reply := mustRun(t, c, "admin", cmd)
			dbs, _ := get(reply, "databases").(bson.A)
			var got []string
			var total int64
			for _, d := range dbs {
				doc := d.(bson.D)
				got = append(got, get(doc, "name").(string))
				if tc.nameOnly && len(doc) != 1 {
					t.Errorf("nameOnly entry %v has more than the name", doc)
				}
				if !tc.nameOnly {
					total += get(doc, "sizeOnDisk").(int64)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("databases = %v, want %v", got, tc.want)
			}
			switch ts := get(reply, "totalSize"); {
			case tc.nameOnly && ts != nil:
				t.Fatalf("nameOnly reply has totalSize %v", ts)
			case !tc.nameOnly && ts != total:
				t.Fatalf("totalSize = %v, want the sum of sizeOnDisk %d", ts, total)
			}
		})
	}

	after, err := c.ListDatabases(ctx, bson.D{}, options.ListDatabases())
	if err != nil {
		t.Fatalf("listDatabases: %v", err)
	}
	for _, d := range after.Databases {
		switch d.Name {
		case "local":
			// The oplog now holds the 200 inserts, and local.oplog.rs is counted.
			if d.SizeOnDisk < sizes["local"]+200*100 {
				t.Errorf("local sizeOnDisk = %d after 200 inserts of 100+ bytes, was %d", d.SizeOnDisk, sizes["local"])
			}
		case "config":
			// Every insert above was a retryable write recorded in config.transactions.
			if d.SizeOnDisk <= sizes["config"] {
				t.Errorf("config sizeOnDisk = %d, was %d before retryable writes", d.SizeOnDisk, sizes["config"])
			}
		case "admin":
			if d.SizeOnDisk <= sizes["admin"] {
				t.Errorf("admin sizeOnDisk = %d, want more than %d with a user collection", d.SizeOnDisk, sizes["admin"])
			}
		}
	}

	if _, err := runCommand(t, c, "app", bson.D{{Key: "listDatabases", Value: 1}}); err == nil {
		t.Fatal("listDatabases on a non-admin database succeeded")
	}
}

func TestDropDatabaseSystemDatabases(t *testing.T) {
	s := startTestServer(t, Options{}, testHooks{})
	c := connect(t, s)
	ctx := testContext(t)
	tests := []struct {
		db   string
		code mongoerr.Code // 0: dropped
	}{
		{db: "admin", code: mongoerr.IllegalOperation},
		{db: "local", code: mongoerr.IllegalOperation},
		{db: "config"},
		{db: "app"},
	}
	for _, tc := range tests {
		t.Run(tc.db, func(t *testing.T) {
			if _, err := c.Database(tc.db).Collection("user").InsertOne(ctx, bson.D{{Key: "x", Value: 1}}); err != nil {
				t.Fatalf("insert: %v", err)
			}
			err := c.Database(tc.db).Drop(ctx)
			if tc.code != 0 {
				wantCode(t, err, tc.code, "IllegalOperation")
				if n, err := c.Database(tc.db).Collection("user").CountDocuments(ctx, bson.D{}); err != nil || n != 1 {
					t.Fatalf("after a refused drop: count = %d, %v; want 1", n, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("drop: %v", err)
			}
			if names, err := c.Database(tc.db).ListCollectionNames(ctx, bson.D{}); err != nil || len(names) != 0 {
				t.Fatalf("after drop: collections %v, %v", names, err)
			}
		})
	}
}
