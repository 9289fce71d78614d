package deadletter_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// TestReplayFailureReasons: a replay's Summary says why its dead letters
// failed, one entry per reason in the order first met, with a count, the
// first ids, the attempts made and how many dead letters record them; also
// when no attempt was made (a trigger no longer configured, an unknown id,
// an event not kept, a payload that cannot be built), and then the dead
// letter is as it was and counts as recorded by none, as does one removed
// while its replay ran. No reason
// quotes the webhook's URL or the endpoint's answer, and the entries and
// ids are bounded.
func TestReplayFailureReasons(t *testing.T) {
	const urlToken = "url-token-4b7e" // in the webhook's URL and the endpoint's answer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "refused, token="+urlToken, http.StatusBadRequest)
	}))
	t.Cleanup(srv.Close)
	// The endpoint of trigger "racing" removes the dead letter being
	// replayed (a purge or another replay meanwhile) before it answers.
	var racing *store.Store
	racingSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := racing.DeleteDeadLetter(r.Context(), r.Header.Get("webhook-id")); err != nil {
			t.Error(err)
		}
		http.Error(w, "refused, token="+urlToken, http.StatusBadRequest)
	}))
	t.Cleanup(racingSrv.Close)
	// Trigger "badpayload" has a payload that fails on every event: no
	// request is sent.
	spec := bson.D{{Key: "n", Value: bson.D{{Key: "$toInt", Value: "$operationType"}}}}
	payload, err := mql.CompileExpr(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &triggers.Config{Path: "triggers.yaml", Triggers: []*triggers.Trigger{
		{Name: "orders", Webhook: triggers.Webhook{URL: srv.URL + "/hook?token=" + urlToken}, Retry: triggers.RetryPolicy{MaxAttempts: 1}},
		{Name: "racing", Webhook: triggers.Webhook{URL: racingSrv.URL + "/hook"}, Retry: triggers.RetryPolicy{MaxAttempts: 1}},
		{Name: "badpayload", Webhook: triggers.Webhook{URL: srv.URL + "/hook", Payload: payload, PayloadSpec: spec}, Retry: triggers.RetryPolicy{MaxAttempts: 1}},
	}}
	const (
		removed    = `trigger "gone" is not in triggers.yaml: its webhook is unknown`
		notFound   = "no such dead letter (replayed or purged already?)"
		notKept    = "not replayed: its change event was too large to keep in the dead letter; its dead letter says how to deliver the change again"
		refused    = "delivery failed: HTTP 400 (client_error)"
		gone       = "delivery failed: HTTP 400 (client_error); the dead letter is gone (replayed or purged meanwhile)"
		badPayload = "payload could not be built from the event (payload_error): no request was sent"
	)
	// item is one id of the selection: a dead letter stored for trigger
	// (its event not kept when trimmed), or an id without one ("").
	type item struct {
		trigger string
		trimmed bool
	}
	type reason struct {
		text                      string
		count, attempts, recorded int
		ids                       []int // the items listed, by index
	}
	unknown := func(n int) []item { return repeat(item{trigger: "gone"}, n) }
	var many []item // one trigger with 7 dead letters, then 9 others
	many = append(many, repeat(item{trigger: "gone-0"}, 7)...)
	for i := 1; i <= 9; i++ {
		many = append(many, item{trigger: fmt.Sprintf("gone-%d", i)})
	}
	manyWant := []reason{{text: `trigger "gone-0" is not in triggers.yaml: its webhook is unknown`, count: 7, ids: []int{0, 1, 2, 3, 4}}}
	for i := 1; i <= 6; i++ {
		manyWant = append(manyWant, reason{text: fmt.Sprintf(`trigger "gone-%d" is not in triggers.yaml: its webhook is unknown`, i), count: 1, ids: []int{6 + i}})
	}
	manyWant = append(manyWant, reason{text: deadletter.OtherReasons, count: 3, ids: []int{13, 14, 15}})

	for _, tc := range []struct {
		name  string
		items []item
		want  []reason
	}{
		{"trigger no longer configured", unknown(2), []reason{{text: removed, count: 2, ids: []int{0, 1}}}},
		{"payload fails", repeat(item{trigger: "badpayload"}, 2), []reason{{text: badPayload, count: 2, ids: []int{0, 1}}}},
		{"removed during its replay", []item{{trigger: "racing"}, {trigger: "orders"}},
			[]reason{{text: gone, count: 1, attempts: 1, ids: []int{0}}, {text: refused, count: 1, attempts: 1, recorded: 1, ids: []int{1}}}},
		{"unknown id", []item{{}}, []reason{{text: notFound, count: 1, ids: []int{0}}}},
		{"event not kept", []item{{trigger: "orders", trimmed: true}}, []reason{{text: notKept, count: 1, ids: []int{0}}}},
		{"endpoint refuses", repeat(item{trigger: "orders"}, 2), []reason{{text: refused, count: 2, attempts: 2, recorded: 2, ids: []int{0, 1}}}},
		{"mixed", []item{{trigger: "gone"}, {trigger: "orders"}, {}, {trigger: "gone"}},
			[]reason{{text: removed, count: 2, ids: []int{0, 3}}, {text: refused, count: 1, attempts: 1, recorded: 1, ids: []int{1}}, {text: notFound, count: 1, ids: []int{2}}}},
		{"bounded", many, manyWant},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, st := newStateStore(t)
			racing = st
			ids := make([]string, len(tc.items))
			for i, it := range tc.items {
				switch {
				case it.trigger == "":
					ids[i] = fmt.Sprintf("msg_none_%d", i)
				case it.trimmed:
					tok, err := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", i)}})
					if err != nil {
						t.Fatal(err)
					}
					dl := dispatcher.DeadLetter{Trigger: it.trigger, WebhookID: dispatcher.WebhookID(it.trigger, tok), Token: tok, Attempts: 1, LastError: "HTTP 413",
						Trimmed: dispatcher.TrimmedEvent, EventSize: 16 << 20, FirstAttemptAt: time.Now(), DeadLetteredAt: time.Now()}
					if err := st.PutDeadLetter(ctx, dl); err != nil {
						t.Fatal(err)
					}
					ids[i] = dl.WebhookID
				default:
					ids[i] = putDeadLetter(t, ctx, st, it.trigger, i)
				}
			}
			before := map[string]store.StoredDeadLetter{}
			for _, id := range ids {
				if dl, ok, err := st.GetDeadLetter(ctx, id); err != nil {
					t.Fatal(err)
				} else if ok {
					before[id] = dl
				}
			}
			sum, err := newReplayer(st, cfg).Replay(ctx, deadletter.Selection{IDs: ids}, nil)
			if err != nil || sum.Replayed != 0 || sum.Failed != len(ids) {
				t.Fatalf("Replay = %+v, %v; want %d failed", sum, err, len(ids))
			}
			if len(sum.Reasons) != len(tc.want) {
				t.Fatalf("%d reasons %+v, want %d", len(sum.Reasons), sum.Reasons, len(tc.want))
			}
			for i, w := range tc.want {
				got := sum.Reasons[i]
				var wantIDs []string
				for _, j := range w.ids {
					wantIDs = append(wantIDs, ids[j])
				}
				if got.Reason != w.text || got.Count != w.count || got.Attempts != w.attempts || got.Recorded != w.recorded ||
					strings.Join(got.IDs, " ") != strings.Join(wantIDs, " ") {
					t.Errorf("reason %d = %+v, want %q: count %d, attempts %d, recorded %d, ids %v", i, got, w.text, w.count, w.attempts, w.recorded, wantIDs)
				}
				if len(got.IDs) > deadletter.MaxReasonIDs {
					t.Errorf("reason %d lists %d ids, more than %d", i, len(got.IDs), deadletter.MaxReasonIDs)
				}
				if strings.Contains(got.Reason, urlToken) || strings.Contains(got.Reason, srv.URL) {
					t.Errorf("reason %d quotes the webhook's URL or the endpoint's answer: %q", i, got.Reason)
				}
			}
			// A dead letter failed without attempts is as it was; one
			// with attempts records them (unless it was removed).
			for i, it := range tc.items {
				dl, ok, err := st.GetDeadLetter(ctx, ids[i])
				was, stored := before[ids[i]]
				if err != nil || ok != (stored && it.trigger != "racing") {
					t.Fatalf("dead letter %s after the replay: %v, %v; stored before: %v", ids[i], ok, err, stored)
				}
				attempted := it.trigger == "orders" && !it.trimmed
				if ok && attempted != (dl.Attempts != was.Attempts || dl.LastError != was.LastError) {
					t.Errorf("dead letter %s: attempts %d, last error %q after the replay; before %d, %q", ids[i], dl.Attempts, dl.LastError, was.Attempts, was.LastError)
				}
			}
		})
	}
}

// repeat returns n copies of v.
func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}
