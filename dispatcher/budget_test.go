package dispatcher

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// blocked reports whether TrackSized waits: it gives it a short deadline and
// expects the deadline error (an admitted event returns at once).
func blocked(t *testing.T, tr *Tracker[int], n int, size int64) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := tr.TrackSized(ctx, tok(n), NoKey, size, n)
	if err == nil {
		t.Fatalf("event %d (%d bytes) admitted, want it to wait (held %d bytes)", n, size, tr.HeldBytes())
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// mustTrack admits event n of size bytes without waiting.
func mustTrack(t *testing.T, tr *Tracker[int], n int, size int64) *Ticket[int] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // an upper bound only
	defer cancel()
	tk, err := tr.TrackSized(ctx, tok(n), NoKey, size, n)
	if err != nil {
		t.Fatalf("event %d (%d bytes): %v (held %d bytes)", n, size, err, tr.HeldBytes())
	}
	return tk
}

func TestTrackerByteBudget(t *testing.T) {
	tr := NewTracker[int](triggers.None, 100)
	tr.SetByteBudgets(1000, nil)
	a := mustTrack(t, tr, 1, 400)
	mustTrack(t, tr, 2, 400)
	if !blocked(t, tr, 3, 400) {
		t.Fatal("third 400-byte event did not wait for the 1000-byte budget")
	}
	a.Resolve(true)
	mustTrack(t, tr, 3, 400)
	if got := tr.HeldBytes(); got != 800 {
		t.Errorf("held %d bytes, want 800", got)
	}
}

// TestTrackerOversizedEventPassesAlone: an event larger than the budget is
// admitted once nothing else is held, and then holds everything back.
func TestTrackerOversizedEventPassesAlone(t *testing.T) {
	tr := NewTracker[int](triggers.Strict, 10)
	tr.SetByteBudgets(1000, nil)
	big := mustTrack(t, tr, 1, 5000) // alone: admitted at once
	if !blocked(t, tr, 2, 10) {
		t.Fatal("a small event was admitted beside an oversized one")
	}
	<-tr.Ready()
	big.Resolve(true)
	small := mustTrack(t, tr, 2, 10)
	if !blocked(t, tr, 3, 5000) {
		t.Fatal("an oversized event was admitted beside a held one")
	}
	<-tr.Ready()
	small.Resolve(true)
	mustTrack(t, tr, 3, 5000)
}

// TestSharedByteBudget: two trackers share a process-wide budget; one
// holding nothing always gets an event (no starvation), and bytes are given
// back when the watermark passes the events, or when a tracker is closed
// with abandoned events.
func TestSharedByteBudget(t *testing.T) {
	shared := NewByteBudget(1000)
	a := NewTracker[int](triggers.None, 100)
	a.SetByteBudgets(0, shared)
	b := NewTracker[int](triggers.None, 100)
	b.SetByteBudgets(0, shared)

	a1 := mustTrack(t, a, 1, 800)
	mustTrack(t, b, 1, 500) // b holds nothing: admitted although 1300 > 1000
	if !blocked(t, b, 2, 100) {
		t.Fatal("b's second event was admitted with the shared budget exceeded")
	}
	if !blocked(t, a, 2, 100) {
		t.Fatal("a's second event was admitted with the shared budget exceeded")
	}
	a1.Resolve(true)
	if got := shared.Used(); got != 500 {
		t.Errorf("shared budget holds %d bytes after a's event passed, want 500", got)
	}
	b2 := mustTrack(t, b, 2, 100)
	b2.Resolve(false) // abandoned: never passed by the watermark
	a.Close()
	b.Close()
	if got := shared.Used(); got != 600 {
		t.Errorf("shared budget holds %d bytes with b's events unresolved or abandoned, want 600", got)
	}
	for tk := range b.Ready() {
		if tk.Value == 1 {
			tk.Resolve(true)
		}
	}
	if got := shared.Used(); got != 0 {
		t.Errorf("shared budget holds %d bytes after both trackers were closed and drained, want 0", got)
	}
}
