package cli

import (
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
)

// TestDlqOfASkippedEvent: the dead letter `changehook skip` stored shows
// the delivery attempts made before the skip (their number, the last
// status, reason, error and response, the first attempt's time) and who
// skipped it, in `dlq list` (its note) and `dlq show`.
func TestDlqOfASkippedEvent(t *testing.T) {
	_, st, cfg := devdbConfig(t, `
history: { enabled: false }
triggers:
  - name: strict
    database: shop
    collection: a
    dead_letter: false
    webhook: { url: "http://127.0.0.1:1/hook" }
`)
	first := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	dl := putInsertDeadLetter(t, st, "82AA01", dispatcher.DeadLetter{Trigger: "strict",
		Attempts: 7, LastStatus: 400, LastReason: dispatcher.ReasonClientError, LastError: "client_error: HTTP 400 Bad Request",
		LastResponse: `{"error":"sku unknown"}`, FirstAttemptAt: first, DeadLetteredAt: first.Add(time.Minute), SkippedBy: "cli"})

	code, out, errOut := run(t, nil, "", "dlq", "list", "-c", cfg)
	if code != ExitOK || !strings.Contains(out, dl.WebhookID+"  strict   insert     7         400          client_error  2026-01-01T12:01:00Z  skipped by cli") {
		t.Errorf("dlq list = %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run(t, nil, "", "dlq", "show", "-c", cfg, dl.WebhookID)
	for _, want := range []string{
		"attempts:         7\n",
		"last status:      400\n",
		"last reason:      client_error\n",
		"last error:       client_error: HTTP 400 Bad Request\n",
		"first attempt:    2026-01-01T12:00:00Z\n",
		"dead-lettered at: 2026-01-01T12:01:00Z\n",
		"skipped by:       cli (the trigger was stuck on it; the fields above are from its delivery attempts)\n",
		`last response:    {"error":"sku unknown"}` + "\n",
	} {
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("dlq show lacks %q: %d\n%s%s", want, code, out, errOut)
		}
	}
}

// TestDlqShowEscapesTerminalControls: what an endpoint chose (its answer,
// the names in its certificate quoted by an error) is shown with its
// control characters escaped, so printing it cannot retitle, recolour or
// clear the operator's terminal.
func TestDlqShowEscapesTerminalControls(t *testing.T) {
	_, st, cfg := devdbConfig(t, `
history: { enabled: false }
triggers:
  - name: t
    database: shop
    collection: a
    webhook: { url: "http://127.0.0.1:1/hook" }
`)
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	dl := putInsertDeadLetter(t, st, "82AA02", dispatcher.DeadLetter{Trigger: "t",
		Attempts: 1, LastStatus: 500, LastReason: dispatcher.ReasonServerError,
		LastError:    "tls: x509: certificate is valid for a\x1b]0;TLSPWN\x07.evil.example, not localhost",
		LastResponse: "\x1b]0;PWNED\x07\x1b[31mRED\x1b[0m\u009b2J", FirstAttemptAt: at, DeadLetteredAt: at})
	code, out, errOut := run(t, nil, "", "dlq", "show", "-c", cfg, dl.WebhookID)
	for _, want := range []string{
		`last error:       tls: x509: certificate is valid for a\x1b]0;TLSPWN\x07.evil.example, not localhost` + "\n",
		`last response:    \x1b]0;PWNED\x07\x1b[31mRED\x1b[0m\x9b2J` + "\n",
	} {
		if code != ExitOK || !strings.Contains(out, want) {
			t.Errorf("dlq show lacks %q: %d\n%q%s", want, code, out, errOut)
		}
	}
	if strings.ContainsAny(out, "\x1b\x07\u009b") {
		t.Errorf("dlq show printed control characters:\n%q", out)
	}
}

// putInsertDeadLetter stores dl as the dead letter of an insert into
// shop.a whose resume token's _data is data (dl's event, token and
// webhook-id are set from it) and returns it.
func putInsertDeadLetter(t *testing.T, st *store.Store, data string, dl dispatcher.DeadLetter) dispatcher.DeadLetter {
	t.Helper()
	tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: data}})
	ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "a"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(1)}}}})
	dl.Event, dl.Token, dl.WebhookID = ev, tok, dispatcher.WebhookID(dl.Trigger, tok)
	if err := st.PutDeadLetter(t.Context(), dl); err != nil {
		t.Fatal(err)
	}
	return dl
}
