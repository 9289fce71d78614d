package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// baseConfig is a configuration header pointing at uri with the test
// defaults: the test secret and fast retries.
func baseConfig(uri, url string) string {
	return fmt.Sprintf(`
mongodb: { uri: %q }
state: { database: chstate }
defaults:
  webhook: { url: %q, secret: %s, timeout: 2s }
  retry: { max_attempts: 4, initial_backoff: 10ms, max_backoff: 5s }
triggers:
`, uri, url, testSecret)
}

// TestEveryOperationType: a database-wide trigger delivers insert, update,
// replace, delete, rename, drop and dropDatabase, in stream order, each
// signed.
func TestEveryOperationType(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	cfg := writeFile(t, t.TempDir(), "ops.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: ops
    database: opsdb
    operations: [insert, update, replace, delete, rename, drop, dropDatabase]
    ordering: strict
`)
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	ctx := context.Background()
	db := client.Database("opsdb")
	c := db.Collection("c")
	// keep makes sure the database still exists when it is dropped; a
	// dropDatabase drops its collections first (one drop event each).
	steps := []struct {
		ops []string
		run func() error
	}{
		{[]string{"insert"}, func() error {
			_, err := db.Collection("keep").InsertOne(ctx, bson.D{{Key: "_id", Value: 0}})
			return err
		}},
		{[]string{"insert"}, func() error {
			_, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "v", Value: 1}})
			return err
		}},
		{[]string{"update"}, func() error {
			_, err := c.UpdateOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "$set", Value: bson.D{{Key: "v", Value: 2}}}})
			return err
		}},
		{[]string{"replace"}, func() error {
			_, err := c.ReplaceOne(ctx, bson.D{{Key: "_id", Value: 1}}, bson.D{{Key: "v", Value: 3}})
			return err
		}},
		{[]string{"delete"}, func() error { _, err := c.DeleteOne(ctx, bson.D{{Key: "_id", Value: 1}}); return err }},
		{[]string{"rename"}, func() error {
			return client.Database("admin").RunCommand(ctx, bson.D{{Key: "renameCollection", Value: "opsdb.c"}, {Key: "to", Value: "opsdb.c2"}}).Err()
		}},
		{[]string{"drop"}, func() error { return db.Collection("c2").Drop(ctx) }},
		{[]string{"drop", "dropDatabase"}, func() error { return db.Drop(ctx) }},
	}
	var want []string
	for _, s := range steps {
		if err := s.run(); err != nil {
			t.Fatalf("%v: %v", s.ops, err)
		}
		want = append(want, s.ops...)
	}
	got := rc.waitFor(t, "every operation", func(ds []delivery) bool { return len(ds) >= len(want) })
	for i, op := range want {
		d := got[i]
		if got := lookup(d.Event, "operationType"); got != op {
			t.Errorf("delivery %d: operationType %v, want %s", i, got, op)
		}
		if d.SigErr != nil {
			t.Errorf("delivery %d (%s): %v", i, op, d.SigErr)
		}
		if ua := d.Header.Get("User-Agent"); ua != "changehook/e2e" {
			t.Errorf("User-Agent = %q", ua)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d deliveries, want %d", len(got), len(want))
	}
}

// TestMatchProjectPayload: match filters on the event, project shapes the
// delivered event, and a payload expression replaces the body.
func TestMatchProjectPayload(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	cfg := writeFile(t, t.TempDir(), "mpp.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: projected
    database: shop
    collection: stock
    operations: [insert]
    match: { fullDocument.qty: { $lt: 20 } }
    project: { _id: 1, operationType: 1, documentKey: 1, fullDocument.qty: 1 }
  - name: message
    database: shop
    collection: stock
    operations: [insert]
    match: { fullDocument.qty: { $lt: 20 } }
    webhook:
      payload:
        text: { $concat: ["Only ", { $toString: "$fullDocument.qty" }, " ", "$fullDocument.name", " left!"] }
`)
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	ctx := context.Background()
	c := client.Database("shop").Collection("stock")
	for _, d := range []bson.D{
		{{Key: "_id", Value: "plenty"}, {Key: "name", Value: "figs"}, {Key: "qty", Value: 50}, {Key: "cost", Value: 3}},
		{{Key: "_id", Value: "few"}, {Key: "name", Value: "pears"}, {Key: "qty", Value: 5}, {Key: "cost", Value: 2}},
	} {
		if _, err := c.InsertOne(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	rc.waitFor(t, "both triggers", func(ds []delivery) bool { return len(ds) >= 2 })
	// The unmatched insert must not arrive: a marker insert that matches
	// both triggers comes after it in the stream.
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "marker"}, {Key: "name", Value: "kiwis"}, {Key: "qty", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "markers", func(ds []delivery) bool { return len(ds) >= 4 })
	for _, d := range got {
		if d.SigErr != nil {
			t.Errorf("%s: %v", d.ID, d.SigErr)
		}
		switch trig := d.Header.Get("X-Changehook-Trigger"); trig {
		case "projected":
			var keys []string
			for _, e := range d.Event {
				keys = append(keys, e.Key)
			}
			// An inclusion $project keeps the event's own field order.
			if strings.Join(keys, ",") != "_id,operationType,fullDocument,documentKey" {
				t.Errorf("projected event fields = %v, want _id,operationType,fullDocument,documentKey", keys)
			}
			fd, _ := lookup(d.Event, "fullDocument").(bson.D)
			if len(fd) != 1 || fd[0].Key != "qty" {
				t.Errorf("projected fullDocument = %v, want only qty", fd)
			}
			if key, _ := lookup(d.Event, "documentKey").(bson.D); lookup(key, "_id") == "plenty" {
				t.Errorf("an unmatched event was delivered: %s", d.Body)
			}
		case "message":
			if s := string(d.Body); s != `{"text":"Only 5 pears left!"}` && s != `{"text":"Only 1 kiwis left!"}` {
				t.Errorf("payload body = %s", s)
			}
		default:
			t.Errorf("unexpected trigger %q", trig)
		}
	}
	if len(got) != 4 {
		t.Errorf("%d deliveries, want 4", len(got))
	}
}

// TestRetriesThenSuccess: 500, 429 with Retry-After: 1, a timeout, then
// 204 — one event, four attempts, the same webhook-id, each attempt signed
// anew, and the Retry-After wait honoured.
func TestRetriesThenSuccess(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	rc.setRespond(func(n int, _ delivery, w http.ResponseWriter, r *http.Request) int {
		switch n {
		case 0:
			return http.StatusInternalServerError
		case 1:
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		case 2:
			select { // longer than webhook.timeout: the client gives up first
			case <-r.Context().Done():
			case <-time.After(waitTimeout):
			}
			return 0
		}
		return http.StatusNoContent
	})
	cfg := writeFile(t, t.TempDir(), "retry.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: retry
    database: e2e
    collection: r
    operations: [insert]
    webhook: { timeout: 300ms }
    retry: { max_attempts: 5, initial_backoff: 10ms, max_backoff: 5s }
`)
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	if _, err := client.Database("e2e").Collection("r").InsertOne(context.Background(), bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "4 attempts", func(ds []delivery) bool { return len(ds) >= 4 })
	for i, d := range got {
		if d.ID != got[0].ID {
			t.Errorf("attempt %d webhook-id %s, want %s on every retry", i, d.ID, got[0].ID)
		}
		if d.SigErr != nil {
			t.Errorf("attempt %d: %v", i, d.SigErr)
		}
	}
	if gap := got[2].At.Sub(got[1].At); gap < 900*time.Millisecond {
		t.Errorf("retry after 429 + Retry-After: 1 came after %s, want about 1s", gap)
	}
	body := r.waitAdmin("/api/triggers", func(_ int, body []byte) bool {
		return apiTriggers(t, body)["retry"].Deliveries["delivered"] == 1
	})
	if !strings.Contains(string(body), `"rate_limited": 1`) || !strings.Contains(string(body), `"timeout": 1`) || !strings.Contains(string(body), `"server_error": 1`) {
		t.Errorf("/api/triggers attempts by reason missing: %s", body)
	}
	_, metrics := r.get("/metrics")
	for _, m := range []string{`changehook_deliveries_total{outcome="delivered",trigger="retry"} 1`, "changehook_delivery_duration_seconds_bucket", "go_goroutines", "process_"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if len(rc.deliveries()) != 4 {
		t.Errorf("%d requests, want 4", len(rc.deliveries()))
	}
}

// TestDeadLetterAndReplay: a 400 dead-letters the event at once, the
// trigger moves on, `dlq replay` delivers it with the same webhook-id and
// deletes it; `dlq purge` needs --yes.
func TestDeadLetterAndReplay(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	reject := func(_ int, d delivery, _ http.ResponseWriter, _ *http.Request) int {
		if key, _ := lookup(d.Event, "documentKey").(bson.D); strings.HasPrefix(fmt.Sprint(lookup(key, "_id")), "bad") {
			return http.StatusBadRequest
		}
		return http.StatusNoContent
	}
	rc.setRespond(reject)
	cfg := writeFile(t, t.TempDir(), "dlq.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: dlq
    database: e2e
    collection: d
    operations: [insert]
    ordering: strict
`)
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	ctx := context.Background()
	c := client.Database("e2e").Collection("d")
	for _, id := range []string{"good1", "bad1", "good2"} {
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			t.Fatal(err)
		}
	}
	got := rc.waitFor(t, "good2 after the dead letter", func(ds []delivery) bool { return hasDoc(ds, "dlq", "good2") })
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3 (a 400 is not retried)", len(got))
	}
	badID := got[1].ID
	r.waitAdmin("/api/triggers", func(_ int, body []byte) bool { return apiTriggers(t, body)["dlq"].Deliveries["dead_lettered"] == 1 })

	code, out, errOut := runCLI(t, "dlq", "list", "-c", cfg)
	if code != 0 || !strings.Contains(out, badID) || !strings.Contains(out, "400") || !strings.Contains(out, "client_error") {
		t.Fatalf("dlq list = %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "dlq", "show", "-c", cfg, badID)
	if code != 0 || !strings.Contains(out, `"bad1"`) || !strings.Contains(out, "attempts:         1") {
		t.Errorf("dlq show = %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "dlq", "replay", "-c", cfg, badID)
	if code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "HTTP 400") {
		t.Errorf("dlq replay against a rejecting endpoint = %d\n%s", code, out)
	}
	rc.setRespond(nil)
	code, out, errOut = runCLI(t, "dlq", "replay", "-c", cfg, badID)
	if code != 0 || !strings.Contains(out, "delivered: HTTP 204") {
		t.Fatalf("dlq replay = %d\n%s%s", code, out, errOut)
	}
	last := rc.deliveries()[len(rc.deliveries())-1]
	if last.ID != badID || last.SigErr != nil {
		t.Errorf("replayed delivery id %s (sig %v), want %s, signed", last.ID, last.SigErr, badID)
	}
	if code, out, _ = runCLI(t, "dlq", "list", "-c", cfg); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Errorf("dlq list after replay = %d\n%s", code, out)
	}

	rc.setRespond(reject)
	if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: "bad2"}}); err != nil {
		t.Fatal(err)
	}
	r.waitAdmin("/api/triggers", func(_ int, body []byte) bool { return apiTriggers(t, body)["dlq"].Deliveries["dead_lettered"] == 2 })
	if code, out, _ = runCLI(t, "dlq", "replay", "-c", cfg, "--all", "--trigger", "dlq"); code != 1 || !strings.Contains(out, "replayed 0 of 1; 1 left") {
		t.Errorf("dlq replay --all against a rejecting endpoint = %d\n%s", code, out)
	}
	if code, out, _ = runCLI(t, "dlq", "purge", "-c", cfg, "--trigger", "dlq"); code != 0 || !strings.Contains(out, "would delete 1 dead letter") {
		t.Errorf("dlq purge without --yes = %d\n%s", code, out)
	}
	if code, out, _ = runCLI(t, "dlq", "purge", "-c", cfg, "--trigger", "dlq", "--yes"); code != 0 || !strings.Contains(out, "deleted 1 dead letter") {
		t.Errorf("dlq purge --yes = %d\n%s", code, out)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// TestOrderingModes checks each ordering guarantee on the receiver side on a
// backlog of updates to a few documents.
func TestOrderingModes(t *testing.T) {
	for _, tc := range []struct {
		ordering     string
		globalOrder  bool // every event in stream order
		perDocOrder  bool
		wantParallel bool
	}{
		{"strict", true, true, false},
		{"per_document", false, true, true},
		{"none", false, false, true},
	} {
		t.Run(tc.ordering, func(t *testing.T) {
			t.Parallel()
			srv, client := devdbtest.StartWith(t, devdb.Options{})
			rc := newReceiver(t)
			// The endpoint holds every request until all writes are done, so
			// the runner has a backlog and every mode may use its parallelism.
			release := make(chan struct{})
			rc.setRespond(func(_ int, _ delivery, _ http.ResponseWriter, r *http.Request) int {
				select {
				case <-release:
				case <-r.Context().Done():
					return 0
				}
				return http.StatusNoContent
			})
			cfg := writeFile(t, t.TempDir(), "o.yaml", baseConfig(srv.URI(), rc.URL())+fmt.Sprintf(`
  - name: o
    database: e2e
    collection: o
    operations: [insert, update]
    ordering: %s
    concurrency: 8
    webhook: { timeout: 20s }
`, tc.ordering))
			r := startRunner(t, runArgs(cfg)...)
			r.waitReady()
			ctx := context.Background()
			c := client.Database("e2e").Collection("o")
			const docs, rounds = 6, 8
			for i := range docs * rounds {
				doc, seq := fmt.Sprintf("d%d", i%docs), i/docs
				var err error
				if seq == 0 {
					_, err = c.InsertOne(ctx, bson.D{{Key: "_id", Value: doc}, {Key: "seq", Value: 0}})
				} else {
					_, err = c.UpdateOne(ctx, bson.D{{Key: "_id", Value: doc}}, bson.D{{Key: "$set", Value: bson.D{{Key: "seq", Value: seq}}}})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if tc.wantParallel {
				rc.waitInflight(t, 2)
			}
			close(release)
			got := rc.waitFor(t, "every event", func(ds []delivery) bool { return len(distinct(ds)) >= docs*rounds })
			if code := r.stop(); code != 0 {
				t.Errorf("exit code %d", code)
			}
			last := map[string]int{}
			prevTok := ""
			globalOK, perDocOK := true, true
			for _, d := range got {
				if d.SigErr != nil {
					t.Fatalf("%s: %v", d.ID, d.SigErr)
				}
				doc, seq := docSeq(t, d)
				if l, ok := last[doc]; ok && seq <= l {
					perDocOK = false
				}
				last[doc] = seq
				if d.Token() <= prevTok {
					globalOK = false
				}
				prevTok = d.Token()
			}
			if tc.globalOrder && !globalOK {
				t.Errorf("%s: events not delivered in stream order", tc.ordering)
			}
			if tc.perDocOrder && !perDocOK {
				t.Errorf("%s: per-document order broken", tc.ordering)
			}
			rc.mu.Lock()
			maxIn := rc.maxIn
			rc.mu.Unlock()
			if tc.wantParallel && maxIn < 2 {
				t.Errorf("%s: at most %d request in flight, want parallel deliveries", tc.ordering, maxIn)
			}
			if !tc.wantParallel && maxIn != 1 {
				t.Errorf("%s: %d requests in flight at once, want 1", tc.ordering, maxIn)
			}
		})
	}
}
