package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/triggers"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// manualClock is a Clock whose Sleeps wait until Advance moves Now past
// their end; every Sleep that starts is announced on started.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	wakers  []manualSleeper
	started chan time.Duration
}

type manualSleeper struct {
	until time.Time
	ch    chan struct{}
}

func newManualClock() *manualClock {
	return &manualClock{now: time.Now(), started: make(chan time.Duration, 64)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Sleep(ctx context.Context, d time.Duration) error {
	ch := make(chan struct{})
	c.mu.Lock()
	c.wakers = append(c.wakers, manualSleeper{until: c.now.Add(d), ch: ch})
	c.mu.Unlock()
	c.started <- d
	select {
	case <-ch:
		return ctx.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Advance moves Now by d and wakes the sleeps that have ended.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.wakers[:0]
	for _, w := range c.wakers {
		if !w.until.After(c.now) {
			close(w.ch)
			continue
		}
		kept = append(kept, w)
	}
	c.wakers = kept
}

// batchSeqs returns fullDocument.seq of every element of a batch body,
// failing unless the body is a JSON array of change events.
func batchSeqs(t testing.TB, body []byte) []int {
	t.Helper()
	var elems []json.RawMessage
	if err := json.Unmarshal(body, &elems); err != nil {
		t.Errorf("batch body is not a JSON array: %v: %.200s", err, body)
		return nil
	}
	seqs := make([]int, len(elems))
	for i, e := range elems {
		seqs[i] = seqOf(t, e)
	}
	return seqs
}

// submitAndClose submits evs to d in order and closes d within grace,
// failing the test on an error.
func submitAndClose(t *testing.T, d *Dispatcher, evs []Event, grace time.Duration) {
	t.Helper()
	for _, ev := range evs {
		if err := d.Submit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	closeWithin(t, d, grace)
}

// batchEvents builds n test events; keyOf gives event i's ordering key.
func batchEvents(t testing.TB, n int, keyOf func(i int) string) []Event {
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = testEvent(t, i, keyOf(i))
	}
	return evs
}

// checkBatchRequest checks a batch request's framing: an array of at most
// maxEvents events in stream order, whose webhook-id is BatchWebhookID of
// its first and last events and whose signature verifies.
func checkBatchRequest(t testing.TB, evs []Event, h http.Header, body []byte, maxEvents int) []int {
	t.Helper()
	seqs := batchSeqs(t, body)
	if len(seqs) == 0 || len(seqs) > maxEvents {
		t.Errorf("batch of %d events, want 1 to %d", len(seqs), maxEvents)
		return seqs
	}
	if !slices.IsSorted(seqs) {
		t.Errorf("batch not in stream order: %v", seqs)
	}
	if want := BatchWebhookID("orders", evs[seqs[0]].Token, evs[seqs[len(seqs)-1]].Token); h.Get("Webhook-Id") != want {
		t.Errorf("webhook-id %q, want %q", h.Get("Webhook-Id"), want)
	}
	if err := verifySignature(testSecret, h, body, time.Now(), time.Minute); err != nil {
		t.Errorf("signature: %v", err)
	}
	return seqs
}

// TestBatchOrdering checks each ordering's guarantee across batches on the
// receiver side, with random response times, and that every event is
// delivered exactly once, in a correctly framed batch, before the
// watermark reaches the last event.
func TestBatchOrdering(t *testing.T) {
	const events, maxEvents = 300, 7
	for _, tc := range []struct {
		ordering triggers.Ordering
		conc     int
		keyOf    func(i int) string
	}{
		{triggers.Strict, 1, func(i int) string { return "" }},
		{triggers.None, 6, func(i int) string { return "" }},
		{triggers.PerDocument, 6, func(i int) string {
			if i%53 == 20 {
				return "" // keyless: a barrier
			}
			return fmt.Sprintf("k%d", i%5)
		}},
	} {
		t.Run(string(tc.ordering), func(t *testing.T) {
			evs := batchEvents(t, events, tc.keyOf)
			var (
				mu        sync.Mutex
				inflight  = map[int]bool{} // seqs being delivered
				acked     = map[int]bool{}
				received  []int
				requests  int
				active    int
				maxActive int
			)
			rng := rand.New(rand.NewPCG(1, 2))
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				seqs := checkBatchRequest(t, evs, r.Header, body, maxEvents)
				mu.Lock()
				requests++
				active++
				maxActive = max(maxActive, active)
				in := map[int]bool{}
				for _, s := range seqs {
					in[s] = true
				}
				switch tc.ordering {
				case triggers.Strict:
					if len(inflight) > 0 {
						t.Errorf("strict: batch %v sent while %d events are in flight", seqs, len(inflight))
					}
					for _, s := range seqs {
						if s != len(received) {
							t.Errorf("strict: got event %d, want %d", s, len(received))
						}
						received = append(received, s)
					}
				case triggers.PerDocument:
					for _, x := range seqs {
						k := tc.keyOf(x)
						for y := range events {
							switch {
							case in[y]:
							case y < x && (k == "" || tc.keyOf(y) == "") && !acked[y]:
								t.Errorf("per_document: event %d sent before event %d (one of them keyless) was acknowledged", x, y)
							case k != "" && tc.keyOf(y) == k && inflight[y]:
								t.Errorf("per_document: event %d sent while event %d of the same document is in flight", x, y)
							case k != "" && tc.keyOf(y) == k && y > x && acked[y]:
								t.Errorf("per_document: event %d delivered after the later event %d of its document", x, y)
							}
						}
					}
				}
				for _, s := range seqs {
					if acked[s] || inflight[s] {
						t.Errorf("event %d delivered twice", s)
					}
					inflight[s] = true
				}
				delay := time.Duration(rng.IntN(400)) * time.Microsecond
				mu.Unlock()
				time.Sleep(delay) // the endpoint's work, so that responses overtake each other
				mu.Lock()
				for _, s := range seqs {
					delete(inflight, s)
					acked[s] = true
				}
				active--
				mu.Unlock()
				w.WriteHeader(http.StatusOK)
			})
			d := newTestDispatcher(t, &triggers.Trigger{
				Webhook:  triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}},
				Ordering: tc.ordering, Concurrency: tc.conc,
				Batch: &triggers.BatchPolicy{MaxEvents: maxEvents, MaxWait: time.Millisecond},
			}, nil)
			submitAndClose(t, d, evs, 30*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if len(acked) != events {
				t.Fatalf("%d events acknowledged, want %d", len(acked), events)
			}
			if maxActive > tc.conc {
				t.Errorf("%d requests in flight at once, more than concurrency %d", maxActive, tc.conc)
			}
			if requests >= events {
				t.Errorf("%d requests for %d events: nothing was batched", requests, events)
			}
			if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, evs[events-1].Token) {
				t.Fatal("watermark did not reach the last event")
			}
		})
	}
}

// TestBatchMaxWaitAndWholeBatchAcknowledgement: a batch that is not full
// waits while others are in flight and is sent when max_wait has passed on
// the dispatcher's clock; the watermark passes a batch only once the
// endpoint acknowledged all of it; the head of line names the batch.
func TestBatchMaxWaitAndWholeBatchAcknowledgement(t *testing.T) {
	arrived := make(chan []int, 8)
	release := map[int]chan struct{}{}
	for i := 1; i <= 4; i++ {
		release[i] = make(chan struct{})
	}
	evs := batchEvents(t, 5, func(int) string { return "" })
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		arrived <- checkBatchRequest(t, evs, r.Header, body, 3)
		<-release[n]
		w.WriteHeader(http.StatusNoContent)
	})
	clock := newManualClock()
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:  triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}},
		Ordering: triggers.None, Concurrency: 2,
		Batch: &triggers.BatchPolicy{MaxEvents: 3, MaxWait: 50 * time.Millisecond},
	}, nil, WithClock(clock))
	submit := func(i int) {
		t.Helper()
		if err := d.Submit(context.Background(), evs[i]); err != nil {
			t.Fatal(err)
		}
	}
	want := func(seqs ...int) {
		t.Helper()
		select {
		case got := <-arrived:
			if !slices.Equal(got, seqs) {
				t.Fatalf("batch %v, want %v", got, seqs)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("batch %v not sent within 10s", seqs)
		}
	}
	// Nothing in flight: the first event goes at once; its max_wait is the
	// batcher's one timer's first sleep.
	submit(0)
	want(0)
	select {
	case d := <-clock.started:
		if d != 50*time.Millisecond {
			t.Fatalf("max_wait sleep %v, want 50ms", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("max_wait timer not started")
	}
	// One batch in flight: the next three wait for each other (max_events).
	submit(1)
	submit(2)
	submit(3)
	want(1, 2, 3)
	if h, ok := d.HeadOfLine(); !ok || h.WebhookID != BatchWebhookID("orders", evs[0].Token, evs[0].Token) {
		t.Errorf("head of line %+v, want the first batch's id", h)
	}
	// A partial batch behind two in flight waits for max_wait.
	submit(4)
	waitFor(t, func() bool { return d.batcher.armed.Load() == 3 })
	clock.Advance(50 * time.Millisecond)
	close(release[1]) // frees a worker; the batch of 4 must have been sealed by the timer
	want(4)
	if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, evs[0].Token) {
		t.Fatalf("watermark %v %v, want the first event's token", tok, ok)
	}
	close(release[3])
	close(release[2])
	closeWithin(t, d, 10*time.Second)
	if tok, _ := d.Watermark(); !bytes.Equal(tok, evs[4].Token) {
		t.Fatal("watermark did not reach the last event")
	}
}

// sleepCountingClock is the system clock counting its Sleep calls and the
// most of them running at once.
type sleepCountingClock struct {
	SystemClock
	mu         sync.Mutex
	calls, now int
	mostAtOnce int
}

func (c *sleepCountingClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.calls++
	c.now++
	c.mostAtOnce = max(c.mostAtOnce, c.now)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.now--
		c.mu.Unlock()
	}()
	return c.SystemClock.Sleep(ctx, d)
}

// TestBatchMaxWaitOneTimer: max_wait is one timer per batched dispatcher,
// not one per batch — a hundred batches sealed by size before their
// max_wait cost one sleep — and a batch opened while that timer still
// sleeps towards an older batch's deadline is sealed at its own deadline,
// counted from its own first event.
func TestBatchMaxWaitOneTimer(t *testing.T) {
	t.Run("one sleep for many batches", func(t *testing.T) {
		const events = 300
		evs := batchEvents(t, events, func(int) string { return "" })
		rc := newReceiver(t, nil)
		clock := &sleepCountingClock{}
		d := newTestDispatcher(t, &triggers.Trigger{
			Webhook:  triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}},
			Ordering: triggers.None, Concurrency: 2,
			Batch: &triggers.BatchPolicy{MaxEvents: 3, MaxWait: time.Hour},
		}, nil, WithClock(clock))
		for _, ev := range evs {
			if err := d.Submit(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
		closeWithin(t, d, 10*time.Second)
		if tok, _ := d.Watermark(); !bytes.Equal(tok, evs[events-1].Token) {
			t.Fatal("watermark did not reach the last event")
		}
		n := len(rc.deliveries())
		clock.mu.Lock()
		defer clock.mu.Unlock()
		if n < events/3 {
			t.Fatalf("%d requests for %d events in batches of at most 3", n, events)
		}
		if clock.calls != 1 || clock.mostAtOnce != 1 {
			t.Fatalf("%d batches armed %d max_wait sleeps (%d at once), want 1", n, clock.calls, clock.mostAtOnce)
		}
	})
	t.Run("deadline from the batch's own start", func(t *testing.T) {
		evs := batchEvents(t, 2, func(int) string { return "" })
		arrived := make(chan []int, 2)
		release := make(chan struct{})
		rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			arrived <- checkBatchRequest(t, evs, r.Header, body, 3)
			if n == 1 {
				<-release
			}
			w.WriteHeader(http.StatusNoContent)
		})
		clock := newManualClock()
		d := newTestDispatcher(t, &triggers.Trigger{
			Webhook:  triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}},
			Ordering: triggers.None, Concurrency: 1,
			Batch: &triggers.BatchPolicy{MaxEvents: 3, MaxWait: 50 * time.Millisecond},
		}, nil, WithClock(clock))
		started := func(want time.Duration) {
			t.Helper()
			select {
			case got := <-clock.started:
				if got != want {
					t.Fatalf("max_wait sleep %v, want %v", got, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no max_wait sleep of %v", want)
			}
		}
		// Batch 1 (event 0) is sent at once and stays in flight; the
		// timer sleeps towards its deadline, t0+50ms.
		if err := d.Submit(context.Background(), evs[0]); err != nil {
			t.Fatal(err)
		}
		if got := <-arrived; !slices.Equal(got, []int{0}) {
			t.Fatalf("batch %v, want [0]", got)
		}
		started(50 * time.Millisecond)
		// Batch 2 (event 1) opens at t0+20ms: its deadline is t0+70ms.
		clock.Advance(20 * time.Millisecond)
		if err := d.Submit(context.Background(), evs[1]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return d.batcher.armed.Load() == 2 })
		// At t0+50ms the stale sleep ends and the timer sleeps the 20ms
		// left of batch 2's max_wait; batch 2 is still open.
		clock.Advance(30 * time.Millisecond)
		started(20 * time.Millisecond)
		if got := d.batcher.armed.Load(); got != 2 {
			t.Fatalf("armed batch %d at t0+50ms, want 2 still open", got)
		}
		clock.Advance(20 * time.Millisecond)
		waitFor(t, func() bool { return d.batcher.armed.Load() == 0 }) // sealed by its max_wait
		close(release)
		if got := <-arrived; !slices.Equal(got, []int{1}) {
			t.Fatalf("batch %v, want [1]", got)
		}
		closeWithin(t, d, 10*time.Second)
	})
}

// TestBatchDeadLetteredAsEvents: a batch given up on becomes one dead
// letter per event, each with the event's own webhook-id and the batch's
// failure, and each replays alone as an unbatched request; retries of a
// batch carry the same webhook-id and body.
func TestBatchDeadLetteredAsEvents(t *testing.T) {
	const events = 6
	evs := batchEvents(t, events, func(int) string { return "" })
	var mu sync.Mutex
	ids := map[string][][]byte{} // webhook-id → bodies
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		id := r.Header.Get("Webhook-Id")
		ids[id] = append(ids[id], body)
		tries := len(ids[id])
		mu.Unlock()
		switch {
		case bytes.Contains(body, []byte(`"seq":3}`)):
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, "bad event 3")
		case tries == 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	sink := &memSink{}
	trig := &triggers.Trigger{
		Name:     "orders",
		Webhook:  triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}},
		Ordering: triggers.Strict, DeadLetter: true,
		Retry: triggers.RetryPolicy{MaxAttempts: 3},
		Batch: &triggers.BatchPolicy{MaxEvents: 4, MaxWait: time.Millisecond},
	}
	d := newTestDispatcher(t, trig, sink, WithClock(newFakeClock()))
	submitAndClose(t, d, evs, 10*time.Second)
	if tok, _ := d.Watermark(); !bytes.Equal(tok, evs[events-1].Token) {
		t.Fatal("watermark did not reach the last event")
	}
	// The failed batch: every event that was in it is one dead letter.
	var failed []int
	mu.Lock()
	for id, bodies := range ids {
		seqs := batchSeqs(t, bodies[0])
		for _, b := range bodies[1:] {
			if !bytes.Equal(b, bodies[0]) {
				t.Errorf("retry of %s with another body", id)
			}
		}
		if !strings.HasPrefix(id, "batch_") || id != BatchWebhookID("orders", evs[seqs[0]].Token, evs[seqs[len(seqs)-1]].Token) {
			t.Errorf("webhook-id %q is not the batch's id", id)
		}
		if slices.Contains(seqs, 3) {
			failed = seqs
			if len(bodies) != 1 {
				t.Errorf("the 422 batch was sent %d times, want once (permanent)", len(bodies))
			}
		} else if len(bodies) != 2 {
			t.Errorf("batch %v sent %d times, want twice (503, then 200)", seqs, len(bodies))
		}
	}
	mu.Unlock()
	dls := sink.All()
	if len(dls) != len(failed) {
		t.Fatalf("%d dead letters for the failed batch %v, want one per event", len(dls), failed)
	}
	for i, dl := range dls {
		ev := evs[failed[i]]
		if dl.WebhookID != WebhookID("orders", ev.Token) || !bytes.Equal(dl.Event, ev.Raw) || !bytes.Equal(dl.Token, ev.Token) {
			t.Errorf("dead letter %d is not event %d with its own webhook-id: %+v", i, failed[i], dl)
		}
		if dl.LastStatus != http.StatusUnprocessableEntity || dl.LastReason != ReasonClientError || dl.Attempts != 1 ||
			dl.LastResponse != "bad event 3" || !strings.Contains(dl.LastError, "batch_") {
			t.Errorf("dead letter %d does not carry the batch's failure: %+v", i, dl)
		}
	}
	// Each dead letter replays alone: a single event, not an array.
	replayed := newReceiver(t, nil)
	replay := *trig
	replay.Webhook.URL = replayed.srv.URL
	s, err := NewSender(&replay)
	if err != nil {
		t.Fatal(err)
	}
	dl := dls[len(dls)-1]
	if _, err := s.Deliver(context.Background(), Event{Raw: dl.Event, Token: dl.Token}); err != nil {
		t.Fatalf("replay: %v", err)
	}
	got := replayed.deliveries()
	if len(got) != 1 || got[0].header.Get("Webhook-Id") != dl.WebhookID || seqOf(t, got[0].body) != failed[len(failed)-1] {
		t.Fatalf("replay sent %d requests, want the one event with its own id", len(got))
	}
}

// TestBatchMaxBytes: no body exceeds max_bytes, except an event larger
// than it, which goes alone.
func TestBatchMaxBytes(t *testing.T) {
	const events, maxBytes = 40, 1024
	evs := batchEvents(t, events, func(int) string { return "" })
	big, err := bson.Marshal(bson.D{
		{Key: "_id", Value: bson.Raw(evs[20].Token)}, {Key: "operationType", Value: "insert"},
		{Key: "fullDocument", Value: bson.D{{Key: "pad", Value: strings.Repeat("x", 2*maxBytes)}, {Key: "seq", Value: int32(20)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	evs[20].Raw = big
	var mu sync.Mutex
	seen := map[int]int{}
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seqs := checkBatchRequest(t, evs, r.Header, body, 100)
		if len(body) > maxBytes && !slices.Equal(seqs, []int{20}) {
			t.Errorf("body of %d bytes (events %v), more than max_bytes %d", len(body), seqs, maxBytes)
		}
		mu.Lock()
		for _, s := range seqs {
			seen[s]++
		}
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:  triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}},
		Ordering: triggers.None, Concurrency: 2,
		Batch: &triggers.BatchPolicy{MaxEvents: 100, MaxBytes: maxBytes, MaxWait: time.Millisecond},
	}, nil)
	submitAndClose(t, d, evs, 10*time.Second)
	// The handler's writes reach this goroutine through TCP, which is no
	// happens-before edge for the race detector: read under the lock.
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != events {
		t.Fatalf("%d events delivered, want %d", len(seen), events)
	}
}

// TestBatchPayloadsAndCloudEvents: with a payload expression the array holds
// the expression's results; with format cloudevents it is a CloudEvents
// batch (application/cloudevents-batch+json) that sdk-go reads, each event
// with its own id; replaying one event sends a single structured CloudEvent.
func TestBatchPayloadsAndCloudEvents(t *testing.T) {
	expr, err := mql.CompileExpr(bson.D{{Key: "seq", Value: "$fullDocument.seq"}, {Key: "op", Value: "$operationType"}})
	if err != nil {
		t.Fatal(err)
	}
	evs := batchEvents(t, 5, func(int) string { return "" })
	for _, tc := range []struct {
		name   string
		format string
		ct     string
	}{
		{"json", triggers.FormatJSON, "application/json"},
		{"cloudevents", triggers.FormatCloudEvents, ContentTypeCloudEventsBatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var seqs []int
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
				if ct := r.Header.Get("Content-Type"); ct != tc.ct {
					t.Errorf("Content-Type %q, want %q", ct, tc.ct)
				}
				if err := verifySignature(testSecret, r.Header, body, time.Now(), time.Minute); err != nil {
					t.Errorf("signature: %v", err)
				}
				var datas []json.RawMessage
				if tc.format == triggers.FormatCloudEvents {
					ces, err := cehttp.NewEventsFromHTTPRequest(r)
					if err != nil {
						t.Errorf("sdk-go rejects the batch: %v: %s", err, body)
					}
					for _, e := range ces {
						if err := e.Validate(); err != nil {
							t.Errorf("invalid CloudEvent: %v", err)
						}
						var p struct{ Seq int }
						_ = json.Unmarshal(e.Data(), &p)
						if e.ID() != WebhookID("orders", evs[p.Seq].Token) || e.Source() != "/shop/orders" || e.Type() != "com.changehook.insert" {
							t.Errorf("CloudEvent %s %s %s, want the event's own id, source and type", e.ID(), e.Source(), e.Type())
						}
						datas = append(datas, e.Data())
					}
				} else if err := json.Unmarshal(body, &datas); err != nil {
					t.Errorf("body is not an array: %s", body)
				}
				for _, d := range datas {
					var p map[string]any
					if err := json.Unmarshal(d, &p); err != nil || len(p) != 2 || p["op"] != "insert" {
						t.Errorf("element %s is not the payload expression's result", d)
					}
					mu.Lock()
					seqs = append(seqs, int(p["seq"].(float64)))
					mu.Unlock()
				}
				w.WriteHeader(http.StatusOK)
			}))
			t.Cleanup(srv.Close)
			trig := &triggers.Trigger{
				Name:    "orders",
				Webhook: triggers.Webhook{URL: srv.URL, Format: tc.format, Payload: expr, Secrets: []triggers.Secret{testSecret}},
				Batch:   &triggers.BatchPolicy{MaxEvents: 3, MaxWait: time.Millisecond},
			}
			d := newTestDispatcher(t, trig, nil)
			submitAndClose(t, d, evs, 10*time.Second)
			mu.Lock()
			if !slices.Equal(seqs, []int{0, 1, 2, 3, 4}) {
				t.Errorf("delivered %v, want 0..4 in order (strict)", seqs)
			}
			mu.Unlock()
		})
	}
}

// TestBatchPayloadErrorGoesAlone: an event whose payload cannot be built is
// dead-lettered on its own (payload_error, no request); the others are
// batched around it in order.
func TestBatchPayloadErrorGoesAlone(t *testing.T) {
	expr, err := mql.CompileExpr(bson.D{{Key: "n", Value: bson.D{{Key: "$toInt", Value: "$documentKey._id"}}}})
	if err != nil {
		t.Fatal(err)
	}
	evs := batchEvents(t, 7, func(i int) string {
		if i == 3 {
			return "not a number"
		}
		return fmt.Sprint(i)
	})
	var mu sync.Mutex
	var got []int
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var elems []struct{ N int }
		if err := json.Unmarshal(body, &elems); err != nil {
			t.Errorf("body is not an array: %s", body)
		}
		mu.Lock()
		for _, e := range elems {
			got = append(got, e.N)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	sink := &memSink{}
	var attempts []Attempt
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:  triggers.Webhook{URL: rc.srv.URL, Payload: expr},
		Ordering: triggers.PerDocument, Concurrency: 2, DeadLetter: true,
		Batch: &triggers.BatchPolicy{MaxEvents: 10, MaxWait: time.Millisecond},
	}, sink, WithObserver(func(a Attempt) { mu.Lock(); attempts = append(attempts, a); mu.Unlock() }))
	submitAndClose(t, d, evs, 10*time.Second)
	slices.Sort(got)
	if !slices.Equal(got, []int{0, 1, 2, 4, 5, 6}) {
		t.Errorf("delivered %v, want every event but 3", got)
	}
	dls := sink.All()
	if len(dls) != 1 || dls[0].LastReason != ReasonPayload || dls[0].WebhookID != WebhookID("orders", evs[3].Token) || dls[0].Attempts != 0 {
		t.Fatalf("dead letters %+v, want event 3 alone with payload_error", dls)
	}
	if tok, _ := d.Watermark(); !bytes.Equal(tok, evs[6].Token) {
		t.Fatal("watermark did not reach the last event")
	}
	mu.Lock()
	defer mu.Unlock()
	total, payloadErrors := 0, 0
	for _, a := range attempts {
		if a.Reason == ReasonPayload {
			// The observers (the history) see the event whose payload
			// failed as an attempt of its own that sent nothing.
			payloadErrors++
			if a.WebhookID != WebhookID("orders", evs[3].Token) || a.Events != 0 || a.DocumentKey == nil {
				t.Errorf("payload error attempt %+v: want event 3's own webhook-id and key", a)
			}
			continue
		}
		if !strings.HasPrefix(a.WebhookID, "batch_") || a.Events < 1 || a.Operation != "insert" || a.DocumentKey == nil {
			t.Errorf("attempt %+v: want a batch id, its event count and the first event's key", a)
		}
		total += a.Events
	}
	if total != 6 || payloadErrors != 1 {
		t.Errorf("attempts carried %d events and %d payload errors, want 6 and 1", total, payloadErrors)
	}
}

// TestBatchIDs: the batch id is stable for the same first and last events
// and trigger, and differs otherwise.
func TestBatchIDs(t *testing.T) {
	a, b, c := testEvent(t, 1, "").Token, testEvent(t, 2, "").Token, testEvent(t, 3, "").Token
	id := BatchWebhookID("orders", a, c)
	if id != BatchWebhookID("orders", a, c) || !strings.HasPrefix(id, "batch_") || len(id) != len("batch_")+32 {
		t.Fatalf("id %q not stable or not batch_ + 32 hex", id)
	}
	for _, other := range []string{BatchWebhookID("orders", a, b), BatchWebhookID("orders", b, c), BatchWebhookID("users", a, c), BatchWebhookID("orders", c, a)} {
		if other == id {
			t.Errorf("distinct batches share id %s", id)
		}
	}
}

// TestNewValidatesBatch: settings a batch cannot use are refused.
func TestNewValidatesBatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    triggers.Webhook
		b    triggers.BatchPolicy
		want string
	}{
		{"one event", triggers.Webhook{URL: "http://127.0.0.1:1/h"}, triggers.BatchPolicy{MaxEvents: 1}, "max_events 1"},
		{"binary cloudevents", triggers.Webhook{URL: "http://127.0.0.1:1/h", Format: triggers.FormatCloudEventsBinary}, triggers.BatchPolicy{MaxEvents: 5}, "cloudevents-binary"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(&triggers.Trigger{Name: "t", Webhook: tc.w, Batch: &tc.b}, nil)
			if err == nil {
				_ = d.Close(context.Background())
				t.Fatalf("New succeeded, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

// TestBatchBackpressure: with the endpoint stuck, a batched dispatcher holds
// at most its sealed batches and one open batch, full, then Submit blocks;
// at most concurrency requests are in flight; everything is delivered once
// the endpoint answers.
func TestBatchBackpressure(t *testing.T) {
	// conc batches in flight, one sealed behind them, one open: full.
	batchBackpressure(t, 5*(2+2))
}

// TestBatchBackpressureHeld: WithBatchedHeld lets more events than the
// batches take wait behind them, and no more: Submit blocks at that count,
// the sealed batches stay bounded and everything is delivered in the end.
// A count below what the batches hold changes nothing.
func TestBatchBackpressureHeld(t *testing.T) {
	t.Run("more", func(t *testing.T) { batchBackpressure(t, 97, WithBatchedHeld(97)) })
	t.Run("fewer", func(t *testing.T) { batchBackpressure(t, 5*(2+2), WithBatchedHeld(3)) })
}

// batchBackpressure is TestBatchBackpressure for a dispatcher with
// max_events 5 and concurrency 2 built with opts, expected to hold want
// events.
func batchBackpressure(t *testing.T, want int, opts ...Option) {
	const maxEvents, conc = 5, 2
	release := make(chan struct{})
	var mu sync.Mutex
	inflight, maxInflight, delivered := 0, 0, 0
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := len(batchSeqs(t, body))
		mu.Lock()
		inflight++
		maxInflight = max(maxInflight, inflight)
		mu.Unlock()
		<-release
		mu.Lock()
		inflight--
		delivered += n
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:  triggers.Webhook{URL: rc.srv.URL},
		Ordering: triggers.None, Concurrency: conc,
		Batch: &triggers.BatchPolicy{MaxEvents: maxEvents, MaxWait: time.Millisecond},
	}, nil, opts...)
	if got := d.Capacity(); got != want {
		t.Fatalf("capacity %d, want %d", got, want)
	}
	submitted := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := d.Submit(ctx, testEvent(t, submitted, ""))
		cancel()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatal(err)
			}
			break
		}
		submitted++
		if submitted > want {
			t.Fatalf("Submit admitted %d events, more than the %d the dispatcher may hold", submitted, want)
		}
	}
	if submitted != want {
		t.Errorf("Submit blocked after %d events, want %d", submitted, want)
	}
	d.batcher.mu.Lock()
	sealed := d.batcher.inflight
	d.batcher.mu.Unlock()
	if sealed > conc+1 {
		t.Errorf("%d sealed batches held, more than concurrency + 1", sealed)
	}
	close(release)
	closeWithin(t, d, 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if maxInflight > conc || delivered != submitted {
		t.Errorf("%d requests in flight at most (want ≤ %d); %d of %d events delivered", maxInflight, conc, delivered, submitted)
	}
}

// TestBuildBatchMessageIsWhatTheDispatcherSends: the batcher's body for a
// run of events is byte for byte BuildBatchMessage's, and DeliverBatch sends
// it through the retry policy with the batch's id on every attempt.
func TestBuildBatchMessageIsWhatTheDispatcherSends(t *testing.T) {
	evs := batchEvents(t, 4, func(int) string { return "" })
	first := make(chan struct{})
	release := make(chan struct{})
	rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			close(first)
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	})
	w := triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}}
	d := newTestDispatcher(t, &triggers.Trigger{Webhook: w, Batch: &triggers.BatchPolicy{MaxEvents: 3}}, nil)
	for i, ev := range evs {
		if err := d.Submit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			<-first // [e0] is in flight: e1..e3 fill the next batch
		}
	}
	close(release)
	closeWithin(t, d, 10*time.Second)
	got := rc.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d requests, want 2 ([e0], [e1 e2 e3])", len(got))
	}
	for i, run := range [][]Event{evs[:1], evs[1:]} {
		want, err := BuildBatchMessage("orders", w, run)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[i].body, want.Body) || got[i].header.Get("Webhook-Id") != want.ID {
			t.Errorf("request %d: %s %s, want %s %s", i, got[i].header.Get("Webhook-Id"), got[i].body, want.ID, want.Body)
		}
	}

	// DeliverBatch: the same request, retried with the same id.
	again := newReceiver(t, statuses(http.StatusServiceUnavailable, http.StatusOK))
	var events []int
	s, err := NewSender(&triggers.Trigger{Name: "orders", Webhook: triggers.Webhook{URL: again.srv.URL, Format: triggers.FormatCloudEvents}, Retry: triggers.RetryPolicy{MaxAttempts: 3}},
		WithClock(newFakeClock()), WithObserver(func(a Attempt) { events = append(events, a.Events) }))
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.DeliverBatch(context.Background(), evs[1:])
	if err != nil || res.Attempts != 2 {
		t.Fatalf("DeliverBatch: %+v, %v; want delivered on the second attempt", res, err)
	}
	sent := again.deliveries()
	if sent[0].header.Get("Webhook-Id") != sent[1].header.Get("Webhook-Id") || !bytes.Equal(sent[0].body, sent[1].body) ||
		sent[1].header.Get("Content-Type") != ContentTypeCloudEventsBatch || !slices.Equal(events, []int{3, 3}) {
		t.Errorf("retry changed the request, or the batch's Content-Type or event count is wrong: %v %v", sent[1].header, events)
	}
}

// TestSubmitOwnedMatchesSubmit: events handed over with SubmitOwned (all
// in one shared buffer, as the runner's read-ahead replies are, each
// token the _id within its event) are delivered exactly as the same
// events given to Submit, batched and not, and the watermark ends on the
// same token. Each owned event's Release is called exactly once and
// overwrites the event's bytes, as a reused buffer would: a read of them
// after the release (a request, a retry, the watermark) would show.
func TestSubmitOwnedMatchesSubmit(t *testing.T) {
	const n = 50
	for _, tc := range []struct {
		name  string
		batch *triggers.BatchPolicy
	}{
		{"one event per request", nil},
		{"batched", &triggers.BatchPolicy{MaxEvents: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := batchEvents(t, n, func(i int) string { return fmt.Sprint("k", i%5) })
			run := func(owned bool) (elems []string, watermark bson.Raw) {
				released := make([]atomic.Int32, n)
				rc := newReceiver(t, nil)
				w := triggers.Webhook{URL: rc.srv.URL}
				// Strict: one request at a time, in stream order, so both
				// runs send the events in the same order.
				d := newTestDispatcher(t, &triggers.Trigger{Webhook: w, Ordering: triggers.Strict, Batch: tc.batch}, nil)
				var shared []byte
				for _, ev := range evs {
					shared = append(shared, ev.Raw...)
				}
				at := 0
				for i, ev := range evs {
					raw := bson.Raw(shared[at : at+len(ev.Raw) : at+len(ev.Raw)])
					at += len(ev.Raw)
					ev.Raw, ev.Token = raw, raw.Lookup("_id").Document()
					submit := d.Submit
					if owned {
						submit = d.SubmitOwned
						ev.Release = func() {
							released[i].Add(1)
							for j := range raw {
								raw[j] = 0xEE
							}
						}
					}
					if err := submit(context.Background(), ev); err != nil {
						t.Fatalf("event %d: %v", i, err)
					}
				}
				closeWithin(t, d, 10*time.Second)
				if owned {
					for i := range released {
						if got := released[i].Load(); got != 1 {
							t.Fatalf("event %d released %d times, want once", i, got)
						}
					}
				}
				for _, got := range rc.deliveries() {
					if tc.batch == nil {
						elems = append(elems, string(got.body))
						continue
					}
					var arr []json.RawMessage
					if err := json.Unmarshal(got.body, &arr); err != nil {
						t.Fatalf("batch body: %v", err)
					}
					for _, e := range arr {
						elems = append(elems, string(e))
					}
				}
				wm, ok := d.Watermark()
				if !ok {
					t.Fatal("no watermark")
				}
				return elems, wm
			}
			copied, wmCopied := run(false)
			owned, wmOwned := run(true)
			if len(copied) != n || !slices.Equal(copied, owned) {
				t.Fatalf("SubmitOwned delivered %d events, Submit %d, or they differ", len(owned), len(copied))
			}
			if !bytes.Equal(wmCopied, wmOwned) || !bytes.Equal(wmOwned, evs[n-1].Token) {
				t.Fatalf("watermarks %v and %v, want the last event's token", wmCopied, wmOwned)
			}
		})
	}
}

// TestBatchBodiesReused checks that a batched trigger reuses the bodies of
// resolved batches only when its requests go to the direct transport, and
// that every request, retries included, carries its own batch's bytes:
// each first attempt is answered 503, and its retry must send the very same
// body (signed, framed, its events in order) while other batches are being
// built in reused bodies.
func TestBatchBodiesReused(t *testing.T) {
	const events, maxEvents = 240, 6
	for _, tc := range []struct {
		name  string
		opts  []Option
		reuse bool
	}{
		{"direct transport", nil, true},
		{"net/http", []Option{WithHTTPClient(&http.Client{})}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := batchEvents(t, events, func(i int) string { return fmt.Sprintf("k%d", i%7) })
			var (
				mu    sync.Mutex
				first = map[string][]byte{} // webhook-id → the first attempt's body
				acked = map[int]bool{}
			)
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				seqs := checkBatchRequest(t, evs, r.Header, body, maxEvents)
				id := r.Header.Get("Webhook-Id")
				mu.Lock()
				defer mu.Unlock()
				was, retried := first[id]
				if !retried {
					first[id] = body
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				if !bytes.Equal(body, was) {
					t.Errorf("batch %s retried with another body:\n got %.200s\nwant %.200s", id, body, was)
				}
				for _, s := range seqs {
					acked[s] = true
				}
				w.WriteHeader(http.StatusNoContent)
			})
			d := newTestDispatcher(t, &triggers.Trigger{
				Webhook:  triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}},
				Ordering: triggers.PerDocument, Concurrency: 4,
				Retry: triggers.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
				Batch: &triggers.BatchPolicy{MaxEvents: maxEvents, MaxWait: time.Millisecond},
			}, nil, tc.opts...)
			if d.batcher.reuse != tc.reuse {
				t.Fatalf("bodies reused: %v, want %v", d.batcher.reuse, tc.reuse)
			}
			submitAndClose(t, d, evs, 30*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if len(acked) != events {
				t.Errorf("%d events acknowledged, want %d", len(acked), events)
			}
		})
	}
}

// TestInMemoryBodyCopies checks that the request the direct transport hands
// to net/http (which may read a body after RoundTrip returned) does not
// share the payload's array, which a batched trigger reuses.
func TestInMemoryBodyCopies(t *testing.T) {
	u, err := url.Parse("http://example.com/hook")
	if err != nil {
		t.Fatal(err)
	}
	s := &Sender{directBody: true, method: http.MethodPost, reqURL: u, reqHost: u.Host}
	payload := []byte(`[{"a":1}]`)
	req, _ := s.newRequestParts(context.Background(), payload)
	got := inMemoryBody(req)
	copy(payload, "XXXXXXXXX")
	body, err := io.ReadAll(got.Body)
	if err != nil || string(body) != `[{"a":1}]` {
		t.Fatalf("fallback body %q (%v), want the payload as it was", body, err)
	}
	rb, _ := got.GetBody()
	if body, _ := io.ReadAll(rb); string(body) != `[{"a":1}]` {
		t.Fatalf("fallback GetBody %q, want the payload as it was", body)
	}
}

// TestBatchSplitOnTooLarge: a batch the endpoint refuses with 413 is sent
// again in halves, split further while refused, in stream order, so that
// every event is delivered exactly once and only an event refused alone is
// dead-lettered — also without dead letters, where a refused batch must not
// be retried forever as it is.
func TestBatchSplitOnTooLarge(t *testing.T) {
	const events, maxEvents, accepted = 40, 8, 2 // the endpoint takes at most 2 events
	for _, tc := range []struct {
		name       string
		ordering   triggers.Ordering
		conc       int
		deadLetter bool
		refuse     int // an event refused even alone (-1: none)
	}{
		{"strict", triggers.Strict, 1, true, 13},
		{"per_document", triggers.PerDocument, 4, true, 13},
		{"none", triggers.None, 4, true, 13},
		{"strict without dead letters", triggers.Strict, 1, false, -1},
		{"none without dead letters", triggers.None, 4, false, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs := batchEvents(t, events, func(i int) string { return fmt.Sprintf("k%d", i%3) })
			var mu sync.Mutex
			var requests [][]int // seqs of every request, in arrival order
			var ok [][]int       // seqs of the accepted requests
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				seqs := checkBatchRequest(t, evs, r.Header, body, maxEvents)
				mu.Lock()
				defer mu.Unlock()
				requests = append(requests, seqs)
				if len(seqs) > accepted || slices.Contains(seqs, tc.refuse) {
					w.WriteHeader(http.StatusRequestEntityTooLarge)
					_, _ = io.WriteString(w, "request entity too large")
					return
				}
				ok = append(ok, seqs)
				w.WriteHeader(http.StatusNoContent)
			})
			sink := &memSink{}
			m := NewMetrics(nil)
			trig := &triggers.Trigger{
				Name:     "orders",
				Webhook:  triggers.Webhook{URL: rc.srv.URL, Secrets: []triggers.Secret{testSecret}},
				Ordering: tc.ordering, Concurrency: tc.conc, DeadLetter: tc.deadLetter,
				Retry: triggers.RetryPolicy{MaxAttempts: 3},
				Batch: &triggers.BatchPolicy{MaxEvents: maxEvents, MaxWait: time.Millisecond},
			}
			d := newTestDispatcher(t, trig, sink, WithMetrics(m))
			submitAndClose(t, d, evs, 10*time.Second)
			if tok, _ := d.Watermark(); !bytes.Equal(tok, evs[events-1].Token) {
				t.Fatal("watermark did not reach the last event")
			}
			mu.Lock()
			defer mu.Unlock()
			// Every event delivered exactly once (but the one refused alone).
			got := map[int]int{}
			for _, seqs := range ok {
				for _, s := range seqs {
					got[s]++
				}
			}
			for i := range events {
				want := 1
				if i == tc.refuse {
					want = 0
				}
				if got[i] != want {
					t.Errorf("event %d accepted %d times, want %d", i, got[i], want)
				}
			}
			// A refused request is never sent again as it is; it is split
			// into halves, which come (in strict, next, and in order).
			refused, splits := 0, 0
			seen := map[string]bool{}
			for i, seqs := range requests {
				key := fmt.Sprint(seqs)
				if seen[key] {
					t.Errorf("request %v sent twice", seqs)
				}
				seen[key] = true
				if len(seqs) <= accepted && !slices.Contains(seqs, tc.refuse) {
					continue
				}
				refused++
				if len(seqs) == 1 {
					continue
				}
				splits++
				if tc.ordering == triggers.Strict {
					half := len(seqs) / 2
					if i+1 >= len(requests) || !slices.Equal(requests[i+1], seqs[:half]) {
						t.Errorf("refused %v not followed by its first half %v: %v", seqs, seqs[:half], requests[i+1:])
					}
				}
			}
			if splits == 0 {
				t.Fatal("no request was split; the test does not exercise splitting")
			}
			if c := m.Counts("orders"); c.BatchSplits != uint64(splits) {
				t.Errorf("BatchSplits = %d, want %d", c.BatchSplits, splits)
			}
			if tc.ordering == triggers.Strict {
				var order []int
				for _, seqs := range ok {
					order = append(order, seqs...)
				}
				if !slices.IsSorted(order) {
					t.Errorf("strict: accepted events out of order: %v", order)
				}
			}
			dls := sink.All()
			if tc.refuse < 0 {
				if len(dls) != 0 {
					t.Fatalf("%d dead letters, want none", len(dls))
				}
				return
			}
			if len(dls) != 1 {
				t.Fatalf("%d dead letters, want 1 (event %d, refused alone)", len(dls), tc.refuse)
			}
			dl, ev := dls[0], evs[tc.refuse]
			if dl.WebhookID != WebhookID("orders", ev.Token) || !bytes.Equal(dl.Event, ev.Raw) ||
				dl.LastStatus != http.StatusRequestEntityTooLarge || dl.LastResponse != "request entity too large" {
				t.Errorf("dead letter is not event %d refused with 413: %+v", tc.refuse, dl)
			}
			if c := m.Counts("orders"); c.Deliveries[OutcomeDelivered] != events-1 || c.Deliveries[OutcomeDeadLettered] != 1 {
				t.Errorf("deliveries by outcome %v, want %d delivered and 1 dead-lettered", c.Deliveries, events-1)
			}
		})
	}
}

// TestBatchElements: batchElements finds the elements of every batch body
// BuildBatchMessage builds — keys, strings and nesting full of commas,
// brackets, quotes and escapes — exactly as BuildMessage builds each, and
// refuses a body that is not an array of the expected count.
func TestBatchElements(t *testing.T) {
	tricky := []string{`a,b`, `[x]`, `{y}`, `"q"`, `back\slash`, `\",[{`, "tab\tnew\nline", "ünï", ``}
	var evs []Event
	for i, s := range tricky {
		raw, err := bson.Marshal(bson.D{
			{Key: "_id", Value: bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", i)}}},
			{Key: "operationType", Value: "insert"},
			{Key: "fullDocument", Value: bson.D{{Key: s + `,"k":[`, Value: s}, {Key: "a", Value: bson.A{s, bson.D{{Key: "n", Value: s}}, bson.A{}}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, Event{Raw: raw, Token: bson.Raw(fmt.Sprintf("tok%d", i))})
	}
	for _, format := range []string{triggers.FormatJSON, triggers.FormatCanonical, triggers.FormatCloudEvents} {
		w := triggers.Webhook{URL: "http://localhost/x", Format: format}
		for n := 1; n <= len(evs); n++ {
			msg, err := BuildBatchMessage("t", w, evs[:n])
			if err != nil {
				t.Fatal(err)
			}
			elems, ok := batchElements(msg.Body, n)
			if !ok {
				t.Fatalf("%s, %d events: batchElements refused %s", format, n, msg.Body)
			}
			for i, e := range elems {
				one, err := BuildMessage("t", w, evs[i])
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(e, one.Body) {
					t.Errorf("%s, element %d of %d: %s, want %s", format, i, n, e, one.Body)
				}
			}
			if got := joinElements(elems); !bytes.Equal(got, msg.Body) {
				t.Errorf("%s: joinElements = %s, want the body %s", format, got, msg.Body)
			}
			if _, ok := batchElements(msg.Body, n+1); ok {
				t.Errorf("%s: batchElements accepted %d elements as %d", format, n, n+1)
			}
		}
	}
	for _, bad := range []string{``, `[`, `{}`, `[]`, `[1,]`, `[,1]`, `[1,2`, `["a]`, `[{]`, `[}]`, `[1]]`, `["\"]`} {
		if elems, ok := batchElements([]byte(bad), 1); ok {
			t.Errorf("batchElements(%q, 1) = %q, want refused", bad, elems)
		}
	}
}

// TestBatchSplitSendsTheRefusedBytes: the halves of a batch refused as too
// large carry the elements of the refused request, byte for byte, not
// payloads built again: a payload that depends on $$NOW is sent as it was
// (a rebuild could also fail where the first build succeeded, leaving the
// events neither delivered nor dead-lettered).
func TestBatchSplitSendsTheRefusedBytes(t *testing.T) {
	const events, maxEvents = 16, 8
	// Event 0 goes first, alone, and is held at the endpoint until the
	// batcher formed the two full batches of the others: with nothing in
	// flight, a batch is sealed with its first event, which the endpoint
	// accepts without having refused it.
	evs := batchEvents(t, 1+events, func(i int) string { return fmt.Sprintf("k%d", i) })
	first, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	sent := map[string]bool{} // elements of every refused request
	var accepted [][]byte
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if n == 1 {
			close(first)
			<-release
			w.WriteHeader(http.StatusNoContent)
			return
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(body, &elems); err != nil {
			t.Errorf("body is not a JSON array: %s", body)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(elems) > 1 {
			for _, e := range elems {
				sent[string(e)] = true
			}
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		accepted = append(accepted, body)
		w.WriteHeader(http.StatusNoContent)
	})
	payload, err := mql.CompileExpr(bson.D{{Key: "seq", Value: "$fullDocument.seq"}, {Key: "at", Value: "$$NOW"}})
	if err != nil {
		t.Fatal(err)
	}
	trig := &triggers.Trigger{
		Name:     "orders",
		Webhook:  triggers.Webhook{URL: rc.srv.URL, Payload: payload},
		Ordering: triggers.Strict, Concurrency: 1, DeadLetter: true,
		Retry: triggers.RetryPolicy{MaxAttempts: 1},
		Batch: &triggers.BatchPolicy{MaxEvents: maxEvents, MaxWait: time.Hour},
	}
	d := newTestDispatcher(t, trig, &memSink{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release) // a failure before the release below
		}
	})
	for i, ev := range evs {
		if err := d.Submit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			<-first
		}
	}
	// Every event is taken and the first batch sealed (full) while event 0
	// is in flight; the second fills behind it.
	waitFor(t, func() bool {
		d.batcher.mu.Lock()
		defer d.batcher.mu.Unlock()
		return d.batcher.inflight == 2 && len(d.tracker.Ready()) == 0
	})
	close(release)
	closeWithin(t, d, 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if len(accepted) != events {
		t.Fatalf("%d events accepted, want %d", len(accepted), events)
	}
	for _, body := range accepted {
		elem := body[1 : len(body)-1]
		if !sent[string(elem)] {
			t.Errorf("accepted element %s was not in any refused request: built again", elem)
		}
	}
}

// TestSplitPartUnsplittableBodySendsEachEvent: should a refused request's
// body ever not be the batcher's array of one element per event, its
// events go one by one, as unbatched events would, and are done — never
// left undone while the trigger runs on.
func TestSplitPartUnsplittableBodySendsEachEvent(t *testing.T) {
	evs := batchEvents(t, 3, func(i int) string { return fmt.Sprintf("k%d", i) })
	var mu sync.Mutex
	var got []int
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seqOf(t, body))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	trig := &triggers.Trigger{
		Name: "orders", Webhook: triggers.Webhook{URL: rc.srv.URL}, Ordering: triggers.Strict, Concurrency: 1,
		DeadLetter: true, Retry: triggers.RetryPolicy{MaxAttempts: 1},
		Batch: &triggers.BatchPolicy{MaxEvents: 3, MaxWait: time.Millisecond},
	}
	d := newTestDispatcher(t, trig, &memSink{})
	tr := NewTracker[job](triggers.None, len(evs))
	var tks []*Ticket[job]
	for _, ev := range evs {
		tk, err := tr.Track(context.Background(), ev.Token, ev.Key, job{ev: ev})
		if err != nil {
			t.Fatal(err)
		}
		tks = append(tks, tk)
	}
	if !d.splitPart(context.Background(), tks, 0, Message{ID: "batch_x", Body: []byte(`[{"not":"three"}]`)}, nil) {
		t.Fatal("splitPart reported the events not done")
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("received events %v, want 0, 1, 2 one by one", got)
	}
}
