package dispatcher

import (
	"sync"
	"time"
)

// WaitClock adds up the time a goroutine spends waiting, and tells readers
// on other goroutines how long, including a wait still going on. Safe for
// concurrent use; the zero value is ready to use. Waits are marked only
// where a goroutine actually blocks (not per event), so the lock is taken
// rarely on a busy path.
//
// The runner gives each trigger (or partition) two: the time its watch loop
// waited for the change stream, and the time it waited for the dispatcher
// to take an event (WithSubmitWait). Which of the two grows says whether
// reading or delivering limits the trigger.
type WaitClock struct {
	mu       sync.Mutex
	total    time.Duration // the finished waits
	since    time.Time     // when the current wait began (zero: none)
	reported time.Duration // the largest Total returned
}

// Begin marks the start of a wait at now; a wait already begun goes on.
func (c *WaitClock) Begin(now time.Time) {
	c.mu.Lock()
	if c.since.IsZero() {
		c.since = now
	}
	c.mu.Unlock()
}

// End ends the current wait at now, adding it to the total; without one
// it does nothing.
func (c *WaitClock) End(now time.Time) {
	c.mu.Lock()
	if !c.since.IsZero() {
		c.total += max(now.Sub(c.since), 0)
		c.since = time.Time{}
	}
	c.mu.Unlock()
}

// Total returns the time spent waiting up to now: the finished waits and
// the current one so far. It never returns less than it returned before
// (a counter): a wait ended with a time older than a read that counted it
// (the waiter read its clock first) keeps the larger figure.
func (c *WaitClock) Total(now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.total
	if !c.since.IsZero() {
		t += max(now.Sub(c.since), 0)
	}
	c.reported = max(c.reported, t)
	return c.reported
}

// Since returns when the current wait began (zero: none is going on).
func (c *WaitClock) Since() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.since
}
