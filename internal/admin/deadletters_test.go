package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
)

// fakeOps records the selections of replay and purge calls.
type fakeOps struct{ sels []deadletter.Selection }

func (f *fakeOps) Replay(_ context.Context, sel deadletter.Selection) (deadletter.Summary, error) {
	f.sels = append(f.sels, sel)
	return deadletter.Summary{Replayed: 2, Failed: 1}, nil
}

func (f *fakeOps) Purge(_ context.Context, sel deadletter.Selection) (int64, error) {
	f.sels = append(f.sels, sel)
	return 3, nil
}

// fakeCounter records the recounts asked for.
type fakeCounter struct{ calls [][]string }

func (f *fakeCounter) RecountDeadLetters(_ context.Context, triggers ...string) error {
	f.calls = append(f.calls, triggers)
	return nil
}

// TestDeadLetterAPI pages through dead letters with limit and after, reads
// one with its event, and checks that replay and purge need the token and
// pass the selection on.
func TestDeadLetterAPI(t *testing.T) {
	srv, _ := devdbtest.Start(t)
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetTimeout(10*time.Second))
	st := store.New(client, "chstate")
	ctx := context.Background()
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprint(i)}})
		ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(i)}}}})
		dl := dispatcher.DeadLetter{Trigger: "orders", Event: ev, Token: tok, Attempts: 2, LastStatus: 500,
			DeadLetteredAt: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)}
		if i == 4 {
			dl.Trimmed = dispatcher.TrimmedEvent // stored as one too large to keep its event
		}
		if i == 3 {
			dl.SkippedBy = "cli" // stored by `changehook skip`
		}
		if err := st.PutDeadLetter(ctx, dl); err != nil {
			t.Fatal(err)
		}
	}
	ops := &fakeOps{}
	counter := &fakeCounter{}
	s, err := Start(Options{Addr: "127.0.0.1:0", Runner: fakeRunner{}, Store: st, DeadLetters: ops, DeadLetterCounts: counter, Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	call := func(method, path, token, body string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, s.URL()+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if method == "POST" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}

	var ids []string
	after := ""
	for range 3 {
		code, body := call("GET", "/api/deadletters?trigger=orders&limit=2&after="+after, "s3cret", "")
		var page DeadLetterPage
		if code != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("GET /api/deadletters = %d %s", code, body)
		}
		for _, dl := range page.DeadLetters {
			ids = append(ids, dl.ID)
			if dl.OperationType != "insert" || string(dl.DocumentKey) == "" || dl.Event != nil {
				t.Fatalf("listed dead letter = %+v; want operation type and key, no event", dl)
			}
			if trimmed := len(ids) == 5; (dl.Trimmed == dispatcher.TrimmedEvent) != trimmed || (dl.EventSize > 0) != trimmed || (dl.Note != "") != trimmed {
				t.Fatalf("listed dead letter %d = %+v; want only the last one trimmed, with its event size and a note", len(ids), dl)
			}
			if skipped := len(ids) == 4; (dl.SkippedBy == "cli") != skipped || (dl.SkippedBy == "") == skipped {
				t.Fatalf("listed dead letter %d = %+v; want only the fourth skipped, by cli", len(ids), dl)
			}
		}
		after = page.Next
		if after == "" {
			break
		}
	}
	if len(ids) != 5 || after != "" {
		t.Fatalf("pages gave %d dead letters (next %q), want 5 and no next", len(ids), after)
	}
	code, body := call("GET", "/api/deadletters/"+ids[4], "s3cret", "")
	var one DeadLetterJSON
	if code != 200 || json.Unmarshal(body, &one) != nil || one.ID != ids[4] || !strings.Contains(string(one.Event), `"insert"`) ||
		one.Trimmed != dispatcher.TrimmedEvent || !strings.Contains(one.Note, "cannot be replayed; to deliver the change again, run `changehook redeliver orders --since TIME`") {
		t.Fatalf("GET one = %d %s", code, body)
	}
	code, body = call("GET", "/api/deadletters/"+ids[3], "s3cret", "")
	var skipped DeadLetterJSON
	if code != 200 || json.Unmarshal(body, &skipped) != nil || skipped.SkippedBy != "cli" {
		t.Fatalf("GET the skipped one = %d %s; want skipped_by cli", code, body)
	}
	if code, body := call("GET", "/api/deadletters/msg_nope", "s3cret", ""); code != 404 {
		t.Fatalf("GET missing = %d %s", code, body)
	}
	if code, body := call("GET", "/api/deadletters?limit=0", "s3cret", ""); code != 400 {
		t.Fatalf("GET limit=0 = %d %s", code, body)
	}

	for _, tc := range []struct {
		path, token, body string
		code              int
		want              string
	}{
		{"/api/deadletters/replay", "", `{"all": true}`, 401, "admin token"},
		{"/api/deadletters/replay", "wrong", `{"all": true}`, 401, "admin token"},
		{"/api/deadletters/replay", "s3cret", `{}`, 400, "give ids, a trigger or all"},
		{"/api/deadletters/replay", "s3cret", `{"ids": ["a"], "all": true}`, 400, "not both"},
		{"/api/deadletters/replay", "s3cret", `{"every": true}`, 400, "unknown field"},
		{"/api/deadletters/replay", "s3cret", `{"trigger": "orders"}`, 200, `"replayed": 2`},
		{"/api/deadletters/purge", "s3cret", `{"ids": ["a", "b"]}`, 200, `"deleted": 3`},
	} {
		code, body := call("POST", tc.path, tc.token, tc.body)
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("POST %s %s (token %q) = %d %s; want %d with %q", tc.path, tc.body, tc.token, code, body, tc.code, tc.want)
		}
		if code != http.StatusOK {
			continue
		}
		// Each answer has its own counts only: a replay's deleted (always 0)
		// would read as "nothing removed" though every replayed one was.
		var fields map[string]any
		if err := json.Unmarshal(body, &fields); err != nil {
			t.Fatalf("POST %s: %v", tc.path, err)
		}
		keys := slices.Sorted(maps.Keys(fields))
		want := map[string]string{"/api/deadletters/replay": "[done failed replayed]", "/api/deadletters/purge": "[deleted done]"}[tc.path]
		if fmt.Sprint(keys) != want {
			t.Errorf("POST %s answered the fields %v, want %s", tc.path, keys, want)
		}
	}
	if len(ops.sels) != 2 || ops.sels[0].Trigger != "orders" || len(ops.sels[1].IDs) != 2 {
		t.Fatalf("selections passed on = %+v", ops.sels)
	}
	// Each call that ran recounted before answering: the replay of one
	// trigger that trigger, the purge by ids every trigger; the refused
	// calls nothing.
	if fmt.Sprint(counter.calls) != "[[orders] []]" {
		t.Errorf("recounts = %q, want [[orders] []]", counter.calls)
	}
}
