package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestUnknownTriggerIsNotFound: the history and dead-letter listings and a
// replay or purge of one trigger's dead letters answer a trigger that is
// neither configured nor named by a stored record (a typo) with 404 and
// the error naming it, the closest configured trigger as "did you mean"
// and the configured ones, as the dlq and history commands refuse it; the
// call does nothing. A configured trigger without records is an empty
// list, a removed trigger whose records remain lists them, a partition's
// key of a configured partitioned trigger is a history trigger, and a
// configuration reloaded since is the one asked.
func TestUnknownTriggerIsNotFound(t *testing.T) {
	srv, _ := devdbtest.Start(t)
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetTimeout(10*time.Second))
	st := store.New(client, "chstate")
	ctx := context.Background()
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: "82AB"}})
	ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(1)}}}})
	if err := st.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: "legacy", Event: ev, Token: tok, Attempts: 1, LastStatus: 500}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.InsertAttempts(ctx, []store.AttemptRecord{{Kind: store.KindDelivery, Trigger: "legacy", WebhookID: "msg_1", Attempt: 1,
		Status: 500, Failed: true, Reason: "server_error", At: time.Now().UTC()}}); err != nil {
		t.Fatal(err)
	}
	cfg := &triggers.Config{Path: "/etc/changehook/triggers.yaml", Triggers: []*triggers.Trigger{
		{Name: "orders", Partitions: 1}, {Name: "quiet", Partitions: 1}, {Name: "parts", Partitions: 4}}}
	reloaded := &triggers.Config{Path: cfg.Path, Triggers: append([]*triggers.Trigger{{Name: "added", Partitions: 1}}, cfg.Triggers...)}
	var current atomic.Pointer[triggers.Config]
	ops := &fakeOps{}
	s, err := Start(Options{Addr: "127.0.0.1:0", Runner: fakeRunner{}, Store: st, History: st, DeadLetters: ops,
		Config: current.Load})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })

	unknown := func(name, what, hint, list string) string {
		return `unknown trigger "` + name + `": it is not in the configuration, and no ` + what + ` name it` + hint + `; triggers: ` + list
	}
	const list = "orders, quiet, parts"
	for _, tc := range []struct {
		method, path, body string
		reloaded           bool
		code               int
		want               string // in the body; for 404, the whole error
	}{
		{"GET", "/api/history?trigger=order", "", false, 404, unknown("order", "history records", ` (did you mean "orders"?)`, list)},
		{"GET", "/api/history?trigger=zzz", "", false, 404, unknown("zzz", "history records", "", list)},
		{"GET", "/api/history?trigger=parts/p1of3", "", false, 404, unknown("parts/p1of3", "history records", "", list)},
		{"GET", "/api/history?trigger=orders", "", false, 200, `"attempts": []`},
		{"GET", "/api/history?trigger=parts/p1of4", "", false, 200, `"attempts": []`},
		{"GET", "/api/history?trigger=legacy", "", false, 200, `"server_error"`},
		{"GET", "/api/history", "", false, 200, `"server_error"`},
		{"GET", "/api/history?trigger=added", "", false, 404, unknown("added", "history records", "", list)},
		{"GET", "/api/history?trigger=added", "", true, 200, `"attempts": []`},
		{"GET", "/api/deadletters?trigger=order", "", false, 404, unknown("order", "dead letters", ` (did you mean "orders"?)`, list)},
		{"GET", "/api/deadletters?trigger=parts/p1of4", "", false, 404, unknown("parts/p1of4", "dead letters", "", list)},
		{"GET", "/api/deadletters?trigger=orders", "", false, 200, `"dead_letters": []`},
		{"GET", "/api/deadletters?trigger=legacy", "", false, 200, `"trigger": "legacy"`},
		{"POST", "/api/deadletters/replay", `{"trigger": "order"}`, false, 404, unknown("order", "dead letters", ` (did you mean "orders"?)`, list)},
		{"POST", "/api/deadletters/purge", `{"trigger": "order"}`, false, 404, unknown("order", "dead letters", ` (did you mean "orders"?)`, list)},
		{"POST", "/api/deadletters/purge", `{"trigger": "legacy"}`, false, 200, `"deleted": 3`},
		{"POST", "/api/deadletters/replay", `{"trigger": "orders"}`, false, 200, `"replayed": 2`},
		{"POST", "/api/deadletters/replay", `{"ids": ["msg_x"]}`, false, 200, `"replayed": 2`},
	} {
		t.Run(tc.method+" "+tc.path+" "+tc.body, func(t *testing.T) {
			current.Store(cfg)
			if tc.reloaded {
				current.Store(reloaded)
			}
			req, _ := http.NewRequest(tc.method, s.URL()+tc.path, strings.NewReader(tc.body))
			if tc.method == "POST" {
				req.Header.Set("Content-Type", "application/json")
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.code {
				t.Fatalf("= %d %s, want %d", res.StatusCode, body, tc.code)
			}
			if tc.code != 404 {
				if !strings.Contains(string(body), tc.want) {
					t.Errorf("body %s lacks %q", body, tc.want)
				}
				return
			}
			var e map[string]string
			if err := json.Unmarshal(body, &e); err != nil || len(e) != 1 || e["error"] != tc.want {
				t.Errorf("body %s (%v), want {\"error\": %q}", body, err, tc.want)
			}
			if strings.Contains(e["error"], cfg.Path) {
				t.Errorf("the error names the configuration's path to a caller without a token: %s", e["error"])
			}
		})
	}
	// The refused replay and purge did nothing.
	if len(ops.sels) != 3 || ops.sels[0].Trigger != "legacy" || ops.sels[1].Trigger != "orders" || len(ops.sels[2].IDs) != 1 {
		t.Errorf("selections passed on = %+v; want legacy's purge, orders' replay and the ids' only", ops.sels)
	}
}
