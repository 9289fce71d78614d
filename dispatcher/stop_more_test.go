package dispatcher

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestStopSendsNoSecondRequestAfter401: an OAuth2 attempt on the wire when
// Stop is called is answered 401 after the stop. sendOnce then fetches a
// new token and sends the request again — a second request made after
// Stop, although Stop "starts nothing" and README's pause row says
// nothing more is sent but the request already on the wire. sendOnce's
// own comment calls the second request "a new start", but only a rate
// limit wait (none here, or one with a token available) is checked
// against the stopped context.
func TestStopSendsNoSecondRequestAfter401(t *testing.T) {
	tokens := newTokenServer(t, 3600)
	var requests atomic.Int64
	entered, release := make(chan struct{}, 1), make(chan struct{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if requests.Add(1) == 1 {
			entered <- struct{}{}
			<-release
			w.WriteHeader(http.StatusUnauthorized) // tok-1 revoked meanwhile
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	d := newTestDispatcher(t, &triggers.Trigger{Ordering: triggers.Strict, Webhook: triggers.Webhook{URL: hook.URL,
		Auth: &triggers.Auth{OAuth2: &triggers.OAuth2ClientCredentials{TokenURL: tokens.URL, ClientID: "changehook", ClientSecret: "sup3rs3cret"}}}}, nil)
	if err := d.Submit(context.Background(), testEvent(t, 1, "")); err != nil {
		t.Fatal(err)
	}
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- stopWithin(t, d, 10*time.Second, nil) }()
	<-d.workCtx.Done() // Stop has begun: nothing new starts
	close(release)
	<-stopped
	if n := requests.Load(); n != 1 {
		t.Errorf("the webhook got %d requests, want 1: only the request on the wire at Stop; "+
			"the 401's re-send with a fresh token (%d token requests) was started after Stop", n, tokens.requests.Load())
	}
}

// slowAckSink stores a dead letter at once but acknowledges it only after
// ack — as a MongoDB insert whose reply is on its way does — returning
// ctx's error when ctx ends first (the driver's behaviour: the write may
// well be applied on the server).
type slowAckSink struct {
	memSink
	ack     time.Duration
	writing chan struct{}
}

func (s *slowAckSink) PutDeadLetter(ctx context.Context, dl DeadLetter) error {
	_ = s.memSink.PutDeadLetter(ctx, dl)
	s.writing <- struct{}{}
	select {
	case <-time.After(s.ack):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestStopLetsADeadLetterWriteUnderWayFinish: an event whose delivery
// failed for good before Stop is being dead-lettered when Stop is called
// (a pause). The write is under way, as an attempt on the wire is, and its
// reply comes well within the grace period, but putDeadLetter runs under
// workCtx, which Stop cancels at once: the write is cut off, the event
// stays undone although its dead letter is stored, so after the resume it
// is delivered (or dead-lettered) again while the dead letter stays in the
// DLQ, where a replay delivers it once more.
func TestStopLetsADeadLetterWriteUnderWayFinish(t *testing.T) {
	rc := newReceiver(t, statuses(http.StatusBadRequest)) // permanent: dead-lettered after one attempt
	sink := &slowAckSink{ack: 200 * time.Millisecond, writing: make(chan struct{}, 1)}
	d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Ordering: triggers.Strict,
		Retry: triggers.RetryPolicy{MaxAttempts: 1}, DeadLetter: true}, sink)
	ev := testEvent(t, 1, "")
	if err := d.Submit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	<-sink.writing
	err := stopWithin(t, d, 10*time.Second, nil)
	stored := len(sink.All())
	if _, done := d.Watermark(); stored > 0 && !done {
		t.Errorf("Stop = %v: the dead letter was stored (%d) but the event is left undone: "+
			"the write under way was cut off at once, not let finish within the grace period", err, stored)
	}
}
