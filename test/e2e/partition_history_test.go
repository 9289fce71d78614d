package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// partitionHistoryConfig declares trigger "ph" on e2e.ph (inserts) in four
// partitions, with the delivery history on.
func partitionHistoryConfig(uri, url string) string {
	return fmt.Sprintf(`
mongodb: { uri: %q }
state: { database: chstate }
history: { retention: 1h, max_records: 10000 }
defaults:
  operations: [insert]
  webhook: { url: %q, secret: %s, timeout: 2s }
  retry: { max_attempts: 5, initial_backoff: 10ms, max_backoff: 50ms }
triggers:
  - name: ph
    database: e2e
    collection: ph
    ordering: per_document
    partitions: %d
`, uri, url, testSecret, partsN)
}

// docOf returns the _id of the document a delivery is about.
func docOf(d delivery) int32 {
	key, _ := lookup(d.Event, "documentKey").(bson.D)
	id, _ := lookup(key, "_id").(int32)
	return id
}

// TestPartitionedTriggerHistory: a trigger of four partitions with the
// history on records every attempt of every partition — the scripted
// 500, 500, 200 of the even documents and the single 200 of the odd ones —
// each with its partition's key (p<i>of4, the partition the server-side
// filter gives the document), the admin API and `changehook history
// --trigger` list them all, and the filters by document key and by
// webhook-id return exactly that document's records, from its partition.
func TestPartitionedTriggerHistory(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	var mu sync.Mutex
	seen := map[int32]int{} // requests per document
	rc.setRespond(func(_ int, d delivery, _ http.ResponseWriter, _ *http.Request) int {
		id := docOf(d)
		mu.Lock()
		n := seen[id]
		seen[id]++
		mu.Unlock()
		if id%2 == 0 && n < 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	// Documents 0..11 fall into every partition (checked below).
	const docs = 12
	parts := map[int]bool{}
	for id := range int32(docs) {
		parts[partitionOfID(id, partsN)] = true
	}
	if len(parts) != partsN {
		t.Fatalf("documents 0..%d cover partitions %v only; pick other ids", docs-1, parts)
	}
	cfg := writeFile(t, t.TempDir(), "ph.yaml", partitionHistoryConfig(srv.URI(), rc.URL()))
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	insertIDs(t, client.Database("e2e").Collection("ph"), 0, docs-1)

	wantAttempts := func(id int32) int {
		if id%2 == 0 {
			return 3
		}
		return 1
	}
	total := 0
	for id := range int32(docs) {
		total += wantAttempts(id)
	}
	got := rc.waitFor(t, "every attempt", func(ds []delivery) bool { return len(ds) >= total })
	webhookOf := map[int32]string{}
	for _, d := range got {
		webhookOf[docOf(d)] = d.ID
	}

	// check verifies the records of the documents in ids: each attempt of
	// each document once, numbered 1..n, failed but the last, under the
	// document's partition.
	check := func(where string, recs []apiAttempt, ids ...int32) {
		t.Helper()
		byDoc := map[int32][]apiAttempt{}
		for _, a := range recs {
			var key struct {
				ID int32 `json:"_id"`
			}
			if err := json.Unmarshal(a.DocumentKey, &key); err != nil || a.Trigger != "ph" || a.Kind != "delivery" {
				t.Errorf("%s: unexpected record %+v", where, a)
				continue
			}
			byDoc[key.ID] = append(byDoc[key.ID], a)
		}
		if len(byDoc) != len(ids) {
			t.Errorf("%s: records of %d documents, want %d", where, len(byDoc), len(ids))
		}
		for _, id := range ids {
			as := byDoc[id]
			sort.Slice(as, func(i, j int) bool { return as[i].Attempt < as[j].Attempt })
			want := fmt.Sprintf("p%dof%d", partitionOfID(id, partsN), partsN)
			if len(as) != wantAttempts(id) {
				t.Errorf("%s: document %d has %d records, want %d: %+v", where, id, len(as), wantAttempts(id), as)
				continue
			}
			for i, a := range as {
				last := i == len(as)-1
				if a.Partition != want || a.Attempt != i+1 || a.Failed == last || a.WebhookID != webhookOf[id] ||
					(last && a.Status != http.StatusOK) || (!last && a.Status != http.StatusInternalServerError) {
					t.Errorf("%s: document %d record %d = partition %q attempt %d status %d failed %v webhook %s; want %s, attempt %d, webhook %s",
						where, id, i, a.Partition, a.Attempt, a.Status, a.Failed, a.WebhookID, want, i+1, webhookOf[id])
				}
			}
		}
	}
	all := make([]int32, docs)
	for i := range all {
		all[i] = int32(i)
	}

	body := r.waitAdmin("/api/history?trigger=ph&limit=1000", func(code int, b []byte) bool {
		return code == http.StatusOK && len(apiHistory(t, b)) >= total
	})
	check("/api/history?trigger=ph", apiHistory(t, body), all...)

	code, out, errOut := runCLI(t, "history", "-c", cfg, "--trigger", "ph", "--limit", "1000", "--json")
	if code != 0 {
		t.Fatalf("history --trigger ph --json = %d\n%s%s", code, out, errOut)
	}
	check("history --trigger ph --json", jsonLines(t, out), all...)
	code, out, errOut = runCLI(t, "history", "-c", cfg, "--trigger", "ph", "--limit", "1000")
	if code != 0 || strings.Count(out, "\n") != total+1 {
		t.Fatalf("history --trigger ph = %d, %d lines, want a header and %d records\n%s%s", code, strings.Count(out, "\n"), total, out, errOut)
	}
	for id := range int32(docs) {
		// The table names each record's partition.
		want := fmt.Sprintf("ph/p%dof%d", partitionOfID(id, partsN), partsN)
		if n := countLines(out, webhookOf[id], want); n != wantAttempts(id) {
			t.Errorf("history table: %d lines of %s name %s, want %d\n%s", n, webhookOf[id], want, wantAttempts(id), out)
		}
	}

	// One partition's records, by its key.
	for p := range partsN {
		var ids []int32
		for id := range int32(docs) {
			if partitionOfID(id, partsN) == p {
				ids = append(ids, id)
			}
		}
		key := fmt.Sprintf("ph/p%dof%d", p, partsN)
		_, b := r.get("/api/history?limit=1000&trigger=" + url.QueryEscape(key))
		check("/api/history?trigger="+key, apiHistory(t, b), ids...)
		code, out, errOut := runCLI(t, "history", "-c", cfg, "--trigger", key, "--limit", "1000", "--json")
		if code != 0 {
			t.Fatalf("history --trigger %s = %d\n%s%s", key, code, out, errOut)
		}
		check("history --trigger "+key+" --json", jsonLines(t, out), ids...)
	}

	for _, id := range []int32{0, 1, 2, 3} {
		key := fmt.Sprintf(`{"_id": %d}`, id)
		_, b := r.get("/api/history?document_key=" + url.QueryEscape(key))
		check("/api/history?document_key="+key, apiHistory(t, b), id)
		code, out, errOut := runCLI(t, "history", "-c", cfg, "--document-key", key, "--json")
		if code != 0 {
			t.Fatalf("history --document-key %s = %d\n%s%s", key, code, out, errOut)
		}
		check("history --document-key "+key, jsonLines(t, out), id)
		_, b = r.get("/api/history?trigger=ph&webhook_id=" + url.QueryEscape(webhookOf[id]))
		check("/api/history?webhook_id="+webhookOf[id], apiHistory(t, b), id)
		code, out, errOut = runCLI(t, "history", "-c", cfg, "--webhook-id", webhookOf[id], "--json")
		if code != 0 {
			t.Fatalf("history --webhook-id = %d\n%s%s", code, out, errOut)
		}
		check("history --webhook-id "+webhookOf[id], jsonLines(t, out), id)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// jsonLines reads `changehook history --json` output: one record a line.
func jsonLines(t *testing.T, out string) []apiAttempt {
	t.Helper()
	var recs []apiAttempt
	for _, l := range bytes.Split([]byte(strings.TrimSpace(out)), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var a apiAttempt
		if err := json.Unmarshal(l, &a); err != nil {
			t.Fatalf("history --json line %q: %v", l, err)
		}
		recs = append(recs, a)
	}
	return recs
}

// countLines counts the lines of s that contain every one of subs.
func countLines(s string, subs ...string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		ok := true
		for _, sub := range subs {
			ok = ok && strings.Contains(l, sub)
		}
		if ok {
			n++
		}
	}
	return n
}
