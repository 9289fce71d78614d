package dispatcher

import (
	"context"
	"errors"
	"github.com/changehook/changehook/triggers"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestPayloadFailure: a payload expression that cannot produce a document
// is dead-lettered without a request, or, without dead letters, blocks the
// event (never done) until Close.
func TestPayloadFailure(t *testing.T) {
	notDoc, err := mql.CompileExpr("$operationType")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("dead letter", func(t *testing.T) {
		rc := newReceiver(t, nil)
		sink := &memSink{}
		var mu sync.Mutex
		var observed []Attempt
		d := newTestDispatcher(t, &triggers.Trigger{Name: "orders", Webhook: triggers.Webhook{URL: rc.srv.URL, Payload: notDoc}, DeadLetter: true}, sink,
			WithObserver(func(a Attempt) {
				mu.Lock()
				defer mu.Unlock()
				a.DocumentKey = append(bson.Raw(nil), a.DocumentKey...)
				observed = append(observed, a)
			}))
		if err := d.Submit(context.Background(), testEvent(t, 1, "k1")); err != nil {
			t.Fatal(err)
		}
		closeWithin(t, d, 10*time.Second)
		// The observers (the delivery history) see the attempt that sent
		// nothing.
		mu.Lock()
		if len(observed) != 1 || observed[0].Number != 1 || observed[0].Reason != ReasonPayload || observed[0].Status != 0 ||
			observed[0].Err == nil || !strings.Contains(observed[0].Err.Error(), "must evaluate to a document") ||
			observed[0].Operation != "insert" || observed[0].DocumentKey.Lookup("_id").StringValue() != "k1" || observed[0].Start.IsZero() {
			t.Errorf("observed %+v, want one payload_error attempt with the event's document key", observed)
		}
		mu.Unlock()
		dls := sink.All()
		if len(dls) != 1 || dls[0].LastReason != ReasonPayload || dls[0].Attempts != 0 ||
			!strings.Contains(dls[0].LastError, "must evaluate to a document") {
			t.Fatalf("dead letters = %+v, want one payload_error without attempts", dls)
		}
		if n := len(rc.deliveries()); n != 0 {
			t.Fatalf("%d requests sent for an unbuildable payload", n)
		}
	})
	t.Run("blocks without dead letters", func(t *testing.T) {
		rc := newReceiver(t, nil)
		clock := newFakeClock()
		slept := make(chan struct{}, 1)
		clock.onSleep = func(int) {
			select {
			case slept <- struct{}{}:
			default:
			}
		}
		d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL, Payload: notDoc}, Retry: triggers.RetryPolicy{MaxBackoff: time.Minute}}, nil, WithClock(clock))
		if err := d.Submit(context.Background(), testEvent(t, 1, "")); err != nil {
			t.Fatal(err)
		}
		<-slept // it is retrying the payload
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := d.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close = %v, want the grace period to end", err)
		}
		if _, ok := d.Watermark(); ok {
			t.Fatal("a never-delivered event was marked done")
		}
		for _, s := range clock.Sleeps() {
			if s != time.Minute {
				t.Fatalf("payload retry waited %v, want the max backoff", s)
			}
		}
	})
}

// countingTransport counts round trips.
type countingTransport struct {
	n    atomic.Int32
	base http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

func TestWithHTTPClient(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Redirect(w, r, "/moved", http.StatusFound)
	})
	tr := &countingTransport{base: http.DefaultTransport}
	base := &http.Client{Transport: tr, Timeout: time.Hour} // follows redirects by default
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL + "/h"}, Retry: triggers.RetryPolicy{MaxAttempts: 3}},
		WithHTTPClient(base))
	res, err := s.Deliver(context.Background(), testEvent(t, 1, ""))
	if err == nil || res.Reason != ReasonRedirect || res.Status != http.StatusFound {
		t.Fatalf("Deliver = %+v, %v; want a permanent redirect failure", res, err)
	}
	if n := tr.n.Load(); n != 1 {
		t.Fatalf("transport saw %d requests, want 1 (the given client is used and redirects are not followed)", n)
	}
	if base.CheckRedirect != nil || base.Timeout != time.Hour {
		t.Fatal("WithHTTPClient modified the caller's client")
	}
}

func TestCustomCheckRetry(t *testing.T) {
	rc := newReceiver(t, statuses(418, 200))
	var calls atomic.Int32
	policy := func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		calls.Add(1)
		if resp != nil && resp.StatusCode == http.StatusTeapot {
			return true, errors.New("teapot") // not an *AttemptError
		}
		return DefaultCheckRetry(ctx, resp, err)
	}
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Retry: triggers.RetryPolicy{MaxAttempts: 3}},
		WithCheckRetry(policy), WithClock(newFakeClock()))
	res, err := s.Deliver(context.Background(), testEvent(t, 1, ""))
	if err != nil || res.Attempts != 2 || calls.Load() != 2 {
		t.Fatalf("Deliver = %+v, %v after %d policy calls; want success on attempt 2", res, err, calls.Load())
	}
}

func TestSystemClockSleep(t *testing.T) {
	var c SystemClock
	if err := c.Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0) = %v", err)
	}
	if err := c.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep(1ms) = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := c.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a canceled ctx = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Sleep did not return promptly on cancellation")
	}
	if c.Now().IsZero() {
		t.Fatal("Now is zero")
	}
}
