package cli

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
)

// TestDlqOfADeadLetterWithoutItsEvent: a dead letter stored without its
// event (too large to keep) shows as such in `dlq list` and `dlq show`,
// and `dlq replay` refuses it — nothing is sent, it stays, and the error
// says how to deliver the change again — while replaying the others.
func TestDlqOfADeadLetterWithoutItsEvent(t *testing.T) {
	var hits atomic.Int32
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer ep.Close()
	_, st, cfg := devdbConfig(t, `
history: { enabled: false }
triggers:
  - name: files
    database: shop
    collection: files
    webhook: { url: "`+ep.URL+`" }
`)
	ctx := t.Context()
	event := func(data string, id int32) (bson.Raw, bson.Raw) {
		tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: data}})
		ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
			{Key: "clusterTime", Value: bson.Timestamp{T: 1767225600, I: 1}},
			{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: id}, {Key: "blob", Value: "xxxx"}}},
			{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "files"}}},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}}})
		return ev, tok
	}
	bigEv, bigTok := event("82AA01", 1)
	smallEv, smallTok := event("82AA02", 2)
	// Trimmed set: stored as PutDeadLetter stores one that does not fit.
	big := dispatcher.DeadLetter{Trigger: "files", WebhookID: dispatcher.WebhookID("files", bigTok), Event: bigEv, Token: bigTok,
		Attempts: 1, LastStatus: 413, LastReason: dispatcher.ReasonClientError, Trimmed: dispatcher.TrimmedEvent}
	small := dispatcher.DeadLetter{Trigger: "files", WebhookID: dispatcher.WebhookID("files", smallTok), Event: smallEv, Token: smallTok,
		Attempts: 1, LastStatus: 500, LastReason: dispatcher.ReasonServerError}
	for _, dl := range []dispatcher.DeadLetter{big, small} {
		if err := st.PutDeadLetter(ctx, dl); err != nil {
			t.Fatal(err)
		}
	}

	code, out, errOut := run(t, nil, "", "dlq", "list", "-c", cfg)
	if code != ExitOK || !strings.Contains(out, "NOTE") || !strings.Contains(out, "event too large, not kept ("+strconv.Itoa(len(bigEv))+" bytes): cannot be replayed") {
		t.Errorf("dlq list = %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, nil, "", "dlq", "show", "-c", cfg, big.WebhookID)
	for _, want := range []string{
		"trimmed:          event: its change event (" + strconv.Itoa(len(bigEv)) + " bytes) did not fit in a dead letter",
		"so it cannot be replayed; to deliver the change again, run `changehook redeliver files --since 2026-01-01T00:00:00Z` (the change's time), which reads it",
		"then `changehook dlq purge " + big.WebhookID + " --yes`",
		"event (not kept: only its identity,",
		`"documentKey": {`,
	} {
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("dlq show lacks %q: %d\n%s%s", want, code, out, errOut)
		}
	}
	if strings.Contains(out, "blob") {
		t.Errorf("dlq show shows the document that was not kept:\n%s", out)
	}

	code, out, errOut = run(t, nil, "", "dlq", "replay", "-c", cfg, "--all")
	if code != ExitFailure || !strings.Contains(out, big.WebhookID+"  files  FAILED: not replayed: its change event was too large to keep in the dead letter") ||
		!strings.Contains(out, "changehook redeliver files --since 2026-01-01T00:00:00Z") ||
		!strings.Contains(out, small.WebhookID+"  files  delivered: HTTP 204") || !strings.Contains(out, "replayed 1 of 2; 1 left in the dead letters") {
		t.Errorf("dlq replay --all = %d\n%s%s", code, out, errOut)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("the endpoint got %d requests, want 1 (the whole dead letter only)", n)
	}
	got, ok, err := st.GetDeadLetter(ctx, big.WebhookID)
	if err != nil || !ok || got.Attempts != 1 || got.Trimmed != dispatcher.TrimmedEvent {
		t.Errorf("the refused dead letter after the replay: %+v, %v, %v; want it kept as it was", got.DeadLetter, ok, err)
	}
}
