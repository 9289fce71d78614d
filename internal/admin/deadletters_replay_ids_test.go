package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestReplayIDsGetPastADeadLetterThatOutlastsTheBudget: a replay of ids
// whose first dead letter outlasts a call's budget answers done false with
// that id as next; the call repeated with it as after (as the console
// does) replays the other ids instead of spending its budget on the first
// one again.
func TestReplayIDsGetPastADeadLetterThatOutlastsTheBudget(t *testing.T) {
	srv, _ := devdbtest.Start(t)
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetTimeout(10*time.Second))
	st := store.New(client, "chstate")
	ctx := t.Context()
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		if strings.Contains(string(b), `"poison"`) {
			got["poison"]++
			mu.Unlock()
			<-r.Context().Done()
			return
		}
		got["ok"]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(ep.Close)
	var ids []string
	for i := range 3 {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", i)}})
		name := "fine"
		if i == 0 {
			name = "poison"
		}
		ids = append(ids, dispatcher.WebhookID("orders", tok))
		ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(i)}}}, {Key: "fullDocument", Value: bson.D{{Key: "name", Value: name}}}})
		if err := st.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: "orders", Event: ev, Token: tok, Attempts: 8, LastStatus: 500,
			DeadLetteredAt: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &triggers.Config{Path: "triggers.yaml", Triggers: []*triggers.Trigger{{Name: "orders", DeadLetter: true,
		Webhook: triggers.Webhook{URL: ep.URL, Timeout: 5 * time.Second},
		Retry:   triggers.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Second, MaxBackoff: time.Second}}}}
	s := startServer(t, Options{Store: st, DeadLetters: replayerOps{st, cfg}, WriteTimeout: 4 * time.Second})
	sel := map[string]any{"ids": ids}
	var nexts []string
	for call := 1; call <= 3; call++ {
		body, _ := json.Marshal(sel)
		res, err := http.Post(s.URL()+"/api/deadletters/replay", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var out DeadLetterReplayResult
		if res.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil {
			t.Fatalf("call %d = %d %s", call, res.StatusCode, b)
		}
		if out.Done {
			break
		}
		nexts = append(nexts, out.Next)
		sel["after"] = out.Next
	}
	mu.Lock()
	defer mu.Unlock()
	if got["poison"] != 1 || got["ok"] != 2 || len(nexts) != 1 || nexts[0] != ids[0] {
		t.Errorf("the endpoint got the outlasting dead letter %d times and the other two %d times, nexts %q; want 1, 2 and [%s]",
			got["poison"], got["ok"], nexts, ids[0])
	}
}
