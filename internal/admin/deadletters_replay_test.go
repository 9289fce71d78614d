package admin

import (
	"context"
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
	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// replayerOps is DeadLetterOps as the CLI builds it: a new Replayer per
// call.
type replayerOps struct {
	st  *store.Store
	cfg *triggers.Config
}

func (o replayerOps) Replay(ctx context.Context, sel deadletter.Selection) (deadletter.Summary, error) {
	r := deadletter.Replayer{Store: o.st, Config: o.cfg, NewSender: func(t *triggers.Trigger) (*dispatcher.Sender, error) { return dispatcher.NewSender(t) }}
	return r.Replay(ctx, sel, nil)
}

func (o replayerOps) Purge(ctx context.Context, sel deadletter.Selection) (int64, error) {
	return deadletter.Purge(ctx, o.st, sel)
}

// outlastingReplay is the setup of the replay continuation tests: three
// dead letters of trigger orders, oldest first; the endpoint never answers
// the oldest ("poison", its id ids[0]), so its replay outlasts any call,
// and accepts the others. got counts the requests by kind under mu; the
// server's calls have 1.6 s of work each.
type outlastingReplay struct {
	s   *Server
	st  *store.Store
	ids []string
	mu  sync.Mutex
	got map[string]int
}

func newOutlastingReplay(t *testing.T) *outlastingReplay {
	t.Helper()
	o := &outlastingReplay{got: map[string]int{}}
	srv, _ := devdbtest.Start(t)
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetTimeout(10*time.Second))
	o.st = store.New(client, "chstate")
	ctx := t.Context()
	if err := o.st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		o.mu.Lock()
		if strings.Contains(string(b), `"poison"`) {
			o.got["poison"]++
			o.mu.Unlock()
			<-r.Context().Done() // never answered: the delivery times out
			return
		}
		o.got["ok"]++
		o.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(ep.Close)
	for i := range 3 {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", i)}})
		name := "fine"
		if i == 0 {
			name = "poison"
		}
		o.ids = append(o.ids, dispatcher.WebhookID("orders", tok))
		ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(i)}}}, {Key: "fullDocument", Value: bson.D{{Key: "name", Value: name}}}})
		if err := o.st.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: "orders", Event: ev, Token: tok, Attempts: 8, LastStatus: 500,
			DeadLetteredAt: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &triggers.Config{Path: "triggers.yaml", Triggers: []*triggers.Trigger{{Name: "orders", DeadLetter: true,
		Webhook: triggers.Webhook{URL: ep.URL, Timeout: 5 * time.Second},
		Retry:   triggers.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Second, MaxBackoff: time.Second}}}}
	o.s = startServer(t, Options{Store: o.st, DeadLetters: replayerOps{o.st, cfg}, WriteTimeout: 4 * time.Second})
	return o
}

// TestReplayCallsGetPastADeadLetterThatOutlastsTheBudget: the oldest of a
// trigger's dead letters cannot be delivered within one replay call's time
// budget (its endpoint never answers for it). The first call records that
// failed replay in the dead letter (its context had ended: it was not
// recorded) and answers done: false with next; the next call, given it as
// after, replays the others. Before, every call started again at the
// oldest, so however often it was repeated the others were never
// replayed.
func TestReplayCallsGetPastADeadLetterThatOutlastsTheBudget(t *testing.T) {
	o := newOutlastingReplay(t)
	s, st, poisonID, ctx := o.s, o.st, o.ids[0], t.Context()
	call := func(body string) DeadLetterReplayResult {
		t.Helper()
		res, err := http.Post(s.URL()+"/api/deadletters/replay", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		var out DeadLetterReplayResult
		if res.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil {
			t.Fatalf("POST %s = %d %s", body, res.StatusCode, b)
		}
		return out
	}

	first := call(`{"trigger": "orders"}`)
	if first.Done || first.Failed != 1 || first.Replayed != 0 || first.Next == "" {
		t.Fatalf("first call = %+v, want done false, the oldest failed, and next", first)
	}
	dl, _, err := st.GetDeadLetter(ctx, poisonID)
	if err != nil || dl.Attempts <= 8 || dl.LastError == "" {
		t.Errorf("the oldest dead letter after its replay failed: attempts %d, last error %q (%v); want the replay's attempts recorded", dl.Attempts, dl.LastError, err)
	}
	second := call(fmt.Sprintf(`{"trigger": "orders", "after": %q}`, first.Next))
	if !second.Done || second.Replayed != 2 || second.Failed != 0 || second.Next != "" {
		t.Errorf("second call, after %s = %+v, want done with the other 2 replayed", first.Next, second)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if n, _ := st.CountDeadLetters(ctx, "orders"); o.got["ok"] != 2 || n != 1 {
		t.Errorf("the endpoint got the replayable events %d times, %d dead letters left; want 2 and 1", o.got["ok"], n)
	}
	for _, tc := range []struct{ path, body, want string }{
		{"/api/deadletters/replay", `{"ids": ["msg_1"], "after": "` + first.Next + `"}`, "after: not one of the ids"},
		{"/api/deadletters/replay", `{"trigger": "orders", "after": "msg_1"}`, "after: "},
		{"/api/deadletters/purge", `{"trigger": "orders", "after": "` + first.Next + `"}`, "after continues a replay; a purge takes none"},
	} {
		res, err := http.Post(s.URL()+tc.path, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), tc.want) {
			t.Errorf("POST %s %s = %d %s, want 400 with %q", tc.path, tc.body, res.StatusCode, b, tc.want)
		}
	}
}

// TestReplayIDsGetPastADeadLetterThatOutlastsTheBudget: a replay of ids
// whose first dead letter outlasts a call's budget answers done false with
// that id as next; the call repeated with it as after (as the console
// does) replays the other ids instead of spending its budget on the first
// one again.
func TestReplayIDsGetPastADeadLetterThatOutlastsTheBudget(t *testing.T) {
	o := newOutlastingReplay(t)
	sel := map[string]any{"ids": o.ids}
	var nexts []string
	for call := 1; call <= 3; call++ {
		body, _ := json.Marshal(sel)
		res, err := http.Post(o.s.URL()+"/api/deadletters/replay", "application/json", strings.NewReader(string(body)))
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
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.got["poison"] != 1 || o.got["ok"] != 2 || len(nexts) != 1 || nexts[0] != o.ids[0] {
		t.Errorf("the endpoint got the outlasting dead letter %d times and the other two %d times, nexts %q; want 1, 2 and [%s]",
			o.got["poison"], o.got["ok"], nexts, o.ids[0])
	}
}

// TestReplayAnswerSaysWhy: a replay call's answer says why its dead
// letters failed, per reason with a count, the ids, the attempts made and
// how many dead letters record them, also for a replay that makes no
// attempt (a trigger removed from the configuration, whose dead letters
// keep their old attempts and error); the answer quotes neither the
// webhook's URL nor the endpoint's answer.
func TestReplayAnswerSaysWhy(t *testing.T) {
	const urlToken = "url-token-71d2"
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no, token="+urlToken, http.StatusGone)
	}))
	t.Cleanup(ep.Close)
	_, client := devdbtest.Start(t)
	st := store.New(client, "chstate")
	ctx := t.Context()
	if err := st.EnsureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	put := func(trigger string, i int) string {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", i)}})
		ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"}})
		if err := st.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: trigger, Event: ev, Token: tok, Attempts: 3, LastStatus: 500, LastError: "HTTP 500"}); err != nil {
			t.Fatal(err)
		}
		return dispatcher.WebhookID(trigger, tok)
	}
	gone1, gone2, orders := put("gone", 1), put("gone", 2), put("orders", 3)
	cfg := &triggers.Config{Path: "triggers.yaml", Triggers: []*triggers.Trigger{{Name: "orders",
		Webhook: triggers.Webhook{URL: ep.URL + "/hook?token=" + urlToken}, Retry: triggers.RetryPolicy{MaxAttempts: 1}}}}
	s := startServer(t, Options{Store: st, DeadLetters: replayerOps{st, cfg}})

	type reason struct {
		Reason   string   `json:"reason"`
		Count    int      `json:"count"`
		IDs      []string `json:"ids"`
		Attempts int      `json:"attempts"`
		Recorded int      `json:"recorded"`
	}
	removed := `trigger "gone" is not in triggers.yaml: its webhook is unknown`
	for _, tc := range []struct {
		name string
		body string
		want []reason
	}{
		{"removed trigger, by ids", fmt.Sprintf(`{"ids": [%q, %q]}`, gone1, gone2), []reason{{removed, 2, []string{gone1, gone2}, 0, 0}}},
		{"removed trigger, by trigger", `{"trigger": "gone"}`, []reason{{removed, 2, []string{gone1, gone2}, 0, 0}}},
		{"endpoint refuses", fmt.Sprintf(`{"ids": [%q]}`, orders), []reason{{"delivery failed: HTTP 410 (client_error)", 1, []string{orders}, 1, 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := http.Post(s.URL()+"/api/deadletters/replay", "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			var out struct {
				Failed  int      `json:"failed"`
				Done    bool     `json:"done"`
				Reasons []reason `json:"reasons"`
			}
			if res.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil {
				t.Fatalf("POST %s = %d %s", tc.body, res.StatusCode, b)
			}
			if got, _ := json.Marshal(out.Reasons); !out.Done || out.Failed != len(tc.want[0].IDs) || string(got) != string(must(json.Marshal(tc.want))) {
				t.Errorf("POST %s = %s; want done, %d failed, reasons %s", tc.body, b, len(tc.want[0].IDs), must(json.Marshal(tc.want)))
			}
			if strings.Contains(string(b), urlToken) || strings.Contains(string(b), ep.URL) {
				t.Errorf("the answer quotes the webhook's URL or the endpoint's answer: %s", b)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
