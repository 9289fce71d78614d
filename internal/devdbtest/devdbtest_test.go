package devdbtest_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

func TestStart(t *testing.T) {
	tests := []struct {
		name string
		opts devdb.Options
	}{
		{name: "zero options"},
		{name: "data directory", opts: devdb.Options{Data: filepath.Join(t.TempDir(), "db")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, client := devdbtest.StartWith(t, tc.opts)
			ctx := context.Background()
			coll := client.Database("t").Collection("c")
			if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}}); err != nil {
				t.Fatal(err)
			}
			// A second client on the same server sees the write.
			other := devdbtest.Connect(t, srv.URI(), options.Client().SetTimeout(10*time.Second))
			n, err := other.Database("t").Collection("c").CountDocuments(ctx, bson.D{})
			if err != nil || n != 1 {
				t.Fatalf("count from a second client = %d, %v; want 1", n, err)
			}
		})
	}
}
