package dispatcher

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestWaitClock: Total adds the finished waits and the one going on, a
// second Begin does not restart a wait, End without a wait does nothing,
// and Total never falls, even when a wait ends at a time older than a
// read that counted it.
func TestWaitClock(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	var c WaitClock
	if got := c.Total(t0); got != 0 || !c.Since().IsZero() {
		t.Fatalf("zero clock: total %v, since %v", got, c.Since())
	}
	c.End(at(time.Second)) // no wait going on
	c.Begin(at(1 * time.Second))
	c.Begin(at(2 * time.Second)) // goes on from 1s
	if got := c.Since(); !got.Equal(at(time.Second)) {
		t.Fatalf("since %v, want the first Begin's", got)
	}
	if got := c.Total(at(4 * time.Second)); got != 3*time.Second {
		t.Fatalf("total during a wait = %v, want 3s", got)
	}
	c.End(at(5 * time.Second))
	if got := c.Total(at(9 * time.Second)); got != 4*time.Second || !c.Since().IsZero() {
		t.Fatalf("after the wait: total %v, since %v; want 4s, none", got, c.Since())
	}
	c.Begin(at(10 * time.Second))
	if got := c.Total(at(12 * time.Second)); got != 6*time.Second {
		t.Fatalf("second wait: total %v, want 6s", got)
	}
	c.End(at(11 * time.Second)) // the waiter read its clock before that read
	if got := c.Total(at(13 * time.Second)); got != 6*time.Second {
		t.Fatalf("after a wait ended behind a read: total %v, want 6s (never less than read before)", got)
	}
}

// TestTrackerWaitClock: Track marks the time it blocks at capacity on the
// tracker's wait clock, and only that: admissions that do not block add
// nothing.
func TestTrackerWaitClock(t *testing.T) {
	clock := newFakeClock()
	var c WaitClock
	tr := NewTracker[int](triggers.None, 1)
	// The tracker reads the clock first when it is about to block.
	reads := make(chan struct{}, 1)
	tr.SetWaitClock(&c, func() time.Time {
		select {
		case reads <- struct{}{}:
		default:
		}
		return clock.Now()
	})
	ctx := context.Background()
	if _, err := tr.Track(ctx, tok(0), NoKey, 0); err != nil {
		t.Fatal(err)
	}
	first := <-tr.Ready()
	if got := c.Total(clock.Now()); got != 0 {
		t.Fatalf("after an admission that did not block: %v", got)
	}
	returned := make(chan error, 1)
	go func() {
		_, err := tr.Track(ctx, tok(1), NoKey, 1)
		returned <- err
	}()
	<-reads
	for c.Since().IsZero() { // Begin stores it just after reading the clock
		runtime.Gosched()
	}
	_ = clock.Sleep(ctx, 3*time.Second)
	if got := c.Total(clock.Now()); got != 3*time.Second {
		t.Fatalf("while Track blocks: %v, want 3s", got)
	}
	first.Resolve(true)
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
	_ = clock.Sleep(ctx, time.Hour)
	if got := c.Total(clock.Now()); got != 3*time.Second || !c.Since().IsZero() {
		t.Fatalf("after Track returned: total %v, since %v; want 3s, none", got, c.Since())
	}
}
