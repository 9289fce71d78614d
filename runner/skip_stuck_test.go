package runner_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// notStuckText is the end of a skip's refusal of a trigger that is not
// stuck on an event.
const notStuckText = "so nothing was skipped; skip only dead-letters the event a stuck trigger holds on: " +
	"a head_of_line event whose last attempt failed (state retrying or failed), or a change event too large to read (state failed)"

// TestSkipRefusesATriggerNotStuck: a skip request against a trigger that
// delivers normally — its head-of-line event is being delivered and no
// attempt of it failed — is refused by the process running it, naming the
// state; nothing is dead-lettered, and the trigger is not stopped (the
// delivery in flight is not cut off and sent again). A paused trigger is
// refused too.
func TestSkipRefusesATriggerNotStuck(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, lowStockYAML, recv.srv.URL)
	coll := client.Database("lessons").Collection("inventory")
	release := recv.holdRequests()
	t.Cleanup(release)
	r := startRunner(t, cfg, client, runner.Options{Controls: true, ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	insert(t, coll, item(1, 3)) // its delivery is in flight
	<-recv.arrived
	// The next event, which a skip would have dead-lettered.
	insert(t, coll, item(2, 3))
	<-recv.arrived
	head := statusOf(t, r, "low_stock").HeadOfLine
	if head == nil {
		t.Fatal("no head-of-line event while its delivery is in flight")
	}

	msg, err := runner.RequestControl(ctx, st, "low_stock", "", store.ControlRequest{Kind: store.RequestSkip, By: "test"})
	want := "skip low_stock: not stuck on an event (state running: its head-of-line event " + head.WebhookID +
		" has not failed an attempt), " + notStuckText
	if err == nil || err.Error() != want {
		t.Fatalf("skip of a trigger delivering normally = %q, %v;\nwant the error %q", msg, err, want)
	}
	if n, err := st.CountDeadLetters(ctx, "low_stock"); err != nil || n != 0 {
		t.Fatalf("%d dead letters (%v) after a refused skip, want none", n, err)
	}
	release()
	itemID := func(body bson.Raw) int32 { return body.Lookup("id").Int32() } // low_stock's payload
	got := map[int32]bool{itemID(recv.next(t)): true, itemID(recv.next(t)): true}
	if !got[1] || !got[2] {
		t.Fatalf("delivered %v, want items 1 and 2", got)
	}
	select {
	case <-recv.arrived:
		t.Fatal("a delivery was sent again: the refused skip stopped the trigger")
	case <-time.After(300 * time.Millisecond):
	}

	if _, err := runner.RequestControl(ctx, st, "low_stock", "", store.ControlRequest{Kind: store.RequestPause, By: "test"}); err != nil {
		t.Fatal(err)
	}
	insert(t, coll, item(3, 3))
	msg, err = runner.RequestControl(ctx, st, "low_stock", "", store.ControlRequest{Kind: store.RequestSkip, By: "test"})
	want = "skip low_stock: not stuck on an event (state paused: nothing is being delivered; resume it first), " + notStuckText
	if err == nil || err.Error() != want {
		t.Fatalf("skip of a paused trigger = %q, %v;\nwant the error %q", msg, err, want)
	}
	if n, err := st.CountDeadLetters(ctx, "low_stock"); err != nil || n != 0 {
		t.Fatalf("%d dead letters (%v) after a refused skip, want none", n, err)
	}
}

// scriptedHook is a webhook endpoint answering each request as answer
// says, given the event's document id (documentKey._id, or low_stock's
// payload's id) and how many requests for it came before; answer may block
// (until the request's context ends at the latest).
func scriptedHook(t *testing.T, answer func(ctx context.Context, id int32, n int) int) *httptest.Server {
	t.Helper()
	var mu sync.Mutex
	seen := map[int32]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var doc bson.D
		if err := bson.UnmarshalExtJSON(body, false, &doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		b, _ := bson.Marshal(doc)
		raw := bson.Raw(b)
		id, ok := raw.Lookup("documentKey", "_id").Int32OK()
		if !ok {
			id = raw.Lookup("id").Int32() // low_stock's payload
		}
		mu.Lock()
		n := seen[id]
		seen[id]++
		mu.Unlock()
		w.WriteHeader(answer(req.Context(), id, n))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// strictNoDeadLetterYAML is a strict trigger that retries forever.
const strictNoDeadLetterYAML = `
triggers:
  - name: strict
    database: shop
    collection: a
    dead_letter: false
    retry: { initial_backoff: 10ms, max_backoff: 10ms }
    circuit: { failures: 0, open_on: [] }
    webhook: { url: "${HOOK_URL}" }
`

// TestSkipRefusesOnceTheTriggerRecovered: a trigger is stuck on event 1
// (its first attempt failed) when the skip looks at it, but the retry
// succeeds before the skip stops the trigger: event 2, then the first
// after the checkpoint, is not dead-lettered — the skip refuses, and event
// 2 is delivered.
func TestSkipRefusesOnceTheTriggerRecovered(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	retried := make(chan struct{}, 1)
	letOneThrough, letTwoThrough := make(chan struct{}), make(chan struct{})
	delivered := make(chan int32, 16)
	hook := scriptedHook(t, func(ctx context.Context, id int32, n int) int {
		switch {
		case id == 1 && n == 0:
			return http.StatusServiceUnavailable
		case id == 1:
			select {
			case retried <- struct{}{}:
			default:
			}
			<-letOneThrough
		case id == 2:
			select {
			case <-letTwoThrough:
			case <-ctx.Done():
				return http.StatusServiceUnavailable
			}
		}
		delivered <- id
		return http.StatusNoContent
	})
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, strictNoDeadLetterYAML, hook.URL)
	r := startRunner(t, cfg, client, runner.Options{ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	insert(t, client.Database("shop").Collection("a"), bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "_id", Value: int32(2)}})
	<-retried
	stuck := statusOf(t, r, "strict").HeadOfLine
	if stuck == nil || stuck.LastReason == "" {
		t.Fatalf("head of line %+v, want event 1 with a failed attempt", stuck)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()

	id, err := r.SkipAfterLooking(ctx, "strict", "test", func() {
		close(letOneThrough)
		waitFor(t, "event 1 delivered and event 2 at the head", func() bool {
			h := statusOf(t, r, "strict").HeadOfLine
			return h != nil && h.WebhookID != stuck.WebhookID
		})
	})
	if err == nil || !strings.Contains(err.Error(), "skip event strict: the event it was stuck on, "+stuck.WebhookID+
		", was delivered or dead-lettered meanwhile: the trigger recovered, so nothing was skipped (the next event, msg_") {
		t.Fatalf("skip after the trigger recovered = %q, %v; want it refused", id, err)
	}
	if n, err := st.CountDeadLetters(ctx, "strict"); err != nil || n != 0 {
		t.Fatalf("%d dead letters (%v) after the refused skip, want none", n, err)
	}
	close(letTwoThrough)
	for _, want := range []int32{1, 2} {
		select {
		case got := <-delivered:
			if got != want {
				t.Fatalf("delivered %d, want %d", got, want)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("event %d not delivered", want)
		}
	}
}

// TestSkipOfANamedEvent: a skip request naming the event it is meant for
// (the webhook-id of the head_of_line the operator saw) is refused unless
// the trigger is stuck on that event; naming it, the event is skipped.
func TestSkipOfANamedEvent(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	delivered := make(chan int32, 16)
	hook := scriptedHook(t, func(_ context.Context, id int32, _ int) int {
		if id == 1 {
			return http.StatusServiceUnavailable
		}
		delivered <- id
		return http.StatusNoContent
	})
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, strictNoDeadLetterYAML, hook.URL)
	r := startRunner(t, cfg, client, runner.Options{Controls: true, ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	insert(t, client.Database("shop").Collection("a"), bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "_id", Value: int32(2)}})
	var head *runner.HeadOfLine
	waitFor(t, "stuck on event 1", func() bool {
		head = statusOf(t, r, "strict").HeadOfLine
		return head != nil && head.LastReason != ""
	})
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()

	const other = "msg_aaaaaaaaaaaaaaaaaaaaaaaaaa"
	msg, err := runner.RequestControl(ctx, st, "strict", "", store.ControlRequest{Kind: store.RequestSkip, By: "test", WebhookID: other})
	want := "skip strict: stuck on event " + head.WebhookID + ", not on " + other + ", so nothing was skipped"
	if err == nil || err.Error() != want {
		t.Fatalf("skip of another event = %q, %v;\nwant the error %q", msg, err, want)
	}
	if n, err := st.CountDeadLetters(ctx, "strict"); err != nil || n != 0 {
		t.Fatalf("%d dead letters (%v) after a refused skip, want none", n, err)
	}

	msg, err = runner.RequestControl(ctx, st, "strict", "", store.ControlRequest{Kind: store.RequestSkip, By: "test", WebhookID: head.WebhookID})
	if err != nil || msg != "skipped and dead-lettered "+head.WebhookID {
		t.Fatalf("skip of the event it is stuck on = %q, %v", msg, err)
	}
	dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "strict"})
	if err != nil || len(dls) != 1 || docID(dls[0].Event) != 1 {
		t.Fatalf("dead letters %v (%v), want event 1's", dls, err)
	}
	select {
	case got := <-delivered:
		if got != 2 {
			t.Fatalf("delivered %d after the skip, want 2", got)
		}
	case <-time.After(waitTimeout):
		t.Fatal("event 2 not delivered after the skip")
	}
}
