package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// TestBatchedDelivery runs the real binary with a batched trigger: events
// arrive as signed JSON arrays of at most max_events, per document in
// order; a refused batch is dead-lettered as its events, which `dlq list`
// shows one by one and `dlq replay` delivers alone, in a batch of one (the
// shape of every request of the trigger).
func TestBatchedDelivery(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	var mu sync.Mutex
	refused := map[string]bool{} // webhook-ids of the events of refused batches
	refusedBatch := ""
	rc.setRespond(func(_ int, d delivery, _ http.ResponseWriter, _ *http.Request) int {
		if d.Batch != "" && bytes.Contains(d.Body, []byte(`"_id":"bad`)) {
			mu.Lock()
			defer mu.Unlock()
			refusedBatch = d.Batch
			for _, e := range batchDeliveries(d) {
				refused[e.ID] = true
			}
			return http.StatusBadRequest
		}
		return http.StatusNoContent
	})
	cfg := batchedConfig(t, srv.URI(), rc.URL(), "{ max_events: 10, max_wait: 20ms }")
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	ctx := context.Background()
	c := client.Database("e2e").Collection("b")
	const docs, rounds = 20, 5
	writeRounds(t, c, docs, rounds)
	got := rc.waitFor(t, "every write", func(ds []delivery) bool { return len(distinct(ds)) >= docs*rounds })
	batches := map[string]bool{}
	last := map[string]int{}
	for _, d := range got {
		if d.SigErr != nil {
			t.Fatalf("%s: %v", d.ID, d.SigErr)
		}
		if !strings.HasPrefix(d.Batch, "batch_") || d.Events < 1 || d.Events > 10 {
			t.Fatalf("delivery %s in request %q of %d events, want a batch of 1 to 10", d.ID, d.Batch, d.Events)
		}
		if ct := d.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		batches[d.Batch] = true
		doc, seq := docSeq(t, d)
		if prev, ok := last[doc]; ok && seq != prev+1 {
			t.Errorf("document %s: seq %d after %d (per-document order broken)", doc, seq, prev)
		}
		last[doc] = seq
	}
	if len(batches) >= docs*rounds {
		t.Errorf("%d requests for %d events: nothing was batched", len(batches), docs*rounds)
	}
	t.Logf("%d events in %d requests", len(got), len(batches))

	// A refused batch: each of its events becomes a dead letter.
	if _, err := c.InsertMany(ctx, []any{bson.D{{Key: "_id", Value: "bad1"}}, bson.D{{Key: "_id", Value: "x1"}}, bson.D{{Key: "_id", Value: "x2"}}}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "the new documents", func(ds []delivery) bool { return hasDoc(ds, "batched", "x2") && hasDoc(ds, "batched", "bad1") })
	mu.Lock()
	want := make([]string, 0, len(refused))
	for id := range refused {
		want = append(want, id)
	}
	batchID := refusedBatch
	mu.Unlock()
	sort.Strings(want)
	r.waitAdmin("/api/triggers", func(_ int, body []byte) bool {
		return apiTriggers(t, body)["batched"].Deliveries["dead_lettered"] == uint64(len(want))
	})
	code, out, errOut := runCLI(t, "dlq", "list", "-c", cfg)
	if code != 0 {
		t.Fatalf("dlq list = %d\n%s%s", code, out, errOut)
	}
	for _, id := range want {
		if !strings.Contains(out, id) {
			t.Errorf("dlq list lacks the refused batch's event %s:\n%s", id, out)
		}
	}
	if n := strings.Count(out, "client_error"); n != len(want) {
		t.Errorf("dlq list shows %d client_error dead letters, want %d (one per event of the refused batch):\n%s", n, len(want), out)
	}
	// The history: one record per request, with its event count.
	r.waitAdmin("/api/history?trigger=batched", func(code int, body []byte) bool {
		if code != http.StatusOK {
			return false
		}
		for _, a := range apiHistory(t, body) {
			if a.WebhookID == batchID && a.Failed && a.Status == http.StatusBadRequest && a.Events == len(want) {
				return true
			}
		}
		return false
	})
	var badID string
	for _, d := range rc.deliveries() {
		if key, _ := lookup(d.Event, "documentKey").(bson.D); lookup(key, "_id") == "bad1" {
			badID = d.ID
		}
	}
	rc.setRespond(nil)
	code, out, errOut = runCLI(t, "dlq", "replay", "-c", cfg, badID)
	if code != 0 || !strings.Contains(out, "delivered: HTTP 204") {
		t.Fatalf("dlq replay = %d\n%s%s", code, out, errOut)
	}
	ds := rc.deliveries()
	if replayed := ds[len(ds)-1]; replayed.ID != badID || replayed.Batch == "" || replayed.Events != 1 || replayed.SigErr != nil {
		t.Errorf("replay: delivery %s (batch %q of %d events, sig %v), want %s in a batch of one, signed",
			replayed.ID, replayed.Batch, replayed.Events, replayed.SigErr, badID)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// TestBatchTooLargeIsSplit runs the real binary against an endpoint that
// refuses bodies of more than a few events with 413, as a receiver behind a
// body-size limit does: the refused batches are sent again in halves until
// they fit, every event is accepted, in per-document order, nothing is
// dead-lettered, and the splits are counted.
func TestBatchTooLargeIsSplit(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	const fits = 3 // events per request the endpoint accepts
	rc.setRespond(func(_ int, d delivery, _ http.ResponseWriter, _ *http.Request) int {
		if d.Events > fits {
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusNoContent
	})
	cfg := batchedConfig(t, srv.URI(), rc.URL(), "{ max_events: 20, max_wait: 50ms }")
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	const docs, rounds = 10, 6
	writeRounds(t, client.Database("e2e").Collection("b"), docs, rounds)
	accepted := func(ds []delivery) []delivery {
		var ok []delivery
		for _, d := range ds {
			if d.Status == http.StatusNoContent {
				ok = append(ok, d)
			}
		}
		return ok
	}
	got := rc.waitFor(t, "every write accepted", func(ds []delivery) bool { return len(distinct(accepted(ds))) >= docs*rounds })
	refused := 0
	for _, d := range got {
		if d.Status == http.StatusRequestEntityTooLarge {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("no batch was refused: the test does not exercise splitting")
	}
	last := map[string]int{}
	for _, d := range accepted(got) {
		if d.SigErr != nil {
			t.Fatalf("%s: %v", d.ID, d.SigErr)
		}
		if d.Events > fits {
			t.Errorf("accepted a request of %d events", d.Events)
		}
		doc, seq := docSeq(t, d)
		if prev, ok := last[doc]; ok && seq != prev+1 {
			t.Errorf("document %s: seq %d after %d (per-document order broken)", doc, seq, prev)
		}
		last[doc] = seq
	}
	if n := len(accepted(got)); n != docs*rounds {
		t.Errorf("%d events accepted, want each of the %d once", n, docs*rounds)
	}
	_, metrics := r.get("/metrics")
	if !regexp.MustCompile(`changehook_batch_splits_total\{trigger="batched"\} [1-9]`).Match(metrics) {
		t.Errorf("changehook_batch_splits_total not counted:\n%s", grepLines(string(metrics), "changehook_batch_splits_total"))
	}
	st := apiTriggers(t, r.waitAdmin("/api/triggers", func(int, []byte) bool { return true }))["batched"]
	if dl := st.Deliveries["dead_lettered"]; dl != 0 {
		t.Errorf("%d events dead-lettered, want none", dl)
	}
	if st.BatchSplits == 0 {
		t.Error("/api/triggers shows no batch_splits")
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// writeRounds inserts docs documents d00, d01, … with seq 0 in one
// insertMany, then sets seq 1 to rounds-1 on each in turn, as fast as
// acknowledged: a burst that fills batches.
func writeRounds(t *testing.T, c *mongo.Collection, docs, rounds int) {
	t.Helper()
	ctx := context.Background()
	var all []any
	for i := range docs {
		all = append(all, bson.D{{Key: "_id", Value: fmt.Sprintf("d%02d", i)}, {Key: "seq", Value: 0}})
	}
	if _, err := c.InsertMany(ctx, all); err != nil {
		t.Fatal(err)
	}
	for seq := 1; seq < rounds; seq++ {
		for i := range docs {
			if _, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("d%02d", i)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "seq", Value: seq}}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// batchedConfig writes a configuration whose trigger "batched" delivers
// the inserts and updates of e2e.b to url, per document, 4 requests in
// flight, with the batch section batch (a YAML flow mapping).
func batchedConfig(t *testing.T, uri, url, batch string) string {
	t.Helper()
	return writeFile(t, t.TempDir(), "batch.yaml", baseConfig(uri, url)+`
  - name: batched
    database: e2e
    collection: b
    operations: [insert, update]
    ordering: per_document
    concurrency: 4
    batch: `+batch+"\n")
}
