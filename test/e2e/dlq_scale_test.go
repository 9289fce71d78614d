package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/internal/mongoerr"
	"github.com/changehook/changehook/store"
)

// TestDeadLettersAtScale runs every dlq command over many dead letters:
// list (a page, the next page, all), the purge dry run, replay --all and
// purge --yes. With -long there are 3,000 dead letters of 40 kB (120 MB,
// what an outage leaves), more than devdb's (and MongoDB's) 100 MiB
// in-memory sort limit: the query the commands used before (an unindexed
// sort of every dead letter) fails there with
// QueryExceededMemoryLimitNoDiskUseAllowed, and the commands, whose
// queries the dead letters' index serves, all work.
func TestDeadLettersAtScale(t *testing.T) {
	n, size := 1200, 1<<10
	if long() {
		n, size = 3000, 40<<10
	}
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	var mu sync.Mutex
	seen := map[string]int{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		seen[r.Header.Get("webhook-id")]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)
	cfg := writeFile(t, t.TempDir(), "dlq.yaml", baseConfig(srv.URI(), rcv.URL)+`
  - name: dlq
    database: e2e
    collection: d
`)
	ctx := context.Background()
	st := store.New(client, "chstate")
	put := func() {
		pad := strings.Repeat("x", size)
		at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
		for i := range n {
			tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("%08d", i)}})
			ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
				{Key: "documentKey", Value: bson.D{{Key: "_id", Value: int64(i)}}},
				{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: int64(i)}, {Key: "pad", Value: pad}}}})
			if err := st.PutDeadLetter(ctx, dispatcher.DeadLetter{Trigger: "dlq", Event: ev, Token: tok, Attempts: 4,
				LastStatus: 503, DeadLetteredAt: at.Add(time.Duration(i) * time.Millisecond)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	put()

	if long() {
		// The old query: every dead letter sorted by time, no index.
		cur, err := client.Database("chstate").Collection(store.DeadLettersCollection).Find(ctx, bson.D{},
			options.Find().SetSort(bson.D{{Key: "deadLetteredAt", Value: 1}, {Key: "_id", Value: 1}}))
		if err == nil {
			for cur.Next(ctx) {
			}
			err = cur.Err()
		}
		var ce mongo.CommandError
		if !errors.As(err, &ce) || mongoerr.Code(ce.Code) != mongoerr.QueryExceededMemoryLimitNoDiskUseAllowed {
			t.Fatalf("unindexed sort of %d MB of dead letters: err = %v, want QueryExceededMemoryLimitNoDiskUseAllowed", n*size>>20, err)
		}
	}

	code, out, errOut := runCLI(t, "dlq", "list", "-c", cfg)
	if code != 0 || strings.Count(out, "\n") != 101 || !strings.Contains(errOut, "100 dead letters shown; more: changehook dlq list -c "+cfg+" --after dlc_") {
		t.Fatalf("dlq list = %d, %d lines\n%s", code, strings.Count(out, "\n"), errOut)
	}
	next := strings.Fields(errOut[strings.Index(errOut, "--after "):])[1]
	code, out, errOut = runCLI(t, "dlq", "list", "-c", cfg, "--trigger", "dlq", "--after", next, "--limit", "50")
	if code != 0 || strings.Count(out, "\n") != 51 {
		t.Fatalf("dlq list --after = %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "dlq", "list", "-c", cfg, "--limit", "0")
	if code != 0 || strings.Count(out, "msg_") != n || !strings.Contains(errOut, fmt.Sprintf("%d dead letters", n)) {
		t.Fatalf("dlq list --limit 0 = %d, %d rows\n%s", code, strings.Count(out, "msg_"), errOut)
	}
	code, out, _ = runCLI(t, "dlq", "purge", "-c", cfg, "--trigger", "dlq")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("would delete %d dead letters", n)) {
		t.Fatalf("dlq purge dry run = %d\n%s", code, out)
	}
	code, out, errOut = runCLI(t, "dlq", "replay", "-c", cfg, "--all")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("replayed %d of %d; 0 left", n, n)) {
		t.Fatalf("dlq replay --all = %d\n%s%s", code, tail(out), errOut)
	}
	mu.Lock()
	if len(seen) != n {
		t.Errorf("receiver saw %d distinct webhook ids, want %d", len(seen), n)
	}
	mu.Unlock()
	put()
	code, out, _ = runCLI(t, "dlq", "purge", "-c", cfg, "--all", "--yes")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("deleted %d dead letters", n)) {
		t.Fatalf("dlq purge --all --yes = %d\n%s", code, out)
	}
	if code, out, _ = runCLI(t, "dlq", "list", "-c", cfg); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Fatalf("dlq list after purge = %d\n%s", code, out)
	}
}

// tail returns the last lines of s.
func tail(s string) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-5):], "\n")
}
