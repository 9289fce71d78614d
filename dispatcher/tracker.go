package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// ErrClosed is returned by Dispatcher.Submit and Tracker.Track after Close.
var ErrClosed = errors.New("dispatcher closed")

// Tracker is an ordered-acknowledgement tracker, after redpanda connect's
// checkpoint.Capped: events are tracked in stream order, each gets a Ticket
// whose Resolve acknowledges it, and the low-water mark (Watermark) is the
// token of the newest event such that it and every earlier event were
// resolved as done — the token that is safe to checkpoint. An event resolved
// as not done (abandoned at shutdown) is never passed.
//
// It also decides when each event may start, by Ordering: Strict starts one
// event at a time in stream order; PerDocument starts events of the same key
// one at a time in stream order and different keys in parallel, and a
// keyless event is a barrier (Track waits until every earlier event is
// resolved, and returns only once the barrier itself is resolved); None
// starts every event at once. Started events are handed out by Ready.
//
// At most capacity events are held, from Track until the watermark passes
// them; Track blocks while the tracker is full, so a slow oldest event slows
// the producer down. A blocked Track resumes once half of the capacity is
// free again (resumeAt), not at every freed slot: the producer then admits
// many events per wake-up instead of being woken for each (every wake-up of
// a parked producer costs a thread wake-up when the process is otherwise
// idle, as it is between the deliveries of a strict trigger). Track
// must be called from one goroutine (submission order is stream order); the
// other methods are safe for concurrent use.
type Tracker[T any] struct {
	ordering triggers.Ordering
	capacity int
	resumeAt int                // free slots that wake a blocked Track
	ready    chan *Ticket[T]    // started events; closed once closed and drained
	closing  chan struct{}      // closed by Close: wakes blocked Tracks
	drained  chan struct{}      // closed with ready
	order    ring[*Ticket[T]]   // held events not yet passed by the watermark
	keyTail  map[Key]*Ticket[T] // per key: the newest held event

	bytes  *ByteBudget           // this tracker's byte budget (nil: none)
	chunk  chunkAlloc[Ticket[T]] // newTicket's tickets (Track's goroutine)
	shared *ByteBudget           // the budget shared with other trackers (nil: none)

	mu        sync.Mutex
	closed    bool
	slots     int           // held events (admitted, not yet passed by the watermark)
	roomWait  chan struct{} // closed (and reset) when resumeAt slots are free
	held      int64         // bytes of the held events, taken from bytes and shared
	active    int           // tracked events not yet resolved
	watermark bson.Raw      // a copy of the newest passed event's token (in wmBuf)
	wmBuf     []byte        // holds watermark; reused, as Watermark returns copies
	idleWait  chan struct{} // closed (and reset) when active drops to 0

	// wait (nil: not measured) adds up the time Track spends blocked,
	// read from now; set before the first Track (SetWaitClock). waiting:
	// the current Track began a wait on it (Track's goroutine).
	wait    *WaitClock
	now     func() time.Time
	waiting bool

	// onPass (nil: none) is called with t.mu held for each event the
	// watermark passes, in stream order, once the tracker no longer refers
	// to its token: it must not block nor call the tracker, and should
	// drop the value's references to the event's bytes (the ticket may
	// stay reachable; see advanceLocked). Set before the first Track.
	onPass func(v *T)
}

// Ticket is one tracked event.
type Ticket[T any] struct {
	// Value is the value given to Track.
	Value T

	t     *Tracker[T]
	token bson.Raw
	key   Key
	size  int64
	state ticketState
	next  *Ticket[T] // the next held event with the same key
}

type ticketState uint8

const (
	statePending   ticketState = iota
	stateDone                  // delivered or dead-lettered
	stateAbandoned             // resolved as not done: never passed
)

// strictKey chains every event under Strict (the keys given are ignored).
const strictKey Key = 1

// NewTracker returns a Tracker for ordering (Strict when "") holding at
// most capacity events (at least 1).
func NewTracker[T any](ordering triggers.Ordering, capacity int) *Tracker[T] {
	if ordering == "" {
		ordering = triggers.Strict
	}
	capacity = max(capacity, 1)
	return &Tracker[T]{
		ordering: ordering,
		capacity: capacity,
		resumeAt: max(1, capacity/2),
		ready:    make(chan *Ticket[T], capacity),
		closing:  make(chan struct{}),
		drained:  make(chan struct{}),
		order:    newRing[*Ticket[T]](capacity),
		keyTail:  make(map[Key]*Ticket[T], capacity),
	}
}

// SetByteBudgets bounds the bytes of the held events (the sizes given to
// TrackSized) by limit (0: no own bound) and by shared, a budget shared with
// other trackers (nil: none). An event larger than a budget is still
// admitted when the tracker holds nothing, so it passes alone and never
// deadlocks. Call it before the first Track.
func (t *Tracker[T]) SetByteBudgets(limit int64, shared *ByteBudget) {
	if limit > 0 {
		t.bytes = NewByteBudget(limit)
	}
	t.shared = shared
}

// SetWaitClock makes Track mark on c the time it spends blocked: waiting
// for a slot, for room in a byte budget, or (a PerDocument barrier) for
// the events before it to be resolved; now reads the time. Call it before
// the first Track.
func (t *Tracker[T]) SetWaitClock(c *WaitClock, now func() time.Time) {
	t.wait, t.now = c, now
}

// blocking marks that Track is about to block (see SetWaitClock).
func (t *Tracker[T]) blocking() {
	if t.wait != nil && !t.waiting {
		t.waiting = true
		t.wait.Begin(t.now())
	}
}

// HeldBytes returns the bytes of the held events (tracked, not yet passed
// by the watermark).
func (t *Tracker[T]) HeldBytes() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.held
}

// Capacity returns the number of events the tracker holds at most.
func (t *Tracker[T]) Capacity() int { return t.capacity }

// Track admits the event with resume token token and ordering key key,
// carrying v, in stream order. It blocks while capacity events are held; it
// returns ctx's error if ctx ends first and ErrClosed after Close, and then
// the event is not tracked. The returned Ticket comes out of Ready when the
// event may start; its Resolve must then be called exactly once. The
// tracker keeps token until the watermark passes it: the caller must not
// modify it.
//
// Under PerDocument NoKey makes the event a barrier (see Tracker):
// once it is admitted an ended ctx only stops the waiting, and Track
// returns the Ticket without error.
func (t *Tracker[T]) Track(ctx context.Context, token bson.Raw, key Key, v T) (*Ticket[T], error) {
	return t.TrackSized(ctx, token, key, 0, v)
}

// TrackSized is Track for an event of size bytes: it also waits while the
// event does not fit in the byte budgets (see SetByteBudgets).
func (t *Tracker[T]) TrackSized(ctx context.Context, token bson.Raw, key Key, size int64, v T) (*Ticket[T], error) {
	if ctx == nil {
		return nil, fmt.Errorf("track event: %w", errNilContext)
	}
	if t.wait != nil {
		defer t.endWait() // an open-coded defer: no cost worth counting
	}
	switch t.ordering {
	case triggers.Strict:
		key = strictKey
	case triggers.PerDocument:
		if key == NoKey {
			return t.trackBarrier(ctx, token, size, v)
		}
	default:
		key = NoKey
	}
	return t.admit(ctx, token, key, size, v)
}

// endWait ends the wait blocking began, if this Track blocked: one
// branch for the Tracks that did not, with no lock and no clock read.
func (t *Tracker[T]) endWait() {
	if t.waiting {
		t.waiting = false
		t.wait.End(t.now())
	}
}

// trackBarrier admits a keyless PerDocument event once nothing is active
// and waits until it is resolved.
func (t *Tracker[T]) trackBarrier(ctx context.Context, token bson.Raw, size int64, v T) (*Ticket[T], error) {
	if err := t.waitIdle(ctx); err != nil {
		return nil, fmt.Errorf("track barrier event: %w", err)
	}
	tk, err := t.admit(ctx, token, NoKey, size, v)
	if err != nil {
		return nil, err
	}
	_ = t.waitIdle(ctx)
	return tk, nil
}

// admit holds a slot for the event and starts it, or chains it behind the
// newest held event of its key.
func (t *Tracker[T]) admit(ctx context.Context, token bson.Raw, key Key, size int64, v T) (*Ticket[T], error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("track event: %w", err)
	}
	if err := t.takeSlot(ctx); err != nil {
		return nil, err
	}
	if err := t.acquireBytes(ctx, size); err != nil {
		t.freeSlots(1)
		return nil, err
	}
	tk := t.newTicket()
	*tk = Ticket[T]{Value: v, t: t, token: token, key: key, size: size}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.releaseBytes(size)
		t.freeSlots(1)
		return nil, fmt.Errorf("track event: %w", ErrClosed)
	}
	defer t.mu.Unlock()
	t.held += size
	t.active++
	t.order.push(tk)
	if key != NoKey {
		if tail, busy := t.keyTail[key]; busy {
			// Wait behind the key's previous event; its Resolve starts tk.
			tail.next = tk
			t.keyTail[key] = tk
			return tk, nil
		}
		t.keyTail[key] = tk
	}
	t.ready <- tk // never blocks: len(ready) <= active <= len(order) <= cap(ready)
	return tk, nil
}

// newTicket returns an unused ticket from a chunk (see chunkAlloc). A
// chunk stays alive while any of its tickets is referenced; tickets are
// handed out in stream order and released about in that order, so only
// the chunks at the ends of the held range keep tickets of finished
// events. Track's goroutine only.
func (t *Tracker[T]) newTicket() *Ticket[T] { return t.chunk.next() }

// chunkAlloc hands out pointers to zero values of T allocated
// allocChunk at a time: one allocation per chunk instead of one per value
// (the tracker's tickets, Submit's progress records). A chunk stays alive
// while any of its values is referenced. Not safe for concurrent use.
type chunkAlloc[T any] struct{ free []T }

// allocChunk is how many values chunkAlloc allocates at once.
const allocChunk = 64

// next returns a pointer to a zero T no other call returned.
func (c *chunkAlloc[T]) next() *T {
	if len(c.free) == 0 {
		c.free = make([]T, allocChunk)
	}
	v := &c.free[0]
	c.free = c.free[1:]
	return v
}

// takeSlot holds a slot for an event, waiting while the tracker is full
// until resumeAt slots are free, ctx ends or the tracker is closed.
func (t *Tracker[T]) takeSlot(ctx context.Context) error {
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return fmt.Errorf("track event: %w", ErrClosed)
		}
		if t.slots < t.capacity {
			t.slots++
			t.mu.Unlock()
			return nil
		}
		if t.roomWait == nil {
			t.roomWait = make(chan struct{})
		}
		ch := t.roomWait
		t.mu.Unlock()
		t.blocking()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("track event: %w", ctx.Err())
		case <-t.closing:
			return fmt.Errorf("track event: %w", ErrClosed)
		}
	}
}

// freeSlots gives n slots back; t.mu must not be held.
func (t *Tracker[T]) freeSlots(n int) {
	t.mu.Lock()
	t.freeSlotsLocked(n)
	t.mu.Unlock()
}

// freeSlotsLocked gives n slots back and wakes a blocked Track once
// resumeAt slots are free; t.mu is held.
func (t *Tracker[T]) freeSlotsLocked(n int) {
	t.slots -= n
	if t.roomWait != nil && t.capacity-t.slots >= t.resumeAt {
		close(t.roomWait)
		t.roomWait = nil
	}
}

// acquireBytes takes size bytes from the tracker's budgets, waiting while
// they do not fit. Holding nothing, the tracker always gets them.
func (t *Tracker[T]) acquireBytes(ctx context.Context, size int64) error {
	if size <= 0 {
		return nil
	}
	alone := func() bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.held == 0
	}
	if t.bytes != nil && !t.bytes.acquire(ctx, size, alone, t.closing, t.blocking) {
		return t.acquireErr(ctx)
	}
	if t.shared != nil && !t.shared.acquire(ctx, size, alone, t.closing, t.blocking) {
		if t.bytes != nil {
			t.bytes.release(size)
		}
		return t.acquireErr(ctx)
	}
	return nil
}

func (t *Tracker[T]) acquireErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("track event: %w", err)
	}
	return fmt.Errorf("track event: %w", ErrClosed)
}

// releaseBytes gives size bytes back to the tracker's budgets; t.mu must
// not be held.
func (t *Tracker[T]) releaseBytes(size int64) {
	if size <= 0 {
		return
	}
	if t.bytes != nil {
		t.bytes.release(size)
	}
	if t.shared != nil {
		t.shared.release(size)
	}
}

// Ready returns the channel of started events, in the order they may start.
// It is closed once the tracker is closed and every tracked event resolved.
func (t *Tracker[T]) Ready() <-chan *Ticket[T] { return t.ready }

// Resolve acknowledges the ticket's event: done true when it was delivered
// or dead-lettered, false when it was abandoned (then the watermark never
// passes it). It starts the next event of the same key, advances the
// watermark over the done prefix of the stream and frees the slots of the
// events it passed. Calls after the first are ignored.
func (tk *Ticket[T]) Resolve(done bool) {
	t := tk.t
	t.mu.Lock()
	resolved := tk.resolveLocked(done)
	var freed int64
	if resolved {
		freed = t.advanceLocked(1)
	}
	t.mu.Unlock()
	t.releaseBytes(freed)
}

// ResolveAll resolves every ticket of tks (all of this tracker) as Resolve
// does, in order, under one acquisition of the tracker's lock: a batch's
// events are acknowledged together, and the watermark moves once, over
// all of them.
func (t *Tracker[T]) ResolveAll(tks []*Ticket[T], done bool) {
	t.mu.Lock()
	n := 0
	for _, tk := range tks {
		if tk.resolveLocked(done) {
			n++
		}
	}
	var freed int64
	if n > 0 {
		freed = t.advanceLocked(n)
	}
	t.mu.Unlock()
	t.releaseBytes(freed)
}

// resolveLocked marks tk resolved and starts the next event of its key; it
// reports false when tk was resolved already. t.mu is held.
func (tk *Ticket[T]) resolveLocked(done bool) bool {
	t := tk.t
	if tk.state != statePending {
		return false
	}
	tk.state = stateAbandoned
	if done {
		tk.state = stateDone
	}
	if k := tk.key; k != NoKey {
		if tk.next != nil {
			t.ready <- tk.next // never blocks: see admit
			tk.next = nil
		} else if t.keyTail[k] == tk {
			delete(t.keyTail, k)
		}
	}
	return true
}

// advanceLocked accounts for n newly resolved events: it moves the
// watermark over the done prefix of the stream, frees the slots of the
// events it passed and wakes the idle waiters. It returns the bytes the
// caller gives back to the budgets once t.mu is released. t.mu is held.
func (t *Tracker[T]) advanceLocked(n int) (freed int64) {
	released := 0
	// An abandoned event is never popped: the watermark stays behind it.
	// The watermark is a copy of the newest passed token, so that a passed
	// event's bytes may be reused (onPass).
	// A passed ticket lets go of its token and (onPass) its value's
	// bytes: tickets are allocated in chunks, and a chunk stays alive
	// while any of its tickets is referenced, so a passed ticket that kept
	// them would keep up to a chunk of passed events in memory, beyond
	// the byte budgets.
	pass := func(tk *Ticket[T]) {
		tk.token = nil
		if t.onPass != nil {
			t.onPass(&tk.Value)
		}
	}
	var last *Ticket[T]
	for {
		head, ok := t.order.peek()
		if !ok || head.state != stateDone {
			break
		}
		t.order.pop()
		released++
		freed += head.size
		if last != nil {
			pass(last)
		}
		last = head
	}
	if last != nil {
		t.wmBuf = append(t.wmBuf[:0], last.token...)
		t.watermark = t.wmBuf
		pass(last)
	}
	t.held -= freed
	t.freeSlotsLocked(released)
	t.active -= n
	if t.active == 0 {
		if t.idleWait != nil {
			close(t.idleWait)
			t.idleWait = nil
		}
		if t.closed {
			freed += t.finish()
		}
	}
	return freed
}

// waitIdle blocks until no tracked event is unresolved, ctx ends or the
// tracker is closed.
func (t *Tracker[T]) waitIdle(ctx context.Context) error {
	for {
		t.mu.Lock()
		if t.active == 0 {
			t.mu.Unlock()
			return nil
		}
		if t.idleWait == nil {
			t.idleWait = make(chan struct{})
		}
		ch := t.idleWait
		t.mu.Unlock()
		t.blocking()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-t.closing:
			return ErrClosed
		}
	}
}

// Watermark returns the low-water mark: the resume token of the newest
// tracked event such that it and every event tracked before it were resolved
// as done. ok is false until there is one. The token is a copy.
func (t *Tracker[T]) Watermark() (token bson.Raw, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.watermark == nil {
		return nil, false
	}
	return bytes.Clone(t.watermark), true
}

// Pending returns the number of tracked events not yet resolved.
func (t *Tracker[T]) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.active
}

// Held returns the number of tracked events the watermark has not passed:
// the unresolved ones and those resolved as not done (abandoned), which it
// never passes. Zero means every tracked event is done.
func (t *Tracker[T]) Held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.order.size
}

// Close stops admitting events: blocked and later Tracks return ErrClosed.
// Ready is closed once every tracked event is resolved (Drained). Calling
// Close again does nothing.
func (t *Tracker[T]) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	close(t.closing)
	var freed int64
	if t.active == 0 {
		freed = t.finish()
	}
	t.mu.Unlock()
	t.releaseBytes(freed)
}

// Drained returns a channel closed once the tracker is closed and every
// tracked event resolved.
func (t *Tracker[T]) Drained() <-chan struct{} { return t.drained }

// finish closes ready and drained; t.mu is held, t is closed and idle, so
// nothing can be started any more. It returns the bytes still held (by
// abandoned events and the done ones behind them), which the caller gives
// back to the budgets once t.mu is released: a stopped trigger must not
// keep a share of the process-wide budget.
func (t *Tracker[T]) finish() int64 {
	close(t.ready)
	close(t.drained)
	freed := t.held
	t.held = 0
	return freed
}

// withOldest calls f, with the tracker's lock held, with the value of the
// oldest held event that is not resolved as done (the one the watermark
// waits for), and reports whether there was one. f may read the event's
// bytes: the watermark cannot pass the event (and onPass release them)
// while f runs. f must not block nor call the tracker.
func (t *Tracker[T]) withOldest(f func(v *T)) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	head, ok := t.order.peek()
	if ok {
		f(&head.Value)
	}
	return ok
}

// withTicket calls f with tk's value under the tracker's lock (so that
// withOldest sees the change). f must not block nor call the tracker.
func (t *Tracker[T]) withTicket(tk *Ticket[T], f func(v *T)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(&tk.Value)
}

// ring is a FIFO with a fixed capacity.
type ring[E any] struct {
	buf        []E
	head, size int
}

func newRing[E any](n int) ring[E] { return ring[E]{buf: make([]E, n)} }

func (r *ring[E]) push(e E) {
	r.buf[(r.head+r.size)%len(r.buf)] = e
	r.size++
}

func (r *ring[E]) peek() (E, bool) {
	if r.size == 0 {
		var zero E
		return zero, false
	}
	return r.buf[r.head], true
}

func (r *ring[E]) pop() {
	var zero E
	r.buf[r.head] = zero
	r.head = (r.head + 1) % len(r.buf)
	r.size--
}
