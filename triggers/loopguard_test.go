package triggers_test

import (
	"context"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/triggers"
)

// TestLoopGuardDeploymentWide opens a deployment-wide trigger's compiled
// stream on devdb, writes to the state database and then elsewhere: the
// first event the stream returns is the write elsewhere, so changehook's
// own checkpoint writes can never feed the trigger.
func TestLoopGuardDeploymentWide(t *testing.T) {
	cfg, err := triggers.Parse("loop.yaml", []byte(`
triggers:
  - name: everything
    webhook: { url: "http://127.0.0.1:1/h" }
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Triggers[0]
	_, client := devdbtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := tr.Watch(ctx, client, tr.ChangeStreamOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(context.Background())
	state := client.Database(triggers.DefaultStateDatabase)
	for i := range 5 {
		if _, err := state.Collection("checkpoints").InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Database("shop").Collection("orders").InsertOne(ctx, bson.D{{Key: "_id", Value: "o1"}}); err != nil {
		t.Fatal(err)
	}
	if !cs.Next(ctx) {
		t.Fatalf("no event: %v", cs.Err())
	}
	if db := cs.Current.Lookup("ns", "db").StringValue(); db != "shop" {
		t.Fatalf("first event is from database %q, want shop (the state database must be filtered out): %s", db, cs.Current)
	}
}
