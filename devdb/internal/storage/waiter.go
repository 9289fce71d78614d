package storage

import "sync"

// A Waiter is woken when a committed oplog entry interests it: a change
// stream waiting in an awaitData getMore registers one with the namespace
// test of its scope, so that a commit wakes only the streams it can concern
// instead of every waiting stream (with many idle streams, a write to one
// collection — or to a state database — would otherwise make all of them
// rescan the oplog).
//
// Wake-ups may be spurious (a woken waiter rescans and may find nothing for
// it), but never missed: a commit whose entries interest the waiter and
// that happens after Wait returned always leaves a wake-up in C.
type Waiter struct {
	e        *Engine
	c        chan struct{}
	interest func(*OplogEntry) bool
}

// waiters is the Engine's set of registered Waiters.
type waiters struct {
	mu  sync.Mutex
	set map[*Waiter]struct{}
}

// Wait registers a Waiter woken by every commit with an oplog entry for
// which interest returns true (nil: every commit). interest sees only the
// entry's header — TS, Op, DB, Coll, ToDB and ToColl — is called from the
// committing goroutine and must be cheap, side-effect free and safe for
// concurrent use. Close the Waiter when done.
func (e *Engine) Wait(interest func(*OplogEntry) bool) *Waiter {
	w := &Waiter{e: e, c: make(chan struct{}, 1), interest: interest}
	e.waiters.mu.Lock()
	if e.waiters.set == nil {
		e.waiters.set = map[*Waiter]struct{}{}
	}
	e.waiters.set[w] = struct{}{}
	e.waiters.mu.Unlock()
	return w
}

// C receives a value after a commit that interests the waiter. It holds at
// most one pending wake-up.
func (w *Waiter) C() <-chan struct{} { return w.c }

// Close unregisters the waiter. It is safe to call more than once.
func (w *Waiter) Close() {
	w.e.waiters.mu.Lock()
	delete(w.e.waiters.set, w)
	w.e.waiters.mu.Unlock()
}

// notify wakes the waiters interested in one of heads, the headers of the
// entries of a transaction that just committed.
func (e *Engine) notify(heads []OplogEntry) {
	e.waiters.mu.Lock()
	defer e.waiters.mu.Unlock()
	for w := range e.waiters.set {
		if !w.wants(heads) {
			continue
		}
		select {
		case w.c <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

func (w *Waiter) wants(heads []OplogEntry) bool {
	if w.interest == nil {
		return true
	}
	for i := range heads {
		if w.interest(&heads[i]) {
			return true
		}
	}
	return false
}

// addHead records the header of an entry written in t, skipping a repeat of
// the previous header (a multi-document write to one collection records
// one).
func (t *Tx) addHead(ent *OplogEntry) {
	h := OplogEntry{TS: ent.TS, Op: ent.Op, DB: ent.DB, Coll: ent.Coll, ToDB: ent.ToDB, ToColl: ent.ToColl}
	if n := len(t.heads); n > 0 {
		p := &t.heads[n-1]
		if p.Op == h.Op && p.DB == h.DB && p.Coll == h.Coll && p.ToDB == h.ToDB && p.ToColl == h.ToColl {
			p.TS = h.TS
			return
		}
	}
	t.heads = append(t.heads, h)
}
