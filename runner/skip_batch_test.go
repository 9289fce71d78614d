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
	"go.mongodb.org/mongo-driver/v2/bson"
)

// batchHook is a webhook endpoint for a batched trigger answering each
// request as answer says, given the document ids of its events
// (documentKey._id) in order; answer may block (until the request's
// context ends at the latest). delivered receives the ids of every event
// of a request answered 2xx.
func batchHook(t *testing.T, answer func(ctx context.Context, ids []int32) int) (srv *httptest.Server, delivered <-chan int32) {
	t.Helper()
	got := make(chan int32, 1024)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var doc struct{ Events []bson.Raw }
		if err := bson.UnmarshalExtJSON([]byte(`{"events":`+string(body)+`}`), false, &doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ids := make([]int32, len(doc.Events))
		for i, ev := range doc.Events {
			ids[i] = docID(ev)
		}
		status := answer(req.Context(), ids)
		if status < 300 {
			for _, id := range ids {
				got <- id
			}
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// strictBatchYAML is a strict batched trigger that retries forever.
const strictBatchYAML = `
triggers:
  - name: strict
    database: shop
    collection: a
    ordering: strict
    dead_letter: false
    batch: { max_events: 5, max_wait: 10s }
    retry: { initial_backoff: 10ms, max_backoff: 10ms }
    circuit: { failures: 0, open_on: [] }
    webhook: { url: "${HOOK_URL}" }
`

// waitRecv returns the next value of c, failing the test after
// waitTimeout.
func waitRecv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// TestSkipOfABatchDeadLettersEachOfItsEvents: a strict batched trigger
// without dead letters is stuck on a batch of 5 events the endpoint
// rejects (400) for its third. A skip naming another id is refused; one
// naming the batch's id, as its head_of_line shows it, dead-letters each
// of the batch's events, each its own dead letter with its own
// webhook-id, and moves the checkpoint past the batch: the trigger
// continues with the next event.
func TestSkipOfABatchDeadLettersEachOfItsEvents(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	arrived0, release0 := make(chan struct{}, 1), make(chan struct{})
	refused := make(chan struct{}, 1024)
	hook, delivered := batchHook(t, func(ctx context.Context, ids []int32) int {
		switch {
		case slices.Contains(ids, 0):
			arrived0 <- struct{}{}
			select {
			case <-release0:
			case <-ctx.Done():
				return http.StatusServiceUnavailable
			}
		case slices.Contains(ids, 3):
			refused <- struct{}{}
			return http.StatusBadRequest
		}
		return http.StatusNoContent
	})
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, strictBatchYAML, hook.URL)
	r := startRunner(t, cfg, client, runner.Options{Controls: true, ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	coll := client.Database("shop").Collection("a")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(0)}})
	waitRecv(t, arrived0, "the insert of 0 at the endpoint")
	for i := int32(1); i <= 5; i++ {
		insert(t, coll, bson.D{{Key: "_id", Value: i}})
	}
	// Read while the insert of 0 is in flight: they fill one batch.
	waitFor(t, "the inserts read", func() bool { return statusOf(t, r, "strict").EventsReceived == 6 })
	close(release0)
	if id := waitRecv(t, delivered, "the insert of 0 delivered"); id != 0 {
		t.Fatalf("delivered %d, want 0", id)
	}
	waitRecv(t, refused, "the batch refused")
	var head *runner.HeadOfLine
	waitFor(t, "stuck on the batch", func() bool {
		head = statusOf(t, r, "strict").HeadOfLine
		return head != nil && head.LastReason != ""
	})
	if !strings.HasPrefix(head.WebhookID, "batch_") {
		t.Fatalf("head of line %+v, want a batch", head)
	}
	// The way out talks about the batch, and its command names it.
	waitFor(t, "failed on the batch", func() bool { return statusOf(t, r, "strict").State == runner.StateFailed })
	if got, want := statusOf(t, r, "strict").WayOut, "the endpoint rejects batch "+head.WebhookID+" (5 events) permanently (HTTP 400); "+
		"without dead letters it is retried and every later event waits: fix the endpoint (or the trigger, then reload), "+
		"or run `changehook skip strict --webhook-id "+head.WebhookID+"` to dead-letter each of its events"; got != want {
		t.Errorf("way out\n%q\nwant\n%q", got, want)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()

	const other = "msg_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	msg, err := runner.RequestControl(ctx, st, "strict", "", store.ControlRequest{Kind: store.RequestSkip, By: "test", WebhookID: other})
	want := "skip strict: stuck on batch " + head.WebhookID + " (5 events), not on " + other +
		", so nothing was skipped; a batch is skipped by its id, " + head.WebhookID + ", as its head_of_line shows it"
	if err == nil || err.Error() != want {
		t.Fatalf("skip of another event = %q, %v;\nwant the error %q", msg, err, want)
	}
	if n, err := st.CountDeadLetters(ctx, "strict"); err != nil || n != 0 {
		t.Fatalf("%d dead letters (%v) after a refused skip, want none", n, err)
	}

	msg, err = runner.RequestControl(ctx, st, "strict", "", store.ControlRequest{Kind: store.RequestSkip, By: "test", WebhookID: head.WebhookID})
	if err != nil || !strings.HasPrefix(msg, "skipped batch "+head.WebhookID+" and dead-lettered its 5 events, each its own dead letter: msg_") {
		t.Fatalf("skip of the batch = %q, %v", msg, err)
	}
	dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "strict"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	for _, dl := range dls {
		ids = append(ids, docID(dl.Event))
		if dl.WebhookID != dispatcher.WebhookID("strict", dl.Token) {
			t.Errorf("dead letter of %d has webhook-id %s, not its event's own", docID(dl.Event), dl.WebhookID)
		}
		if want := fmt.Sprintf("batch %s (event %d of its 5): client_error: HTTP 400 Bad Request", head.WebhookID, docID(dl.Event)); dl.LastError != want ||
			dl.LastStatus != http.StatusBadRequest || dl.SkippedBy != "test" {
			t.Errorf("dead letter of %d: last error %q, status %d, skipped by %q; want %q, 400, test", docID(dl.Event), dl.LastError, dl.LastStatus, dl.SkippedBy, want)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []int32{1, 2, 3, 4, 5}) {
		t.Fatalf("dead-lettered the events of %v, want each of the batch's (1 to 5)", ids)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(6)}})
	if id := waitRecv(t, delivered, "the insert of 6 delivered"); id != 6 {
		t.Fatalf("delivered %d after the skip, want 6", id)
	}
}

// TestSkipOfABatchSentInParts: the endpoint refuses every request with the
// third of a batch's 5 events as too large (413), so the batch is sent in
// parts: the first two are delivered, the third is refused alone and, as
// the trigger has no dead letters, retried. The skip dead-letters that
// event only (the part the endpoint refused) and moves the checkpoint past
// it: the last two are delivered next, the first two not again.
func TestSkipOfABatchSentInParts(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	arrived0, release0 := make(chan struct{}, 1), make(chan struct{})
	var mu sync.Mutex
	alone3 := 0
	hook, delivered := batchHook(t, func(ctx context.Context, ids []int32) int {
		switch {
		case slices.Contains(ids, 0):
			arrived0 <- struct{}{}
			select {
			case <-release0:
			case <-ctx.Done():
				return http.StatusServiceUnavailable
			}
		case slices.Contains(ids, 3):
			if len(ids) == 1 {
				mu.Lock()
				alone3++
				mu.Unlock()
			}
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusNoContent
	})
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, strictBatchYAML, hook.URL)
	r := startRunner(t, cfg, client, runner.Options{ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	coll := client.Database("shop").Collection("a")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(0)}})
	waitRecv(t, arrived0, "the insert of 0 at the endpoint")
	for i := int32(1); i <= 5; i++ {
		insert(t, coll, bson.D{{Key: "_id", Value: i}})
	}
	// Read while the insert of 0 is in flight: they fill one batch.
	waitFor(t, "the inserts read", func() bool { return statusOf(t, r, "strict").EventsReceived == 6 })
	close(release0)
	for _, want := range []int32{0, 1, 2} {
		if id := waitRecv(t, delivered, "a delivery"); id != want {
			t.Fatalf("delivered %d, want %d", id, want)
		}
	}
	// Refused alone twice: the part being retried is the third event.
	waitFor(t, "the third event refused alone, and retried", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return alone3 >= 2
	})
	head := statusOf(t, r, "strict").HeadOfLine
	if head == nil || !strings.HasPrefix(head.WebhookID, "batch_") || head.LastStatus != http.StatusRequestEntityTooLarge {
		t.Fatalf("head of line %+v, want the batch, refused with 413", head)
	}
	// Its attempts are the part's: the part's own webhook-id (its
	// requests' and history's) is shown beside the batch's.
	if p := head.Part; p == nil || p.FirstEvent != 3 || p.Events != 1 || !strings.HasPrefix(p.WebhookID, "batch_") || p.WebhookID == head.WebhookID {
		t.Errorf("head of line's part %+v, want event 3 alone, with a webhook-id of its own", p)
	}
	waitFor(t, "failed on the part", func() bool { return statusOf(t, r, "strict").State == runner.StateFailed })
	if got, want := statusOf(t, r, "strict").WayOut, "the endpoint rejects event 3 of batch "+head.WebhookID+
		" (5 events, sent in parts after the endpoint refused it as too large; events 1 to 2 were delivered) permanently (HTTP 413); "+
		"without dead letters it is retried and every later event waits: fix the endpoint (or the trigger, then reload), "+
		"or run `changehook skip strict --webhook-id "+head.WebhookID+"` to dead-letter that event"; got != want {
		t.Errorf("way out\n%q\nwant\n%q", got, want)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()

	id, err := r.Skip(ctx, "strict", "test")
	if err != nil || id != head.WebhookID {
		t.Fatalf("skip = %q, %v; want the batch %s", id, err, head.WebhookID)
	}
	dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "strict"})
	if err != nil || len(dls) != 1 || docID(dls[0].Event) != 3 {
		t.Fatalf("dead letters %v (%v), want the third event's alone", dls, err)
	}
	// With the attempts of the part the endpoint refused, the third
	// event alone.
	if want := "batch " + head.WebhookID + " (event 3 of its 5): client_error: HTTP 413 Request Entity Too Large"; dls[0].LastError != want ||
		dls[0].LastStatus != http.StatusRequestEntityTooLarge || dls[0].Attempts < 2 || dls[0].SkippedBy != "test" {
		t.Errorf("dead letter: last error %q, status %d, %d attempts, skipped by %q; want %q, 413, 2 or more, test",
			dls[0].LastError, dls[0].LastStatus, dls[0].Attempts, dls[0].SkippedBy, want)
	}
	for _, want := range []int32{4, 5} {
		if id := waitRecv(t, delivered, "a delivery after the skip"); id != want {
			t.Fatalf("delivered %d after the skip, want %d", id, want)
		}
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(6)}})
	if id := waitRecv(t, delivered, "the insert of 6 delivered"); id != 6 {
		t.Fatalf("delivered %d after the skip, want 6 (the first two must not be delivered again)", id)
	}
}

// TestSkipOfABatchPartlyDeliveredMeanwhile: the skip looks while the
// endpoint refuses the batch of 5 events it is stuck on, or the first
// part of it (500); before the skip stops the trigger, the endpoint
// refuses the batch as too large (413), so it is sent in parts, and takes
// the first part: events 1 and 2 are delivered, the part of 3 to 5 is
// refused. A skip that looked at the whole batch dead-letters 3 to 5 only
// — not 1 and 2, which would then be both delivered and dead letters —
// and the trigger continues after the batch without sending 1 and 2
// again. One that looked at the part of 1 and 2 is refused, as that part
// was delivered: the trigger recovered from what the skip looked at; the
// next skip dead-letters 3 to 5.
func TestSkipOfABatchPartlyDeliveredMeanwhile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// first is how the endpoint answers at first, before the skip
		// looks: 500 to refuse (or 413).
		first func(ids []int32) int
		// looked are the events of the refused request the skip looks at.
		looked  []int32
		refused string // the skip's error ("" none), after "skip event strict: "
	}{
		{name: "whole batch looked at", first: func([]int32) int { return http.StatusInternalServerError }, looked: []int32{1, 2, 3, 4, 5}},
		{name: "first part looked at", first: func(ids []int32) int {
			if len(ids) == 5 {
				return http.StatusRequestEntityTooLarge
			}
			return http.StatusInternalServerError // the part of 1 and 2
		}, looked: []int32{1, 2}, refused: "the part of batch %s it was stuck on (events 1 to 2 of its 5) was delivered meanwhile: the trigger recovered from it, " +
			"so nothing was skipped (it now sends events 3 to 5; see its head_of_line)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			arrived0, release0 := make(chan struct{}, 1), make(chan struct{})
			var mu sync.Mutex
			second := false // the endpoint takes the part of 1 and 2
			refused := make(chan []int32, 1024)
			hook, delivered := batchHook(t, func(ctx context.Context, ids []int32) int {
				mu.Lock()
				now := second
				mu.Unlock()
				status := http.StatusNoContent
				switch {
				case slices.Contains(ids, 0):
					arrived0 <- struct{}{}
					select {
					case <-release0:
					case <-ctx.Done():
						return http.StatusServiceUnavailable
					}
				case !now:
					status = tc.first(ids)
				case len(ids) == 5:
					status = http.StatusRequestEntityTooLarge
				case slices.Contains(ids, 3):
					status = http.StatusInternalServerError
				}
				if status >= 300 {
					// The trigger retries every 10 ms: should the test
					// stop reading the refusals for long, the request
					// waits, but only until it is canceled (the test's
					// cleanup closes the endpoint), not forever.
					select {
					case refused <- ids:
					case <-ctx.Done():
					}
				}
				return status
			})
			st := store.New(client, stateDB)
			cfg := parseTrigger(t, strictBatchYAML, hook.URL)
			r := startRunner(t, cfg, client, runner.Options{ShutdownGrace: 50 * time.Millisecond})
			waitFor(t, "trigger ready", r.Ready)
			coll := client.Database("shop").Collection("a")
			insert(t, coll, bson.D{{Key: "_id", Value: int32(0)}})
			waitRecv(t, arrived0, "the insert of 0 at the endpoint")
			for i := int32(1); i <= 5; i++ {
				insert(t, coll, bson.D{{Key: "_id", Value: i}})
			}
			waitFor(t, "the inserts read", func() bool { return statusOf(t, r, "strict").EventsReceived == 6 })
			close(release0)
			if id := waitRecv(t, delivered, "the insert of 0 delivered"); id != 0 {
				t.Fatalf("delivered %d, want 0", id)
			}
			// Refused (500) as the skip will look at it.
			for ids := waitRecv(t, refused, "a refusal"); !slices.Equal(ids, tc.looked); ids = waitRecv(t, refused, "a refusal") {
			}
			var head *runner.HeadOfLine
			waitFor(t, "stuck on the batch", func() bool {
				head = statusOf(t, r, "strict").HeadOfLine
				return head != nil && head.LastStatus == http.StatusInternalServerError
			})
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()

			id, err := r.SkipAfterLooking(ctx, "strict", "test", func() {
				mu.Lock()
				second = true
				mu.Unlock()
				for _, want := range []int32{1, 2} {
					if id := waitRecv(t, delivered, "the part of 1 and 2 delivered"); id != want {
						t.Errorf("delivered %d, want %d", id, want)
					}
				}
				for ids := waitRecv(t, refused, "a refusal"); !slices.Equal(ids, []int32{3, 4, 5}); ids = waitRecv(t, refused, "a refusal") {
				}
			})
			if tc.refused != "" {
				want := "skip event strict: " + fmt.Sprintf(tc.refused, head.WebhookID)
				if err == nil || err.Error() != want {
					t.Fatalf("skip = %q, %v;\nwant the error %q", id, err, want)
				}
				if n, err := st.CountDeadLetters(ctx, "strict"); err != nil || n != 0 {
					t.Fatalf("%d dead letters (%v) after the refused skip, want none", n, err)
				}
				// The trigger runs again from its checkpoint, before the
				// batch (which is acknowledged whole): it sends 1 and 2
				// again, then is stuck on the part of 3 to 5, which the
				// next skip dead-letters.
				for _, want := range []int32{1, 2} {
					if id := waitRecv(t, delivered, "the part of 1 and 2 delivered again"); id != want {
						t.Errorf("delivered %d, want %d", id, want)
					}
				}
				for ids := waitRecv(t, refused, "a refusal"); !slices.Equal(ids, []int32{3, 4, 5}); ids = waitRecv(t, refused, "a refusal") {
				}
				waitFor(t, "stuck on the part of 3 to 5", func() bool {
					h := statusOf(t, r, "strict").HeadOfLine
					return h != nil && h.LastStatus == http.StatusInternalServerError
				})
				id, err = r.Skip(ctx, "strict", "test")
			}
			if err != nil || id != head.WebhookID {
				t.Fatalf("skip = %q, %v; want the batch %s", id, err, head.WebhookID)
			}
			dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "strict"})
			if err != nil {
				t.Fatal(err)
			}
			var ids []int32
			for _, dl := range dls {
				ids = append(ids, docID(dl.Event))
				// The attempts of the part of 3 to 5, the request the
				// endpoint refused last.
				if want := fmt.Sprintf("batch %s (event %d of its 5): server_error: HTTP 500 Internal Server Error", head.WebhookID, docID(dl.Event)); dl.LastError != want ||
					dl.LastStatus != http.StatusInternalServerError || dl.SkippedBy != "test" {
					t.Errorf("dead letter: last error %q, status %d, skipped by %q; want %q, 500, test", dl.LastError, dl.LastStatus, dl.SkippedBy, want)
				}
			}
			slices.Sort(ids)
			if !slices.Equal(ids, []int32{3, 4, 5}) {
				t.Fatalf("dead-lettered the events of %v, want those not delivered (3 to 5), not 1 and 2, delivered meanwhile", ids)
			}
			insert(t, coll, bson.D{{Key: "_id", Value: int32(6)}})
			if id := waitRecv(t, delivered, "the insert of 6 delivered"); id != 6 {
				t.Fatalf("delivered %d after the skip, want 6 (1 and 2 must not be delivered again)", id)
			}
		})
	}
}
