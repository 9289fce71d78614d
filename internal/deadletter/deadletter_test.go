package deadletter_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// newStateStore starts a devdb for the test and returns the state store on
// it, its indexes made, and a context that ends after a minute or with the
// test (t.Cleanup), for the test's calls.
func newStateStore(t *testing.T) (context.Context, *store.Store) {
	t.Helper()
	_, client := devdbtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	st := store.New(client, "chstate")
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx, st
}

// newReplayer is a Replayer of st's dead letters to cfg's triggers, each
// delivered by a plain dispatcher.Sender of its trigger.
func newReplayer(st *store.Store, cfg *triggers.Config) *deadletter.Replayer {
	return &deadletter.Replayer{Store: st, Config: cfg, NewSender: func(t *triggers.Trigger) (*dispatcher.Sender, error) {
		return dispatcher.NewSender(t)
	}}
}

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
	ctx, st := newStateStore(t)
	orders, users := connendpoint.Start(t), connendpoint.Start(t)
	cfg := &triggers.Config{Path: "triggers.yaml", Triggers: []*triggers.Trigger{
		{Name: "orders", Webhook: triggers.Webhook{URL: orders.URL}},
		{Name: "users", Webhook: triggers.Webhook{URL: users.URL}},
	}}
	r := newReplayer(st, cfg)
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

// TestReplayAttemptsCarryTheEvent: a replay's attempts reach the observers
// (the delivery history) with the event's documentKey and operationType,
// and a failed replay's error counts its attempts in good English.
func TestReplayAttemptsCarryTheEvent(t *testing.T) {
	ctx, st := newStateStore(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) }))
	t.Cleanup(srv.Close)
	cfg := &triggers.Config{Path: "triggers.yaml", Triggers: []*triggers.Trigger{
		{Name: "orders", Webhook: triggers.Webhook{URL: srv.URL}, Retry: triggers.RetryPolicy{MaxAttempts: 1}},
	}}
	var mu sync.Mutex
	var seen []dispatcher.Attempt
	r := &deadletter.Replayer{Store: st, Config: cfg, NewSender: func(t *triggers.Trigger) (*dispatcher.Sender, error) {
		return dispatcher.NewSender(t, dispatcher.WithObserver(func(a dispatcher.Attempt) {
			mu.Lock()
			defer mu.Unlock()
			a.DocumentKey = append(bson.Raw(nil), a.DocumentKey...)
			seen = append(seen, a)
		}))
	}}
	id := putDeadLetter(t, ctx, st, "orders", 7)
	var res deadletter.Result
	if _, err := r.Replay(ctx, deadletter.Selection{IDs: []string{id}}, func(x deadletter.Result) { res = x }); err != nil {
		t.Fatal(err)
	}
	if res.Err == nil || !strings.Contains(res.Err.Error(), "HTTP 400 after 1 attempt: ") || strings.Contains(res.Err.Error(), "attempt(s)") ||
		strings.Contains(res.Err.Error(), "1 attempts") {
		t.Errorf("replay error %v, want it to say HTTP 400 after 1 attempt", res.Err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("%d attempts observed, want 1", len(seen))
	}
	if k, err := seen[0].DocumentKey.LookupErr("_id"); err != nil || k.Int32() != 7 || seen[0].Operation != "insert" {
		t.Errorf("replay attempt has document key %v and operation %q, want {_id: 7} and insert", seen[0].DocumentKey, seen[0].Operation)
	}
}

// TestReplayHasTheTriggersShape: a dead letter of a trigger that is
// batched is replayed as a batch of one — a JSON array, under that one
// event's batch webhook-id, as a live request of the trigger would be —
// since its receiver reads arrays; one of an unbatched trigger as the
// event itself, under the dead letter's webhook-id.
func TestReplayHasTheTriggersShape(t *testing.T) {
	ctx, st := newStateStore(t)
	type request struct {
		id   string
		body string
	}
	var mu sync.Mutex
	got := map[string][]request{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got[r.URL.Path] = append(got[r.URL.Path], request{r.Header.Get("Webhook-Id"), string(body)})
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	cfg := &triggers.Config{Path: "triggers.yaml", Triggers: []*triggers.Trigger{
		{Name: "batched", Webhook: triggers.Webhook{URL: srv.URL + "/batched"}, Batch: &triggers.BatchPolicy{MaxEvents: 10}},
		{Name: "single", Webhook: triggers.Webhook{URL: srv.URL + "/single"}},
	}}
	r := newReplayer(st, cfg)
	ids := []string{putDeadLetter(t, ctx, st, "batched", 1), putDeadLetter(t, ctx, st, "single", 2)}
	sum, err := r.Replay(ctx, deadletter.Selection{IDs: ids}, nil)
	if err != nil || sum.Replayed != 2 {
		t.Fatalf("replay: %+v, %v; want both replayed", sum, err)
	}
	tok := func(i int) bson.Raw {
		b, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", i)}})
		return b
	}
	mu.Lock()
	defer mu.Unlock()
	for path, want := range map[string]request{
		"/batched": {dispatcher.BatchWebhookID("batched", tok(1), tok(1)), `[{"_id":{"_data":"8200000001"},"operationType":"insert","documentKey":{"_id":1}}]`},
		"/single":  {ids[1], `{"_id":{"_data":"8200000002"},"operationType":"insert","documentKey":{"_id":2}}`},
	} {
		if reqs := got[path]; len(reqs) != 1 || reqs[0] != want {
			t.Errorf("%s received %+v, want one request %+v", path, reqs, want)
		}
	}
}
