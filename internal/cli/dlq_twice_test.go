package cli

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
)

// TestDlqReplayOfAnIDGivenTwice: `dlq replay ID ID` (an ID pasted twice)
// replays the dead letter once and exits 0: the second copy is not
// reported as not found, as purge also takes each ID once.
func TestDlqReplayOfAnIDGivenTwice(t *testing.T) {
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
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
	tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: "82AA01"}})
	ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
		{Key: "clusterTime", Value: bson.Timestamp{T: 1767225600, I: 1}},
		{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: 1}}},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "files"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: 1}}}})
	known := dispatcher.DeadLetter{Trigger: "files", WebhookID: dispatcher.WebhookID("files", tok), Event: ev, Token: tok,
		Attempts: 1, LastStatus: 500, LastReason: dispatcher.ReasonServerError}
	if err := st.PutDeadLetter(t.Context(), known); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, nil, "", "dlq", "replay", "-c", cfg, known.WebhookID, known.WebhookID)
	if want := known.WebhookID + "  files  delivered: HTTP 200 after 1 attempt\nreplayed 1 of 1; 0 left in the dead letters\n"; code != ExitOK || out != want {
		t.Errorf("dlq replay ID ID (the one dead letter delivered): exit %d, output\n%s%s\nwant exit 0 and\n%s", code, out, errOut, want)
	}
}
