package dispatcher

import (
	"context"
	"sync"
)

// ByteBudget bounds the bytes of events in flight shared by several
// dispatchers (the process-wide limits.max_inflight_bytes). A holder that
// holds nothing of it may always take one event, whatever its size, so an
// event larger than the budget passes alone and no trigger can be starved
// into a deadlock by the others: the total exceeds the limit by at most one
// event per holder. It is safe for concurrent use.
type ByteBudget struct {
	limit int64

	mu   sync.Mutex
	used int64
	wake chan struct{} // closed (and reset) on every release
}

// NewByteBudget returns a budget of limit bytes (at least 1).
func NewByteBudget(limit int64) *ByteBudget { return &ByteBudget{limit: max(limit, 1)} }

// Limit returns the budget's size in bytes.
func (b *ByteBudget) Limit() int64 { return b.limit }

// Used returns the bytes held now.
func (b *ByteBudget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// acquire takes n bytes, waiting while they do not fit; when alone reports
// that the caller holds nothing of the budget (nil: nothing is held at all)
// it takes them at once. alone is called with b's lock held and must not
// call back into b. It returns false when ctx ends or stop is closed first.
// blocking (nil: none) is called each time it is about to wait.
func (b *ByteBudget) acquire(ctx context.Context, n int64, alone func() bool, stop <-chan struct{}, blocking func()) bool {
	for {
		b.mu.Lock()
		if b.used+n <= b.limit || b.used == 0 || alone != nil && alone() {
			b.used += n
			b.mu.Unlock()
			return true
		}
		if b.wake == nil {
			b.wake = make(chan struct{})
		}
		ch := b.wake
		b.mu.Unlock()
		if blocking != nil {
			blocking()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-stop:
			return false
		}
	}
}

// release gives back n bytes.
func (b *ByteBudget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	if b.wake != nil {
		close(b.wake)
		b.wake = nil
	}
	b.mu.Unlock()
}
