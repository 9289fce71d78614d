package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestPrintHistory: the table shows each kind of record's result, and a
// batched request's event count next to its first event's key.
func TestPrintHistory(t *testing.T) {
	key, err := bson.Marshal(bson.D{{Key: "_id", Value: int32(7)}})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	var out bytes.Buffer
	err = printHistory(Env{Stdout: &out}, []store.AttemptRecord{
		{Kind: store.KindDelivery, Trigger: "orders", WebhookID: "batch_01", Attempt: 1, Status: 200, Events: 100, DocumentKey: key, LatencyMS: 2, At: at},
		{Kind: store.KindDelivery, Trigger: "orders", WebhookID: "msg_2", Attempt: 1, Failed: true, Reason: "payload_error",
			Error: "build payload: $concat only supports strings", DocumentKey: key, At: at},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], `{"_id":7} (first of 100 events)`) || !strings.Contains(lines[1], "batch_01") ||
		!strings.Contains(lines[2], "payload_error: build payload: $concat only supports strings") {
		t.Fatalf("table:\n%s", out.String())
	}
}
