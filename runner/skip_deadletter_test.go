package runner_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// skipKey is the secret header value the endpoints of these tests echo
// in their answers: a dead letter keeps the response body with it masked.
const skipKey = "k-7Hq2xT9vLm4Pz8Rw3Ys6Nb"

// rejection is the body an endpoint of these tests answers a refused
// request with: it echoes the request's X-Api-Key and is longer than the
// 4 KiB a dead letter keeps of a response.
func rejection(req *http.Request) string {
	return fmt.Sprintf(`{"error":"sku unknown","key":%q,"pad":"%s"}`, req.Header.Get("X-Api-Key"), strings.Repeat("x", 5000))
}

// checkKeptResponse checks body, a dead letter's response, against
// rejection's: cut to 4 KiB, its secret masked.
func checkKeptResponse(t *testing.T, body string) {
	t.Helper()
	if want := `{"error":"sku unknown","key":"` + triggers.RedactedMask + `","pad":"xxx`; !strings.HasPrefix(body, want) ||
		strings.Contains(body, skipKey) || len(body) > 4<<10 {
		t.Errorf("dead letter's response (%d bytes) %.80q…; want the endpoint's answer cut to 4 KiB, starting %q, its key masked", len(body), body, want)
	}
}

// TestSkipDeadLetterKeepsTheAttempts: a strict trigger without dead
// letters is stuck on an event its endpoint rejects (400, with a body
// longer than 4 KiB that echoes the trigger's secret header); its fourth
// attempt is in flight when the skip stops the trigger. The skip's dead
// letter keeps what the three attempts established — their number, the
// last one's status, reason and error as the status showed them, the
// response body as a dead letter of the dispatcher keeps it (cut to 4
// KiB, the secret masked: the same as trigger dl's, whose endpoint
// answers the same), the first attempt's time — and says who skipped it.
// The attempt the skip cut off is not one of them.
func TestSkipDeadLetterKeepsTheAttempts(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	var mu sync.Mutex
	seen := map[string]int{}
	var firstAt time.Time // when the endpoint got strict's first request
	fourth := make(chan struct{}, 1)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Read, so that the server notices when the request is cut off.
		_, _ = io.Copy(io.Discard, req.Body)
		mu.Lock()
		n := seen[req.URL.Path]
		seen[req.URL.Path]++
		if req.URL.Path == "/strict" && n == 0 {
			firstAt = time.Now()
		}
		mu.Unlock()
		if req.URL.Path == "/strict" && n >= 3 {
			// In flight until the skip cuts it off.
			select {
			case fourth <- struct{}{}:
			default:
			}
			<-req.Context().Done()
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(rejection(req)))
	}))
	t.Cleanup(hook.Close)
	cfg := parseTrigger(t, `
triggers:
  - name: strict
    database: shop
    collection: a
    dead_letter: false
    retry: { initial_backoff: 10ms, max_backoff: 10ms }
    circuit: { failures: 0, open_on: [] }
    webhook: { url: "${HOOK_URL}/strict", headers: { X-Api-Key: "`+skipKey+`" } }
  - name: dl
    database: shop
    collection: b
    circuit: { failures: 0, open_on: [] }
    webhook: { url: "${HOOK_URL}/dl", headers: { X-Api-Key: "`+skipKey+`" } }
`, hook.URL)
	st := store.New(client, stateDB)
	r := startRunner(t, cfg, client, runner.Options{ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	before := time.Now()
	insert(t, client.Database("shop").Collection("a"), bson.D{{Key: "_id", Value: int32(1)}})
	insert(t, client.Database("shop").Collection("b"), bson.D{{Key: "_id", Value: int32(1)}})
	waitRecv(t, fourth, "the fourth attempt")
	head := statusOf(t, r, "strict").HeadOfLine
	if head == nil || head.Attempts != 3 || head.LastStatus != http.StatusBadRequest {
		t.Fatalf("head of line %+v, want 3 attempts, the last answered 400", head)
	}
	waitFor(t, "dl's dead letter", func() bool { n, err := st.CountDeadLetters(ctx, "dl"); return err == nil && n == 1 })

	id, err := r.Skip(ctx, "strict", "test")
	if err != nil || id != head.WebhookID {
		t.Fatalf("skip = %q, %v; want %s", id, err, head.WebhookID)
	}
	dl, ok, err := st.GetDeadLetter(ctx, id)
	if err != nil || !ok {
		t.Fatalf("dead letter %s: found %v, %v", id, ok, err)
	}
	if dl.SkippedBy != "test" {
		t.Errorf("dead letter skipped by %q, want test", dl.SkippedBy)
	}
	if dl.Attempts != 3 || dl.LastStatus != http.StatusBadRequest || dl.LastReason != dispatcher.ReasonClientError || dl.LastError != head.LastError {
		t.Errorf("dead letter: %d attempts, last status %d, reason %q, error %q; want 3, 400, %q and the status's %q",
			dl.Attempts, dl.LastStatus, dl.LastReason, dl.LastError, dispatcher.ReasonClientError, head.LastError)
	}
	checkKeptResponse(t, dl.LastResponse)
	mu.Lock()
	first := firstAt
	mu.Unlock()
	// Stored to the millisecond.
	if dl.FirstAttemptAt.Before(before.Truncate(time.Millisecond)) || dl.FirstAttemptAt.After(first) || !dl.FirstAttemptAt.Before(dl.DeadLetteredAt) {
		t.Errorf("dead letter's first attempt at %v; want the first attempt's time, between the insert (%v) and its arrival (%v), before the skip (%v)",
			dl.FirstAttemptAt, before, first, dl.DeadLetteredAt)
	}
	ref, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "dl"})
	if err != nil || len(ref) != 1 {
		t.Fatalf("dl's dead letters %v (%v), want one", ref, err)
	}
	if dl.LastResponse != ref[0].LastResponse || ref[0].SkippedBy != "" {
		t.Errorf("the skip kept the response\n%.100q…\nthe dispatcher's dead letter keeps\n%.100q… (skipped by %q, want none)", dl.LastResponse, ref[0].LastResponse, ref[0].SkippedBy)
	}
}

// TestSkipOfABatchKeepsItsAttempts: a strict batched trigger without dead
// letters is stuck on a batch of 5 events its endpoint rejects (400, with
// a body as above) twice; its third attempt is in flight when the skip
// stops the trigger. Each event's dead letter keeps the batch's two
// attempts: their number, the last one's status and reason, its error
// (naming the batch and the event's place in it), the response body cut
// and masked, the first attempt's time; and says who skipped it.
func TestSkipOfABatchKeepsItsAttempts(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	arrived0, release0 := make(chan struct{}, 1), make(chan struct{})
	third := make(chan struct{}, 1)
	var mu sync.Mutex
	refusals := 0
	var firstAt time.Time
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var doc struct{ Events []bson.Raw }
		if err := bson.UnmarshalExtJSON([]byte(`{"events":`+string(body)+`}`), false, &doc); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if len(doc.Events) == 1 && docID(doc.Events[0]) == 0 {
			arrived0 <- struct{}{}
			select {
			case <-release0:
			case <-req.Context().Done():
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		mu.Lock()
		n := refusals
		refusals++
		if n == 0 {
			firstAt = time.Now()
		}
		mu.Unlock()
		if n >= 2 {
			select {
			case third <- struct{}{}:
			default:
			}
			<-req.Context().Done()
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(rejection(req)))
	}))
	t.Cleanup(hook.Close)
	cfg := parseTrigger(t, `
triggers:
  - name: strict
    database: shop
    collection: a
    ordering: strict
    dead_letter: false
    batch: { max_events: 5, max_wait: 10s }
    retry: { initial_backoff: 10ms, max_backoff: 10ms }
    circuit: { failures: 0, open_on: [] }
    webhook: { url: "${HOOK_URL}", headers: { X-Api-Key: "`+skipKey+`" } }
`, hook.URL)
	st := store.New(client, stateDB)
	r := startRunner(t, cfg, client, runner.Options{ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	coll := client.Database("shop").Collection("a")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(0)}})
	waitRecv(t, arrived0, "the insert of 0 at the endpoint")
	before := time.Now()
	for i := int32(1); i <= 5; i++ {
		insert(t, coll, bson.D{{Key: "_id", Value: i}})
	}
	// Read while the insert of 0 is in flight: they fill one batch.
	waitFor(t, "the inserts read", func() bool { return statusOf(t, r, "strict").EventsReceived == 6 })
	close(release0)
	waitRecv(t, third, "the batch's third attempt")
	head := statusOf(t, r, "strict").HeadOfLine
	if head == nil || !strings.HasPrefix(head.WebhookID, "batch_") || head.Attempts != 2 || head.LastStatus != http.StatusBadRequest {
		t.Fatalf("head of line %+v, want the batch, 2 attempts, the last answered 400", head)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()

	if id, err := r.Skip(ctx, "strict", "test"); err != nil || id != head.WebhookID {
		t.Fatalf("skip = %q, %v; want the batch %s", id, err, head.WebhookID)
	}
	dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "strict"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	first := firstAt
	mu.Unlock()
	var ids []int32
	for _, dl := range dls {
		id := docID(dl.Event)
		ids = append(ids, id)
		if dl.SkippedBy != "test" {
			t.Errorf("dead letter of %d skipped by %q, want test", id, dl.SkippedBy)
		}
		if want := fmt.Sprintf("batch %s (event %d of its 5): %s", head.WebhookID, id, head.LastError); dl.Attempts != 2 || dl.LastStatus != http.StatusBadRequest ||
			dl.LastReason != dispatcher.ReasonClientError || dl.LastError != want {
			t.Errorf("dead letter of %d: %d attempts, last status %d, reason %q, error %q; want 2, 400, %q, %q",
				id, dl.Attempts, dl.LastStatus, dl.LastReason, dl.LastError, dispatcher.ReasonClientError, want)
		}
		checkKeptResponse(t, dl.LastResponse)
		if dl.FirstAttemptAt.Before(before.Truncate(time.Millisecond)) || dl.FirstAttemptAt.After(first) || !dl.FirstAttemptAt.Before(dl.DeadLetteredAt) {
			t.Errorf("dead letter of %d: first attempt at %v; want the batch's first attempt, between the inserts (%v) and its arrival (%v), before the skip (%v)",
				id, dl.FirstAttemptAt, before, first, dl.DeadLetteredAt)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []int32{1, 2, 3, 4, 5}) {
		t.Fatalf("dead-lettered the events of %v, want each of the batch's (1 to 5)", ids)
	}
}
