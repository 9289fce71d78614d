package store_test

import (
	"context"
	"testing"

	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestEnsureIndexes checks that EnsureIndexes creates the dead letters'
// index on a fresh database and is a no-op when run again.
func TestEnsureIndexes(t *testing.T) {
	s, client := newStore(t)
	ctx := context.Background()
	for i := range 2 {
		if err := s.EnsureIndexes(ctx); err != nil {
			t.Fatalf("EnsureIndexes (call %d): %v", i+1, err)
		}
	}
	cur, err := client.Database("changehook_state").Collection(store.DeadLettersCollection).Indexes().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var specs []struct {
		Name string `bson:"name"`
		Key  bson.D `bson:"key"`
	}
	if err := cur.All(ctx, &specs); err != nil {
		t.Fatal(err)
	}
	want := bson.D{{Key: "trigger", Value: int32(1)}, {Key: "deadLetteredAt", Value: int32(1)}, {Key: "_id", Value: int32(1)}}
	found := 0
	for _, sp := range specs {
		if sp.Name == store.DeadLettersIndex {
			found++
			if len(sp.Key) != len(want) {
				t.Fatalf("index %s key = %v, want %v", sp.Name, sp.Key, want)
			}
			for i := range want {
				if sp.Key[i].Key != want[i].Key || sp.Key[i].Value != want[i].Value {
					t.Fatalf("index %s key = %v, want %v", sp.Name, sp.Key, want)
				}
			}
		}
	}
	if found != 1 || len(specs) != 2 {
		t.Fatalf("indexes of deadletters = %+v; want _id_ and %s once", specs, store.DeadLettersIndex)
	}
}
