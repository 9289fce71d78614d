package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// stopWithin stops d for why with a grace period and returns Stop's
// error; it fails the test when Stop does not return within it.
func stopWithin(t *testing.T, d *Dispatcher, grace time.Duration, why error) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := d.Stop(ctx, why)
	if ctx.Err() != nil {
		t.Fatalf("Stop returned after its grace period (%v): %v", grace, err)
	}
	return err
}

// hourly is a Backoff without jitter: every retry waits an hour.
func hourly(_, _ time.Duration, _ int, _ *http.Response) time.Duration { return time.Hour }

// TestStopStartsNothing: Stop ends the retries' backoffs, the queued
// events and an open batch's wait at once: no request is sent after it,
// nothing is dead-lettered, no outcome is counted, and every event stays
// undone (the watermark does not pass it), for each ordering and batched.
func TestStopStartsNothing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ordering triggers.Ordering
		batch    *triggers.BatchPolicy
		sent     int // requests made before the stop
	}{
		{name: "strict", ordering: triggers.Strict, sent: 1},
		{name: "per_document", ordering: triggers.PerDocument, sent: 3},
		{name: "none", ordering: triggers.None, sent: 3},
		// The first event's batch waits to retry; the next two wait in an
		// open batch for it (max_wait half an hour).
		{name: "batched", ordering: triggers.PerDocument, batch: &triggers.BatchPolicy{MaxEvents: 10, MaxWait: 30 * time.Minute}, sent: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(nil)
			clock := newManualClock()
			rc := newReceiver(t, statuses(http.StatusInternalServerError))
			sink := &memSink{}
			d := newTestDispatcher(t, &triggers.Trigger{
				Webhook:     triggers.Webhook{URL: rc.srv.URL},
				Ordering:    tc.ordering,
				Concurrency: 4,
				Retry:       triggers.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Hour, MaxBackoff: time.Hour},
				DeadLetter:  true,
				Batch:       tc.batch,
			}, sink, WithClock(clock), WithMetrics(m), WithBackoff(hourly))
			// backoffs waits until n requests have failed and wait for
			// their hour-long backoff (a batch's max_wait is not one).
			backoffs := func(n int) {
				for waiting := 0; waiting < n; {
					if <-clock.started == time.Hour {
						waiting++
					}
				}
			}
			submit := func(i int) {
				if err := d.Submit(context.Background(), testEvent(t, i, string(rune('a'+i)))); err != nil {
					t.Fatal(err)
				}
			}
			if tc.batch != nil {
				submit(1)
				backoffs(1)
				submit(2)
				submit(3)
			} else {
				for i := 1; i <= 3; i++ {
					submit(i)
				}
				backoffs(tc.sent)
			}

			err := stopWithin(t, d, 10*time.Second, errors.New("pause"))
			var ue *UnfinishedError
			if !errors.As(err, &ue) || ue.Events != 3 || !errors.Is(err, ErrStopped) {
				t.Fatalf("Stop = %v, want an *UnfinishedError of 3 events wrapping ErrStopped", err)
			}
			if want := "stop dispatcher for pause: 3 events left undone: " + ErrStopped.Error(); err.Error() != want {
				t.Errorf("Stop's error = %q, want %q", err, want)
			}
			if got := len(rc.deliveries()); got != tc.sent {
				t.Errorf("%d requests, want the %d made before the stop", got, tc.sent)
			}
			if dls := sink.All(); len(dls) != 0 {
				t.Errorf("dead letters after the stop: %d, want none", len(dls))
			}
			if got := m.Counts("orders").Deliveries; len(got) != 0 {
				t.Errorf("outcomes after the stop = %v, want none", got)
			}
			if tok, ok := d.Watermark(); ok {
				t.Errorf("Watermark = %v after the stop, want none: no event is done", tok)
			}
		})
	}
}

// TestStopLetsTheAttemptOnTheWireFinish: an attempt already sent when Stop
// is called finishes within the grace period and counts (its event is
// delivered, the watermark passes it), while the event queued behind it
// is not sent.
func TestStopLetsTheAttemptOnTheWireFinish(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-release
		w.WriteHeader(http.StatusNoContent)
	})
	d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Ordering: triggers.Strict}, nil)
	first, second := testEvent(t, 1, ""), testEvent(t, 2, "")
	for _, ev := range []Event{first, second} {
		if err := d.Submit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- stopWithin(t, d, 10*time.Second, nil) }()
	<-d.workCtx.Done() // Stop has begun: nothing new starts
	close(release)

	err := <-stopped
	var ue *UnfinishedError
	if !errors.As(err, &ue) || ue.Events != 1 || !errors.Is(err, ErrStopped) {
		t.Fatalf("Stop = %v, want an *UnfinishedError of 1 event (the one never sent)", err)
	}
	if want := "stop dispatcher: 1 events left undone: " + ErrStopped.Error(); err.Error() != want {
		t.Errorf("Stop's error = %q, want %q", err, want)
	}
	if got := len(rc.deliveries()); got != 1 {
		t.Errorf("%d requests, want 1: the second event is not sent after the stop", got)
	}
	if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, first.Token) {
		t.Errorf("Watermark = %v, %v; want the first event's token: its attempt finished and counts", tok, ok)
	}
}

// TestStopCutsTheAttemptAtTheGracePeriod: an attempt still on the wire
// when Stop's grace period ends is cut off, and Stop says so with the
// grace context's error.
func TestStopCutsTheAttemptAtTheGracePeriod(t *testing.T) {
	entered := make(chan struct{}, 1)
	rc := newReceiver(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-r.Context().Done()
	})
	d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}}, nil)
	if err := d.Submit(context.Background(), testEvent(t, 1, "")); err != nil {
		t.Fatal(err)
	}
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no grace
	err := d.Stop(ctx, nil)
	var ue *UnfinishedError
	if !errors.As(err, &ue) || ue.Events != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Stop = %v, want an *UnfinishedError of 1 event wrapping the grace context's error", err)
	}
	if _, ok := d.Watermark(); ok {
		t.Error("the cut-off event is done")
	}
}

// TestStopWhenEverythingIsDone: Stop of a dispatcher whose events were all
// delivered returns nil, and a second Stop or Close waits for the first.
func TestStopWhenEverythingIsDone(t *testing.T) {
	rc := newReceiver(t, nil)
	d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}}, nil)
	if err := d.Submit(context.Background(), testEvent(t, 1, "")); err != nil {
		t.Fatal(err)
	}
	for len(rc.deliveries()) == 0 || !d.Idle() {
		runtimeGosched()
	}
	if err := stopWithin(t, d, 10*time.Second, nil); err != nil {
		t.Fatalf("Stop = %v, want nil: every event was delivered", err)
	}
	if err := stopWithin(t, d, 10*time.Second, nil); err != nil {
		t.Fatalf("second Stop = %v, want nil", err)
	}
	if err := d.Close(context.Background()); err != nil {
		t.Fatalf("Close after Stop = %v, want nil", err)
	}
}
