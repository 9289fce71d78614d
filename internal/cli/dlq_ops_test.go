package cli

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/connendpoint"
	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestAPIReplayLeavesNoConnections: every admin API replay call
// (POST /api/deadletters/replay, the console's buttons) builds its own
// Senders; once the call answered, the connection it delivered over is
// closed, so calls in a row leave none open behind them (they stayed open
// until the 90 s idle timeout, one per call).
func TestAPIReplayLeavesNoConnections(t *testing.T) {
	_, client := devdbtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := store.New(client, "chstate")
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	srv := connendpoint.Start(t)
	cfg, err := triggers.LoadWith(writeConfig(t, fmt.Sprintf(`
mongodb: { uri: "mongodb://127.0.0.1:1/" }
state: { database: chstate }
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook: { url: "%s/hook" }
`, srv.URL)), nil, triggers.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ops := &deadLetterOps{st: st, config: func() *triggers.Config { return cfg }, env: Env{Version: "test"}}
	const calls = 10
	for i := range calls {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", i)}})
		ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"}})
		if err := st.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: "orders", Event: ev, Token: tok, LastError: "HTTP 500"}); err != nil {
			t.Fatal(err)
		}
		sum, err := ops.Replay(ctx, deadletter.Selection{IDs: []string{dispatcher.WebhookID("orders", tok)}})
		if err != nil || sum.Replayed != 1 {
			t.Fatalf("replay call %d: %+v, %v", i, sum, err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections to the endpoint still open after %d replay calls, want 0", srv.Open(), calls)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if srv.Received() != calls {
		t.Fatalf("endpoint received %d requests, want %d", srv.Received(), calls)
	}
}
