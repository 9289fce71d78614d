package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/store"
)

// historyRunConfig declares one trigger "h" on e2e.h (inserts) with the
// given history section.
func historyRunConfig(uri, url, history string) string {
	return fmt.Sprintf(`
mongodb: { uri: %q }
state: { database: chstate }
history: %s
defaults:
  operations: [insert]
  webhook: { url: %q, secret: %s, timeout: 2s }
  retry: { max_attempts: 5, initial_backoff: 10ms, max_backoff: 50ms }
triggers:
  - { name: h, database: e2e, collection: h }
`, uri, history, url, testSecret)
}

// apiAttempt is one record of GET /api/history.
type apiAttempt struct {
	Kind        string          `json:"kind"`
	Trigger     string          `json:"trigger"`
	Partition   string          `json:"partition"`
	WebhookID   string          `json:"webhook_id"`
	DocumentKey json.RawMessage `json:"document_key"`
	Operation   string          `json:"operation"`
	Events      int             `json:"events"`
	Attempt     int             `json:"attempt"`
	Failed      bool            `json:"failed"`
	Status      int             `json:"status"`
	Reason      string          `json:"reason"`
	Error       string          `json:"error"`
	LatencyMS   float64         `json:"latency_ms"`
	Response    string          `json:"response"`
	StartedAt   time.Time       `json:"started_at"`
	At          time.Time       `json:"at"`
	SkippedFrom time.Time       `json:"skipped_from"`
	SkippedTo   time.Time       `json:"skipped_to"`
	By          string          `json:"by"`
}

func apiHistory(t *testing.T, body []byte) []apiAttempt {
	t.Helper()
	var resp struct {
		Attempts []apiAttempt `json:"attempts"`
		Next     string       `json:"next"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("/api/history: %v: %s", err, body)
	}
	return resp.Attempts
}

// TestHistoryRecordsEveryAttempt: an endpoint answering 500, 500, 200 leaves
// three records of the one event — newest first in the API, each with its
// number, status, reason, error, latency, response snippet, document key
// and operation — and the CLI filters them by failure, document key and
// webhook-id.
func TestHistoryRecordsEveryAttempt(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	rc.setRespond(func(n int, _ delivery, w http.ResponseWriter, _ *http.Request) int {
		if n < 2 {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "boom %d %s", n, strings.Repeat("x", 2000))
			return 0 // answered here
		}
		return http.StatusOK
	})
	cfg := writeFile(t, t.TempDir(), "h.yaml", historyRunConfig(srv.URI(), rc.URL(), "{ retention: 1h, max_records: 1000 }"))
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	if _, err := client.Database("e2e").Collection("h").InsertOne(context.Background(), bson.D{{Key: "_id", Value: 7}}); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "three attempts", func(ds []delivery) bool { return len(ds) >= 3 })
	id := got[0].ID

	body := r.waitAdmin("/api/history?trigger=h", func(code int, b []byte) bool {
		return code == http.StatusOK && len(apiHistory(t, b)) >= 3
	})
	recs := apiHistory(t, body)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3: %s", len(recs), body)
	}
	want := []struct {
		attempt, status int
		failed          bool
		reason          string
	}{{3, 200, false, ""}, {2, 500, true, "server_error"}, {1, 500, true, "server_error"}}
	for i, w := range want {
		a := recs[i]
		var key bytes.Buffer
		_ = json.Compact(&key, a.DocumentKey)
		if a.Kind != "delivery" || a.Trigger != "h" || a.WebhookID != id || a.Operation != "insert" || key.String() != `{"_id":7}` ||
			a.Attempt != w.attempt || a.Status != w.status || a.Failed != w.failed || a.Reason != w.reason ||
			a.LatencyMS < 0 || a.StartedAt.IsZero() || a.At.Before(a.StartedAt) {
			t.Errorf("record %d = %+v, want attempt %d status %d failed %v reason %q of %s", i, a, w.attempt, w.status, w.failed, w.reason, id)
		}
		if w.failed && (!strings.Contains(a.Error, "500") || !strings.HasPrefix(a.Response, fmt.Sprintf("boom %d x", w.attempt-1)) || len(a.Response) > 1024) {
			t.Errorf("record %d: error %q, response %d bytes %.20q; want the 500 and a snippet of at most 1 KiB", i, a.Error, len(a.Response), a.Response)
		}
		if i > 0 && recs[i-1].At.Before(a.At) {
			t.Errorf("records not newest first: %v then %v", recs[i-1].At, a.At)
		}
	}

	code, out, errOut := runCLI(t, "history", "-c", cfg, "--trigger", "h", "--failed")
	if code != 0 || strings.Count(out, "server_error") != 2 || strings.Contains(out, "  ok  ") || !strings.Contains(out, id) {
		t.Errorf("history --failed = %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "history", "-c", cfg, "--document-key", `{"_id": 7}`, "--json")
	if code != 0 || strings.Count(out, "\n") != 3 || strings.Count(out, `"document_key":{"_id":7}`) != 3 {
		t.Errorf("history --document-key --json = %d\n%s%s", code, out, errOut)
	}
	if code, out, _ = runCLI(t, "history", "-c", cfg, "--document-key", `{"_id": 8}`); code != 0 || !strings.Contains(out, "no history records match") {
		t.Errorf("history for another document = %d\n%s", code, out)
	}
	code, out, errOut = runCLI(t, "history", "-c", cfg, "--webhook-id", id, "--limit", "2")
	if code != 0 || strings.Count(out, id) != 2 || !strings.Contains(errOut, "more records: changehook history -c "+cfg+" --webhook-id "+id+" --limit 2 --after ") {
		t.Errorf("history --webhook-id --limit 2 = %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut = runCLI(t, "history", "-c", cfg, "--since", "yesterday"); code != 2 || !strings.Contains(errOut, "--since") {
		t.Errorf("history --since yesterday = %d %s, want a usage error", code, errOut)
	}
	if code, b := r.get("/api/history?limit=0"); code != http.StatusBadRequest || !strings.Contains(string(b), `"error"`) {
		t.Errorf("/api/history?limit=0 = %d %s, want 400", code, b)
	}
	_, metrics := r.get("/metrics")
	if !regexp.MustCompile(`(?m)^changehook_history_written_total [3-9]`).Match(metrics) ||
		!strings.Contains(string(metrics), "changehook_history_dropped_total 0") {
		t.Errorf("history metrics missing or wrong:\n%s", grepLines(string(metrics), "changehook_history"))
	}
	if strings.Contains(string(body), testSecret) || strings.Contains(r.logText(), testSecret) {
		t.Error("the signing secret appears in the history or the logs")
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestHistoryRetentionAndCap: at start the writer deletes records older than
// history.retention and the oldest beyond history.max_records; the TTL index
// carries the retention; new attempts past the cap push the oldest out.
func TestHistoryRetentionAndCap(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	ctx := context.Background()
	rc := newReceiver(t)
	st := store.New(client, "chstate")
	now := time.Now()
	var seed []store.AttemptRecord
	for i := range 150 { // past the retention
		seed = append(seed, store.AttemptRecord{Kind: store.KindDelivery, Trigger: "expired", WebhookID: fmt.Sprint("old", i), At: now.Add(-2 * time.Hour)})
	}
	for i := range 150 { // within it, 50 more than the cap
		seed = append(seed, store.AttemptRecord{Kind: store.KindDelivery, Trigger: "kept", WebhookID: fmt.Sprint("k", i),
			At: now.Add(-30*time.Minute + time.Duration(i)*time.Second)})
	}
	if _, err := st.InsertAttempts(ctx, seed); err != nil {
		t.Fatal(err)
	}
	cfg := writeFile(t, t.TempDir(), "h.yaml", historyRunConfig(srv.URI(), rc.URL(), "{ retention: 1h, max_records: 100 }"))
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	count := func(f store.AttemptFilter) int64 {
		n, err := st.CountAttempts(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitCount := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(waitTimeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %d records (%d expired, %d kept, %d of h)\n%s", what,
					count(store.AttemptFilter{}), count(store.AttemptFilter{Trigger: "expired"}), count(store.AttemptFilter{Trigger: "kept"}),
					count(store.AttemptFilter{Trigger: "h"}), r.logText())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCount("the start-up trim", func() bool { return count(store.AttemptFilter{}) == 100 })
	if n := count(store.AttemptFilter{Trigger: "expired"}); n != 0 {
		t.Fatalf("%d records older than the retention left", n)
	}
	// The newest 100 of the kept ones: k50..k149.
	if n := count(store.AttemptFilter{WebhookID: "k49"}) + count(store.AttemptFilter{WebhookID: "k0"}); n != 0 {
		t.Errorf("the oldest kept records were not the ones deleted")
	}
	specs, err := st.AttemptsCollection().Indexes().ListSpecifications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ttl := int32(-1)
	for _, sp := range specs {
		if sp.Name == store.AttemptsTTLIndex && sp.ExpireAfterSeconds != nil {
			ttl = *sp.ExpireAfterSeconds
		}
	}
	if ttl != 3600 {
		t.Errorf("TTL index expireAfterSeconds = %d, want 3600 (retention 1h)", ttl)
	}

	// Ten new attempts (a tenth of the cap) trigger a trim: the total
	// stays 100 and the new records are among them.
	for i := range 10 {
		if _, err := client.Database("e2e").Collection("h").InsertOne(ctx, bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
	rc.waitFor(t, "ten deliveries", func(ds []delivery) bool { return len(ds) >= 10 })
	waitCount("the new records, trimmed to the cap", func() bool {
		return count(store.AttemptFilter{Trigger: "h"}) == 10 && count(store.AttemptFilter{}) == 100
	})
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// TestReplayAndSkipsRecordedInHistory: a failing `dlq replay` records its
// attempt (kind replay, by cli) and updates the dead letter's attempts and
// last status; so does a replay through the admin API (by api); a
// successful one is recorded too; `resume --from now`
// records the range it skipped, covering the changes written meanwhile.
func TestReplayAndSkipsRecordedInHistory(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	var accept atomic.Bool
	rc.setRespond(func(int, delivery, http.ResponseWriter, *http.Request) int {
		if !accept.Load() {
			return http.StatusBadRequest
		}
		return http.StatusNoContent
	})
	cfg := writeFile(t, t.TempDir(), "h.yaml", historyRunConfig(srv.URI(), rc.URL(), "{ retention: 1h }"))
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	coll := client.Database("e2e").Collection("h")
	insertIDs(t, coll, 1, 1)
	got := rc.waitFor(t, "the rejected delivery", func(ds []delivery) bool { return len(ds) >= 1 })
	id := got[0].ID
	r.waitAdmin("/api/triggers", func(_ int, b []byte) bool { return apiTriggers(t, b)["h"].Deliveries["dead_lettered"] == 1 })

	if code, out, errOut := runCLI(t, "dlq", "replay", "-c", cfg, id); code != 1 || !strings.Contains(out, "HTTP 400") {
		t.Fatalf("failing replay = %d\n%s%s", code, out, errOut)
	}
	code, out, _ := runCLI(t, "dlq", "show", "-c", cfg, id)
	if code != 0 || !strings.Contains(out, "attempts:         2") || !strings.Contains(out, "last status:      400") {
		t.Errorf("dlq show after a failed replay = %d\n%s", code, out)
	}
	// A replay through the admin API is recorded by the serving process's
	// history writer, and updates the dead letter too.
	code, b := r.post("/api/deadletters/replay", `{"ids": ["`+id+`"]}`)
	var replay struct {
		Replayed, Failed int
		Done             bool
	}
	if err := json.Unmarshal(b, &replay); code != http.StatusOK || err != nil || replay.Failed != 1 || replay.Replayed != 0 || !replay.Done {
		t.Fatalf("POST /api/deadletters/replay = %d %s", code, b)
	}
	code, out, _ = runCLI(t, "dlq", "show", "-c", cfg, id)
	if code != 0 || !strings.Contains(out, "attempts:         3") {
		t.Errorf("dlq show after a failed API replay = %d\n%s", code, out)
	}
	accept.Store(true)
	if code, out, errOut := runCLI(t, "dlq", "replay", "-c", cfg, id); code != 0 {
		t.Fatalf("replay = %d\n%s%s", code, out, errOut)
	}
	body := r.waitAdmin("/api/history?webhook_id="+id, func(_ int, b []byte) bool { return len(apiHistory(t, b)) >= 4 })
	recs := apiHistory(t, body)
	if len(recs) != 4 || recs[0].Kind != "replay" || recs[0].Status != 204 || recs[0].By != "cli" || recs[0].Failed ||
		recs[1].Kind != "replay" || recs[1].Status != 400 || recs[1].By != "api" || !recs[1].Failed ||
		recs[2].Kind != "replay" || recs[2].Status != 400 || recs[2].By != "cli" || !recs[2].Failed ||
		recs[3].Kind != "delivery" || recs[3].Status != 400 {
		t.Errorf("history of %s:\n%s\nwant replay 204 (cli), replay 400 (api), replay 400 (cli), delivery 400", id, body)
	}

	// resume --from now: the skipped range is recorded and covers the
	// changes written during the pause.
	if code, out, errOut := runCLI(t, "pause", "-c", cfg, "h"); code != 0 {
		t.Fatalf("pause: %d %q %q", code, out, errOut)
	}
	before := time.Now().Truncate(time.Second)
	insertIDs(t, coll, 2, 3)
	after := time.Now()
	if code, out, errOut := runCLI(t, "resume", "-c", cfg, "h", "--from", "now"); code != 0 {
		t.Fatalf("resume --from now: %d %q %q", code, out, errOut)
	}
	body = r.waitAdmin("/api/history?trigger=h&limit=1", func(_ int, b []byte) bool {
		rs := apiHistory(t, b)
		return len(rs) == 1 && rs[0].Kind == "skipped"
	})
	sk := apiHistory(t, body)[0]
	if sk.SkippedFrom.After(before) || sk.SkippedTo.Before(after.Truncate(time.Second)) || !strings.Contains(sk.Reason, "resumed from now") {
		t.Errorf("skipped record %+v, want a range from at most %v to at least %v", sk, before, after.Truncate(time.Second))
	}
	code, out, _ = runCLI(t, "history", "-c", cfg, "--trigger", "h")
	if code != 0 || !strings.Contains(out, "not delivered") {
		t.Errorf("history shows the skipped range = %d\n%s", code, out)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}
