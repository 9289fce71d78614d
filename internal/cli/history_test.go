package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
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

// TestReplayObserverPartition: a dead-letter replay of a partitioned
// trigger records each attempt with the partition that delivers its event
// (the one the partition's pipeline selects), and of a trigger that is not
// partitioned without one.
func TestReplayObserverPartition(t *testing.T) {
	type call struct{ trigger, partition, kind, by, webhookID string }
	var calls []call
	factory := func(trigger, partition, kind, by string) func(dispatcher.Attempt) {
		return func(a dispatcher.Attempt) { calls = append(calls, call{trigger, partition, kind, by, a.WebhookID}) }
	}
	tr := &triggers.Trigger{Name: "orders", Partitions: 4}
	obs := replayObserver(tr, "cli", factory)
	want := map[string]string{}
	for i := range 40 {
		key, err := bson.Marshal(bson.D{{Key: "_id", Value: int32(i)}})
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprint("msg_", i)
		p, _ := tr.PartitionOf(key)
		want[id] = fmt.Sprintf("p%dof4", p)
		obs(dispatcher.Attempt{WebhookID: id, DocumentKey: key})
	}
	obs(dispatcher.Attempt{WebhookID: "no key"})
	want["no key"] = "p0of4"
	seen := map[string]bool{}
	for _, c := range calls {
		if c.trigger != "orders" || c.kind != store.KindReplay || c.by != "cli" || c.partition != want[c.webhookID] {
			t.Fatalf("attempt %s recorded as %+v, want partition %s", c.webhookID, c, want[c.webhookID])
		}
		seen[c.partition] = true
	}
	if len(calls) != 41 || len(seen) != 4 {
		t.Fatalf("%d attempts recorded over partitions %v", len(calls), seen)
	}
	calls = nil
	replayObserver(&triggers.Trigger{Name: "users"}, "api", factory)(dispatcher.Attempt{WebhookID: "w"})
	if len(calls) != 1 || calls[0].partition != "" || calls[0].by != "api" {
		t.Fatalf("unpartitioned replay recorded as %+v", calls)
	}
}
