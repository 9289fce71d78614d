package deadletter_test

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

// putDeadLetter stores a dead letter of trigger for the event numbered i
// and returns its id.
func putDeadLetter(t *testing.T, ctx context.Context, st *store.Store, trigger string, i int) string {
	t.Helper()
	tok, err := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", i)}})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: i}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: trigger, Event: ev, Token: tok, LastError: "HTTP 500"}); err != nil {
		t.Fatal(err)
	}
	return dispatcher.WebhookID(trigger, tok)
}

// TestReplayClosesItsConnections: once Replay returns, the keep-alive
// connections its deliveries opened (one per trigger's endpoint) are
// closed, for a replay by ids and one of every dead letter, and a
// Replayer used again replays as before. Each Replay of the admin API
// builds a new Replayer: connections left to their idle timeout (90 s)
// would pile up, one per call.
func TestReplayClosesItsConnections(t *testing.T) {
	_, client := devdbtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := store.New(client, "chstate")
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	orders, users := connendpoint.Start(t), connendpoint.Start(t)
	cfg := &triggers.Config{Path: "triggers.yaml", Triggers: []*triggers.Trigger{
		{Name: "orders", Webhook: triggers.Webhook{URL: orders.URL}},
		{Name: "users", Webhook: triggers.Webhook{URL: users.URL}},
	}}
	r := &deadletter.Replayer{Store: st, Config: cfg, NewSender: func(t *triggers.Trigger) (*dispatcher.Sender, error) {
		return dispatcher.NewSender(t)
	}}
	waitClosed := func(after string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for orders.Open()+users.Open() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %d connections to orders' endpoint and %d to users' still open, want 0",
					after, orders.Open(), users.Open())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	n := 0
	for round := range 3 {
		var ids []string
		for range 3 {
			ids = append(ids, putDeadLetter(t, ctx, st, "orders", n), putDeadLetter(t, ctx, st, "users", n))
			n++
		}
		sel := deadletter.Selection{IDs: ids}
		if round == 2 {
			sel = deadletter.Selection{All: true}
		}
		sum, err := r.Replay(ctx, sel, nil)
		if err != nil || sum.Replayed != 6 || sum.Failed != 0 {
			t.Fatalf("round %d: replay %+v, %v; want 6 replayed", round, sum, err)
		}
		waitClosed(fmt.Sprintf("replay round %d", round))
	}
	if got := orders.Received() + users.Received(); got != 18 {
		t.Fatalf("endpoints received %d requests, want 18", got)
	}
}
