package runner_test

import (
	"context"
	"strings"
	"testing"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestInvalidateReason: the status names what invalidated the stream when
// the trigger saw the event before the invalidate, and says it does not
// know which of a drop or a rename it was when the trigger's operations
// filtered that event out (the common [insert, update, replace]).
func TestInvalidateReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		operations string
		rename     bool   // rename the collection (else drop it)
		want       string // the last error's beginning
	}{
		{"rename seen", "[insert, rename]", true, "collection renamed: "},
		{"rename filtered out", "[insert, update, replace]", true, "collection dropped or renamed: "},
		{"drop seen", "[insert, drop]", false, "collection dropped: "},
		{"drop filtered out", "[insert]", false, "collection dropped or renamed: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			cfg := parseTrigger(t, `
triggers:
  - name: items
    database: shop
    collection: items
    operations: `+tt.operations+`
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
			coll := client.Database("shop").Collection("items")
			insert(t, coll, item(1, 1))
			w, _ := runWatcher(t, cfg.Triggers[0], client, store.New(client, stateDB))
			insert(t, coll, item(2, 1))
			recv.next(t)
			ctx := context.Background()
			var err error
			if tt.rename {
				err = client.Database("admin").RunCommand(ctx, bson.D{
					{Key: "renameCollection", Value: "shop.items"}, {Key: "to", Value: "shop.items_old"}}).Err()
			} else {
				err = coll.Drop(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "trigger failed", func() bool { return w.Status().State == runner.StateFailed })
			if st := w.Status(); !strings.HasPrefix(st.LastError, tt.want) {
				t.Errorf("last error %q, want it to start with %q", st.LastError, tt.want)
			}
		})
	}
}
