package cli

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
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
		{Kind: store.KindDelivery, Trigger: "orders", WebhookID: "batch_03", Attempt: 1, Status: 200, Events: 1, DocumentKey: key, LatencyMS: 2, At: at},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[1], `{"_id":7} (first of 100 events)`) || !strings.Contains(lines[1], "batch_01") ||
		!strings.Contains(lines[2], "payload_error: build payload: $concat only supports strings") ||
		!strings.Contains(lines[3], `{"_id":7} (a batch of 1 event)`) {
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

// TestRecordsOfUnknownTrigger: dlq list, replay and purge and history
// answer a --trigger that is neither in the configuration nor named by
// any record (a typo) as every other command does, with "did you mean"
// and exit 2; a configured trigger without records is simply empty, and
// a trigger removed from the configuration still lists the records it
// left, with a note.
func TestRecordsOfUnknownTrigger(t *testing.T) {
	srv, client := devdbtest.Start(t)
	ctx := t.Context()
	st := store.New(client, "state")
	tok, err := bson.Marshal(bson.D{{Key: "_data", Value: "82000000010000000129"}})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int32(1)}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := dispatcher.WebhookID("legacy", tok)
	if err := st.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: "legacy", WebhookID: id, Event: ev, Token: tok, Attempts: 1, LastStatus: 500}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.InsertAttempts(ctx, []store.AttemptRecord{{Kind: store.KindDelivery, Trigger: "legacy", WebhookID: id, Attempt: 1,
		Status: 500, Failed: true, Reason: "server_error", At: time.Now().UTC()}}); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf(`
mongodb: { uri: %q }
state: { database: state }
triggers:
  - { name: orders, database: shop, collection: orders, webhook: { url: "http://127.0.0.1:1/o" } }
  - { name: quiet, database: shop, collection: quiet, webhook: { url: "http://127.0.0.1:1/q" } }
`, srv.URI()))
	unknown := func(what string) string {
		return fmt.Sprintf(`unknown trigger "order": it is not in %s, and no %s name it (did you mean "orders"?); triggers: orders, quiet`, cfg, what)
	}
	for _, tc := range []struct {
		args             []string
		code             int
		wantOut, wantErr string
	}{
		{[]string{"dlq", "list", "--trigger", "order"}, ExitUsage, "", unknown("dead letters")},
		{[]string{"dlq", "replay", "--all", "--trigger", "order"}, ExitUsage, "", unknown("dead letters")},
		{[]string{"dlq", "purge", "--trigger", "order"}, ExitUsage, "", unknown("dead letters")},
		{[]string{"history", "--trigger", "order"}, ExitUsage, "", unknown("history records")},
		{[]string{"dlq", "list", "--trigger", "orders"}, ExitOK, "no dead letters", ""},
		{[]string{"history", "--trigger", "orders"}, ExitOK, "no history records match", ""},
		{[]string{"dlq", "list", "--trigger", "legacy"}, ExitOK, id + "  legacy",
			fmt.Sprintf(`note: trigger "legacy" is not in %s (removed?), but it still has dead letters`, cfg)},
		{[]string{"history", "--trigger", "legacy"}, ExitOK, "server_error",
			fmt.Sprintf(`note: trigger "legacy" is not in %s (removed?), but it still has history records`, cfg)},
		{[]string{"dlq", "purge", "--trigger", "legacy"}, ExitOK, "would delete 1 dead letter of trigger legacy", "still has dead letters"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := run(t, nil, "", append(tc.args, "-c", cfg)...)
			if code != tc.code || !strings.Contains(out, tc.wantOut) || !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("exit %d, want %d; stdout want %q, stderr want %q\nstdout:\n%s\nstderr:\n%s", code, tc.code, tc.wantOut, tc.wantErr, out, errOut)
			}
		})
	}
}
