package scenarioutil

import (
	"context"
	"fmt"
	"sync"
)

// Log is an append-only, goroutine-safe list that callers can wait on: a
// receiver appends what it gets, a test or a demo waits until the list
// satisfies a condition. The zero value is ready to use.
//
// A Log keeps everything appended to it; scenarios bound their runs, so the
// list stays small (at most a few thousand entries).
type Log[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced on every Append
}

// Append adds v and wakes every waiter.
func (l *Log[T]) Append(v T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.items = append(l.items, v)
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}

// Len returns the number of entries.
func (l *Log[T]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.items)
}

// Snapshot returns a copy of the entries, oldest first.
func (l *Log[T]) Snapshot() []T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]T(nil), l.items...)
}

// Wait blocks until cond, called with the entries after every Append (and
// once at once), returns true, and returns those entries. It returns the last
// entries seen and an error wrapping ctx.Err() when ctx ends first.
//
// The slice passed to cond and returned is a read-only view shared with the
// Log (entries are never rewritten, so reading it is safe while others
// append); copy it before modifying it.
func (l *Log[T]) Wait(ctx context.Context, cond func([]T) bool) ([]T, error) {
	for {
		l.mu.Lock()
		items := l.items[:len(l.items):len(l.items)]
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		changed := l.changed
		l.mu.Unlock()
		if cond(items) {
			return items, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return items, fmt.Errorf("condition still unmet with %d log entries: %w", len(items), ctx.Err())
		}
	}
}

// WaitLen waits until the log holds at least n entries (see Wait).
func (l *Log[T]) WaitLen(ctx context.Context, n int) ([]T, error) {
	return l.Wait(ctx, func(items []T) bool { return len(items) >= n })
}

// WaitMatching waits until at least n entries satisfy keep and returns those
// entries (a fresh slice), oldest first (see Wait).
func (l *Log[T]) WaitMatching(ctx context.Context, keep func(T) bool, n int) ([]T, error) {
	var kept []T
	_, err := l.Wait(ctx, func(items []T) bool {
		kept = kept[:0]
		for _, v := range items {
			if keep(v) {
				kept = append(kept, v)
			}
		}
		return len(kept) >= n
	})
	return kept, err
}

// ForTrigger returns a WaitMatching filter keeping the deliveries of one
// trigger.
func ForTrigger(name string) func(Delivery) bool {
	return func(d Delivery) bool { return d.Trigger == name }
}
