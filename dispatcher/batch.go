package dispatcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// ContentTypeCloudEventsBatch is the Content-Type of a batch of structured
// CloudEvents in the JSON event format (the CloudEvents HTTP binding's
// batched content mode): the body is a JSON array of CloudEvents.
const ContentTypeCloudEventsBatch = "application/cloudevents-batch+json"

// batchIDPrefix starts every batch's webhook-id.
const batchIDPrefix = "batch_"

// maxBatchHeld bounds the events a batched dispatcher's tracker holds for
// its batches, whatever max_events times the batches in flight come to: as
// many as the largest unbatched dispatcher holds (WithBatchedHeld may let
// more wait for the batches).
const maxBatchHeld = 2 * triggers.MaxConcurrency

// BatchWebhookID returns the webhook-id of a batch of trigger's events whose
// first and last events have the resume tokens first and last: "batch_"
// followed by the hex of the first 16 bytes of a SHA-256 over the trigger
// name and both tokens. A batch's retries carry the same id, and so does
// a redelivery of the same run of events after a restart; a run cut
// differently (the batches are formed as events arrive) has another id, so
// receivers deduplicate by event (the event's _id, or each CloudEvent's id)
// rather than by batch.
func BatchWebhookID(trigger string, first, last bson.Raw) string {
	h := sha256.New()
	h.Write([]byte(trigger))
	h.Write([]byte{0})
	h.Write(first)
	h.Write([]byte{0})
	h.Write(last)
	var sum [sha256.Size]byte
	var id [len(batchIDPrefix) + 32]byte
	copy(id[:], batchIDPrefix)
	hex.Encode(id[len(batchIDPrefix):], h.Sum(sum[:0])[:16])
	return string(id[:])
}

// batch is one request's events (or, single, one event whose payload could
// not be built, delivered alone by Dispatcher.process so that payload errors
// are dead-lettered, held or retried exactly as without batching).
type batch struct {
	seq     uint64
	tickets []*Ticket[job]
	single  bool
	body    []byte   // "[e1,e2,…]" once sealed
	buf     *bodyBuf // the pooled holder body came from (nil: allocated)
	id      string   // webhook-id, set when sealed
	barrier bool     // per_document: holds a keyless event

	// Scheduling, under batcher.mu.
	waiting    int      // unresolved batches it must wait for
	dependents []*batch // batches waiting for it
	resolved   bool
	mark       uint64 // seq of the batch last counting it as a dependency
}

// batcher forms a batched trigger's requests. One goroutine (run) takes
// the started events from the tracker, which runs with Ordering None so that
// every event is handed out at once, in stream order, and appends each
// event's payload to the open batch; a batch is sealed when it is full
// (max_events, or the next event would take the body over max_bytes), when
// max_wait has passed since its first event, or at once when no other batch
// is in flight and no event is waiting (so a quiet trigger is not
// delayed). Sealed batches are started by the trigger's ordering: under
// None at once; under Strict there is one worker and batches start in
// order; under PerDocument a batch waits for every earlier unresolved batch
// holding an event of the same document, and a batch with a keyless event
// waits for every earlier batch and every later one waits for it. At most
// maxSealed batches are sealed and unresolved; then the open batch stops
// growing and the tracker's bound pushes back on Submit.
type batcher struct {
	d         *Dispatcher
	maxEvents int
	maxBytes  int
	maxWait   time.Duration
	direct    bool // the payload is the event's Extended JSON (no expression, no CloudEvents)
	canonical bool
	header    http.Header // each request's own headers (a CloudEvents batch's Content-Type)
	maxSealed int
	start     chan *batch   // sealed batches that may be sent; capacity maxSealed
	wake      chan struct{} // a batch was resolved
	timerC    chan uint64   // max_wait expired for the batch with this seq
	armC      chan timerArm // the newest open batch's deadline, for timerLoop; capacity 1
	armed     atomic.Uint64 // seq of the open batch whose max_wait runs (0: none)

	mu          sync.Mutex
	inflight    int // sealed, unresolved batches
	unresolved  map[*batch]struct{}
	keyTail     map[Key]*batch // per_document: the newest sealed batch per key
	lastBarrier *batch

	// The run goroutine's own state.
	seq         uint64
	open        *batch
	openKeys    []Key
	expired     bool
	more        bool         // the last event taken said another follows at once (Event.More)
	moreUntil   time.Time    // when waiting for that event ends (zero: not started)
	pending     *Ticket[job] // taken from the tracker, not yet placed
	pendingElem []byte       // its payload
	pendingErr  bool         // its payload could not be built
	closing     bool
	canceled    bool
	lastBody    int // the last sealed body's size, to size the next

	minHeld int // WithBatchedHeld

	// reuse: the sender is done with a request's body when the request
	// returns (Sender.reusesBodies), so a resolved batch's body goes back
	// to bodies for the next batches rather than to the garbage collector.
	reuse  bool
	bodies sync.Pool // *bodyBuf
}

// bodyBuf holds a batch body's array between batches, in batcher.bodies.
type bodyBuf struct{ b []byte }

// newBatcher returns the batcher of d for policy p, validated.
func newBatcher(d *Dispatcher, t *triggers.Trigger, p *triggers.BatchPolicy) (*batcher, error) {
	if p.MaxEvents < triggers.MinBatchEvents || p.MaxEvents > triggers.MaxBatchEvents {
		return nil, fmt.Errorf("batch max_events %d: want %d to %d", p.MaxEvents, triggers.MinBatchEvents, triggers.MaxBatchEvents)
	}
	if p.MaxBytes < 0 || p.MaxWait < 0 {
		return nil, errors.New("batch max_bytes and max_wait must not be negative")
	}
	bt := &batcher{
		d: d, maxEvents: p.MaxEvents, maxBytes: int(min(p.MaxBytes, 1<<40)), maxWait: p.MaxWait,
		wake: make(chan struct{}, 1), timerC: make(chan uint64), armC: make(chan timerArm, 1),
		unresolved: map[*batch]struct{}{}, keyTail: map[Key]*batch{},
	}
	if bt.maxBytes == 0 {
		bt.maxBytes = int(triggers.DefaultBatchMaxBytes)
	}
	if bt.maxWait == 0 {
		bt.maxWait = triggers.DefaultBatchMaxWait
	}
	w := d.sender.webhook
	switch w.Format {
	case triggers.FormatCloudEventsBinary:
		return nil, errors.New("batch: the cloudevents-binary format carries one event per request; use cloudevents")
	case triggers.FormatCloudEvents:
		bt.header = http.Header{"Content-Type": {ContentTypeCloudEventsBatch}}
	}
	bt.canonical, _ = canonicalFormat(w.Format)
	bt.direct = w.Payload == nil && w.Format != triggers.FormatCloudEvents
	// Every in-flight batch plus one queued, but the bodies of the sealed
	// batches together within max_inflight_bytes (they are a second copy
	// of the held events).
	bt.maxSealed = d.concurrency + 1
	if t.MaxInflightBytes > 0 {
		bt.maxSealed = int(max(1, min(int64(bt.maxSealed), t.MaxInflightBytes/int64(bt.maxBytes))))
	}
	bt.start = make(chan *batch, bt.maxSealed)
	bt.reuse = d.sender.reusesBodies()
	return bt, nil
}

// capacity is the tracker's capacity under batching: the sealed batches
// and the open one, full, or WithBatchedHeld's count when larger.
func (bt *batcher) capacity() int {
	return max(bt.minHeld, min(bt.maxEvents*(bt.maxSealed+1), max(maxBatchHeld, bt.maxEvents+1)))
}

// maxFastTakes bounds the events run takes in a row without its full
// select.
const maxFastTakes = 64

// run forms batches until the tracker is closed and every event resolved.
func (bt *batcher) run() {
	d := bt.d
	ready := d.tracker.Ready()
	closing := d.tracker.closing
	runDone := d.workCtx.Done()
	defer close(bt.start)
	defer bt.disarm()
	timerCtx, stopTimer := context.WithCancel(d.workCtx)
	timerDone := make(chan struct{})
	go func() {
		defer close(timerDone)
		bt.timerLoop(timerCtx)
	}()
	defer func() {
		stopTimer()
		<-timerDone
	}()
	fast := 0
	for {
		bt.settle(ready)
		in := ready
		if bt.pending != nil {
			in = nil // no slot to seal into: wait for a batch to resolve
		}
		// While events are queued, take them with a receive on ready
		// alone: the full select locks all five channels per event. Every
		// maxFastTakes events (and whenever ready is empty) the full
		// select runs, so timers, wake-ups and shutdown are seen.
		if in != nil && fast < maxFastTakes {
			select {
			case tk, ok := <-in:
				if !ok {
					return // closed and drained: nothing is open or pending
				}
				fast++
				bt.take(tk)
				continue
			default:
			}
		}
		fast = 0
		select {
		case tk, ok := <-in:
			if !ok {
				return // closed and drained: nothing is open or pending
			}
			bt.take(tk)
		case seq := <-bt.timerC:
			if bt.open != nil && bt.open.seq == seq {
				bt.expired = true
			}
		case <-bt.wake:
		case <-closing:
			closing, bt.closing = nil, true
		case <-runDone:
			runDone, bt.canceled = nil, true
		}
	}
}

// take builds tk's payload and makes it pending.
func (bt *batcher) take(tk *Ticket[job]) {
	bt.pending, bt.pendingErr, bt.more, bt.moreUntil = tk, false, tk.Value.ev.More, time.Time{}
	if bt.canceled {
		return
	}
	elem, ok := bt.element(bt.pendingElem[:0], tk.Value.ev)
	bt.pendingElem, bt.pendingErr = elem, !ok
}

// element appends ev's element of a batch body to dst: what one unbatched
// request would carry (the payload, or for cloudevents the structured
// CloudEvent). ok is false when the payload cannot be built.
//
// The direct encoder is the validator: it accepts only documents that are
// well formed all the way down, a superset of bson.Raw.Validate's checks
// (TestExtJSONOkImpliesValid, FuzzExtJSONOkImpliesValid), so an event it
// accepts is one BuildPayload would have encoded the same; anything else
// takes BuildMessage, which validates and reports.
func (bt *batcher) element(dst []byte, ev Event) ([]byte, bool) {
	if bt.direct {
		if out, ok := appendExtJSON(dst, ev.Raw, bt.canonical, false); ok {
			return out, true
		}
	}
	msg, err := BuildMessage(bt.d.trigger, bt.d.sender.webhook, ev)
	if err != nil {
		return dst[:0], false
	}
	return append(dst[:0], msg.Body...), true
}

// settle places the pending event and seals the batches that are due, as
// far as the sealed-batch bound allows.
func (bt *batcher) settle(ready <-chan *Ticket[job]) {
	if bt.canceled {
		bt.abandon()
		return
	}
	for {
		if bt.pending != nil && !bt.place() {
			return
		}
		if bt.open == nil || !bt.due(ready) || !bt.canSeal() {
			return
		}
		bt.sealOpen()
	}
}

// abandon resolves the open batch's and the pending event as not done:
// the deliveries were canceled (Close's grace period ended, or Stop).
func (bt *batcher) abandon() {
	if bt.open != nil {
		bt.d.tracker.ResolveAll(bt.open.tickets, false)
		bt.open = nil
		bt.disarm()
	}
	if bt.pending != nil {
		bt.pending.Resolve(false)
		bt.pending = nil
	}
}

// place adds the pending event to the open batch (sealing it first when
// the event does not fit), or seals it alone when its payload failed. It
// returns false when that needs a seal and no slot is free.
func (bt *batcher) place() bool {
	tk := bt.pending
	if bt.pendingErr {
		if bt.open != nil {
			if !bt.canSeal() {
				return false
			}
			bt.sealOpen()
		}
		if !bt.canSeal() {
			return false
		}
		bt.seq++
		b := &batch{seq: bt.seq, tickets: []*Ticket[job]{tk}, single: true}
		b.id = WebhookID(bt.d.trigger, tk.Value.ev.Token)
		bt.startProgress(tk, "", 1)
		bt.schedule(b, []Key{tk.Value.ev.Key})
		bt.pending = nil
		bt.dropLargeElem()
		return true
	}
	elem := bt.pendingElem
	if bt.open != nil && (len(bt.open.tickets) >= bt.maxEvents || len(bt.open.body)+1+len(elem)+1 > bt.maxBytes) {
		if !bt.canSeal() {
			return false
		}
		bt.sealOpen()
	}
	if bt.open == nil {
		bt.seq++
		size := min(bt.maxBytes, max(bt.lastBody+bt.lastBody/8, len(elem))+64)
		bt.open = &batch{seq: bt.seq, tickets: make([]*Ticket[job], 0, bt.maxEvents)}
		bt.open.buf, bt.open.body = bt.newBody(size)
		bt.open.body = append(bt.open.body, '[')
		bt.openKeys = bt.openKeys[:0]
		bt.expired = false
		bt.arm(bt.open.seq)
	} else {
		bt.open.body = append(bt.open.body, ',')
	}
	bt.open.body = append(bt.open.body, elem...)
	bt.open.tickets = append(bt.open.tickets, tk)
	bt.openKeys = append(bt.openKeys, tk.Value.ev.Key)
	bt.pending = nil
	bt.dropLargeElem()
	return true
}

// maxKeptElem is the largest element buffer the batcher keeps for the
// next event (see dropLargeElem).
const maxKeptElem = 64 << 10

// dropLargeElem lets go of the element buffer once its element is placed
// when a large event grew it: the buffer is reused for the next event's
// element, and one as large as the largest event so far would stay with
// the trigger, idle or not, outside the bounds on what it holds.
func (bt *batcher) dropLargeElem() {
	if cap(bt.pendingElem) > maxKeptElem {
		bt.pendingElem = nil
	}
}

// newBody returns an empty body of at least size bytes' capacity: a
// released one (and its holder) when there is one that large, else a new
// one.
func (bt *batcher) newBody(size int) (*bodyBuf, []byte) {
	if bt.reuse {
		if bb, _ := bt.bodies.Get().(*bodyBuf); bb != nil && cap(bb.b) >= size {
			return bb, bb.b[:0]
		}
	}
	return nil, make([]byte, 0, size)
}

// release hands the body of b, whose request is done and whose events are
// resolved, back for the next batches (when bt.reuse).
func (bt *batcher) release(b *batch) {
	if !bt.reuse || b.body == nil {
		return
	}
	bb := b.buf
	if bb == nil {
		bb = new(bodyBuf)
	}
	bb.b, b.body, b.buf = b.body[:0], nil, nil
	bt.bodies.Put(bb)
}

// due reports whether the open batch should be sealed now.
func (bt *batcher) due(ready <-chan *Ticket[job]) bool {
	b := bt.open
	if len(b.tickets) >= bt.maxEvents || len(b.body)+2 >= bt.maxBytes || bt.expired {
		return true
	}
	if len(ready) > 0 {
		return false // more events are there already
	}
	if bt.closing {
		return true
	}
	if bt.more && bt.waitMore() {
		return false // the next event of the same read is on its way
	}
	bt.mu.Lock()
	defer bt.mu.Unlock()
	return bt.inflight == 0
}

// maxMoreWait bounds how long an idle batch waits for the next event of
// the read its last event came in (Event.More): that event normally
// follows within microseconds, but its Submit may block — on the byte
// budgets, or, per_document, as a keyless event waiting for every earlier
// one, this batch's included — and then only sending the batch lets it in.
const maxMoreWait = 10 * time.Millisecond

// waitMore reports whether the open batch still waits for the next event
// of its read (bt.more): for at most maxMoreWait (or max_wait, when
// shorter) since the batch would have been sent, after which the batcher
// is woken to send it.
func (bt *batcher) waitMore() bool {
	now := time.Now()
	if bt.moreUntil.IsZero() {
		wait := min(bt.maxWait, maxMoreWait)
		bt.moreUntil = now.Add(wait)
		time.AfterFunc(wait, func() {
			select {
			case bt.wake <- struct{}{}:
			default: // the batcher is already woken
			}
		})
	}
	return now.Before(bt.moreUntil)
}

// canSeal reports whether one more batch may be sealed.
func (bt *batcher) canSeal() bool {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	return bt.inflight < bt.maxSealed
}

// sealOpen closes the open batch and schedules it.
func (bt *batcher) sealOpen() {
	b := bt.open
	bt.open = nil
	bt.disarm()
	b.body = append(b.body, ']')
	bt.lastBody = len(b.body)
	first, last := b.tickets[0].Value, b.tickets[len(b.tickets)-1].Value
	b.id = BatchWebhookID(bt.d.trigger, first.ev.Token, last.ev.Token)
	bt.startProgress(b.tickets[0], b.id, len(b.tickets))
	bt.schedule(b, bt.openKeys)
}

// startProgress gives tk, the first event of a sealed batch of n events
// (or an event sealed alone), the progress record of the batch's attempts;
// HeadOfLine shows id (a batch's id) and n while it is the oldest held
// event. Only these events get one: a batch is resolved whole, so the
// oldest held event is the first of a sealed batch or not yet sealed (no
// attempt made). The record is set under the tracker's lock, under which
// HeadOfLine reads it.
func (bt *batcher) startProgress(tk *Ticket[job], id string, n int) {
	p := &progress{fail: &bt.d.fail}
	p.hol.WebhookID, p.hol.Events, p.hol.PartEvents = id, n, n
	bt.d.tracker.withTicket(tk, func(j *job) { j.prog = p })
}

// schedule registers the sealed batch b with the ordering keys of its
// events and starts it unless it must wait for earlier batches.
func (bt *batcher) schedule(b *batch, keys []Key) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	bt.inflight++
	bt.unresolved[b] = struct{}{}
	if bt.d.ordering == triggers.PerDocument {
		dep := func(on *batch) {
			if on != nil && on != b && !on.resolved && on.mark != b.seq {
				on.mark = b.seq
				on.dependents = append(on.dependents, b)
				b.waiting++
			}
		}
		for _, k := range keys {
			if k == NoKey {
				b.barrier = true
			}
		}
		if b.barrier {
			for on := range bt.unresolved {
				dep(on)
			}
			bt.lastBarrier = b
		} else {
			dep(bt.lastBarrier)
		}
		for _, k := range keys {
			if k != NoKey {
				dep(bt.keyTail[k])
				bt.keyTail[k] = b
			}
		}
	}
	if b.waiting == 0 {
		bt.start <- b // never blocks: at most maxSealed batches are unresolved
	}
}

// resolved records that b's events were resolved and starts the batches
// that waited only for it.
func (bt *batcher) resolved(b *batch) {
	bt.mu.Lock()
	b.resolved = true
	bt.inflight--
	delete(bt.unresolved, b)
	if bt.lastBarrier == b {
		bt.lastBarrier = nil
	}
	if bt.d.ordering == triggers.PerDocument {
		for _, tk := range b.tickets {
			if k := tk.Value.ev.Key; k != NoKey && bt.keyTail[k] == b {
				delete(bt.keyTail, k)
			}
		}
	}
	for _, next := range b.dependents {
		if next.waiting--; next.waiting == 0 {
			bt.start <- next // never blocks: see schedule
		}
	}
	b.dependents = nil
	bt.mu.Unlock()
	select {
	case bt.wake <- struct{}{}:
	default: // the batcher is already woken
	}
}

// timerArm is the max_wait deadline of the open batch seq.
type timerArm struct {
	seq uint64
	at  time.Time
}

// arm starts the max_wait of the open batch seq: it hands the deadline to
// timerLoop, replacing any deadline timerLoop has not taken yet.
func (bt *batcher) arm(seq uint64) {
	// The deadline is read before the batch is published as armed: a
	// clock that moves once armed is seen (a test's manual clock, after
	// the timer loop ended an older sleep and found armC empty for a
	// moment) must not push it a max_wait further.
	at := bt.d.clock.Now().Add(bt.maxWait)
	bt.armed.Store(seq)
	select {
	case <-bt.armC:
	default:
	}
	bt.armC <- timerArm{seq: seq, at: at} // never blocks: run is the only sender
}

// disarm stops the open batch's max_wait: its deadline, when it comes, is
// ignored.
func (bt *batcher) disarm() { bt.armed.Store(0) }

// timerLoop is the batcher's one max_wait timer, until ctx ends: it sleeps
// until the deadline of the newest armed batch and then tells run, unless
// that batch was sealed meanwhile. A batch armed while it sleeps towards
// an older deadline (a batch sealed early) is taken when that sleep ends,
// which is before the newer deadline; so one sleep at a time, no goroutine
// or timer per batch, and at most about one wake-up per max_wait while
// batches are sealed by size.
func (bt *batcher) timerLoop(ctx context.Context) {
	for {
		var a timerArm
		select {
		case a = <-bt.armC:
		case <-ctx.Done():
			return
		}
		for {
			if wait := a.at.Sub(bt.d.clock.Now()); wait > 0 {
				if bt.d.clock.Sleep(ctx, wait) != nil {
					return
				}
			}
			select {
			case newer := <-bt.armC:
				a = newer
				continue
			default:
			}
			break
		}
		if bt.armed.Load() != a.seq {
			continue // sealed before its deadline
		}
		select {
		case bt.timerC <- a.seq:
		case <-ctx.Done():
			return
		}
	}
}

// batchWorker delivers started batches until the batcher has stopped.
func (d *Dispatcher) batchWorker() {
	bt := d.batcher
	for b := range bt.start {
		done := false
		if d.workCtx.Err() == nil {
			if b.single {
				done = d.process(d.workCtx, b.tickets[0].Value)
			} else {
				done = d.processBatch(d.workCtx, b)
			}
		}
		d.tracker.ResolveAll(b.tickets, done)
		bt.resolved(b)
		bt.release(b)
	}
}

// processBatch delivers b and reports whether its events are done
// (delivered, or dead-lettered one by one).
func (d *Dispatcher) processBatch(ctx context.Context, b *batch) bool {
	n := len(b.tickets)
	d.metrics.inflightAdd(d.trigger, float64(n))
	defer d.metrics.inflightAdd(d.trigger, -float64(n))
	msg := Message{ID: b.id, Body: b.body, Header: d.batcher.header}
	return d.deliverPart(ctx, b.tickets, 0, msg, b.tickets[0].Value.prog)
}

// deliverPart delivers the events of tks, a sealed batch or a part of one,
// as msg, and reports whether they are done. A request the endpoint refuses
// as too large (413) is sent again in two halves, each split further while
// it is refused, so that only an event refused alone is dead-lettered:
// events are never given up on for the size of the batch they were cut
// into. The halves go one after the other, in stream order, which keeps
// every ordering. from is the index of tks[0] in its batch, prog the
// batch's progress record.
func (d *Dispatcher) deliverPart(ctx context.Context, tks []*Ticket[job], from int, msg Message, prog *progress) bool {
	trigger, n := d.trigger, len(tks)
	info := d.sender.eventInfo(tks[0].Value.ev)
	info.events = n
	res, err, held := d.deliverBatchGuarded(ctx, msg, info, prog)
	outcome := func(o string) {
		now := d.clock.Now()
		d.metrics.deliveryBatch(trigger, o, n, func(i int) float64 { return now.Sub(tks[i].Value.ev.Received).Seconds() })
	}
	failed := func(tks []*Ticket[job]) { d.metrics.deliveryBatch(trigger, OutcomeFailed, len(tks), nil) }
	switch {
	case held:
		return false
	case err == nil && res.Dropped:
		outcome(OutcomeDropped)
		return true
	case err == nil:
		outcome(OutcomeDelivered)
		if d.log.Enabled(ctx, slog.LevelDebug) {
			d.log.LogAttrs(ctx, slog.LevelDebug, "batch delivered", slog.String("webhook_id", res.WebhookID), slog.Int("events", n),
				slog.Int("status", res.Status), slog.Int("attempts", res.Attempts), slog.Duration("latency", res.Latency))
		}
		return true
	case res.Reason == ReasonCanceled || ctx.Err() != nil:
		// Cut off by Close: the events stay undone and are delivered
		// later (or dead-lettered by a skip), so no outcome is recorded.
		d.logCanceled(ctx, err, "batch delivery canceled", slog.String("webhook_id", res.WebhookID), slog.Int("events", n), slog.Int("attempts", res.Attempts))
		return false
	case tooLarge(res.Status, n):
		return d.splitPart(ctx, tks, from, msg, prog)
	case !d.deadLetter:
		// Unreachable: without dead letters a batch is retried until it is
		// delivered or canceled. Never skip its events.
		failed(tks)
		return false
	}
	// Given up on: each event becomes its own dead letter, replayable
	// alone, with the batch's attempts and failure.
	for _, tk := range tks {
		j := tk.Value
		dl := deadLetterOf(trigger, WebhookID(trigger, j.ev.Token), j.ev, res, err)
		if !d.putDeadLetter(ctx, dl, prog) {
			// Canceled: the batch stays undone (those already stored are
			// stored again, idempotently, after the redelivery fails), and
			// the rest are delivered later: no outcome.
			return false
		}
		d.metrics.delivery(trigger, OutcomeDeadLettered, d.clock.Now().Sub(j.ev.Received).Seconds())
	}
	return true
}

// splitPart delivers tks, whose request msg the endpoint refused as too
// large, as two requests of half the events each (deliverPart), the first
// half first. Each half carries the very elements of msg's body (nothing
// is built again: a payload whose result changes with time, such as one
// using $$NOW, sends the bytes the refused request had), with the
// webhook-id of its first and last events; a split holds at most about as
// many bytes again as its batch. from is the index of tks[0] in its batch:
// prog, the batch's progress record, describes each part while it is
// attempted (progress.part). It reports whether every event is done.
func (d *Dispatcher) splitPart(ctx context.Context, tks []*Ticket[job], from int, msg Message, prog *progress) bool {
	half := len(tks) / 2
	parts := [2][]*Ticket[job]{tks[:half], tks[half:]}
	d.metrics.batchSplit(d.trigger)
	if n, ok := d.splitLog.note(d.clock.Now()); ok {
		// The first split, then at most one line per splitLogEvery: a
		// body limit below batch.max_bytes splits most batches.
		d.log.LogAttrs(ctx, slog.LevelWarn, "the endpoint refused a batch as too large (413): sending its events again in two requests; set batch.max_bytes below the endpoint's body limit",
			slog.String("webhook_id", msg.ID), slog.Int("events", len(tks)), slog.Int("bytes", len(msg.Body)),
			slog.Int("first_events", len(parts[0])), slog.Int("second_events", len(parts[1])),
			slog.Int("splits", n))
	}
	elems, ok := batchElements(msg.Body, len(tks))
	if !ok {
		// Unreachable: the body is the batcher's own array of one element
		// per event. Never leave the events undone while the trigger runs
		// on: each goes alone, as an unbatched event would.
		d.log.LogAttrs(ctx, slog.LevelError, "batch refused as too large could not be split; sending its events one by one",
			slog.String("webhook_id", msg.ID), slog.Int("events", len(tks)))
		for _, tk := range tks {
			if !d.process(ctx, tk.Value) {
				// Canceled or halted: the rest, not sent, stay undone
				// and are delivered later (no outcome).
				return false
			}
		}
		return true
	}
	for i, part := range parts {
		lo := half * i
		m := Message{
			ID:     BatchWebhookID(d.trigger, part[0].Value.ev.Token, part[len(part)-1].Value.ev.Token),
			Header: msg.Header,
			Body:   joinElements(elems[lo : lo+len(part)]),
		}
		prog.part(from+lo, len(part), m.ID)
		if !d.deliverPart(ctx, part, from+lo, m, prog) {
			// Canceled or halted: the second half, if not sent yet,
			// stays undone and is delivered later (no outcome).
			return false
		}
	}
	return true
}

// splitLogEvery is how often at most a trigger logs its batch splits
// after the first (changehook_batch_splits_total counts every one).
const splitLogEvery = time.Minute

// splitLog throttles the log line of batch splits (splitPart): the first
// split is logged, then at most one line per splitLogEvery, carrying the
// number of splits since the previous line. The zero value is ready.
type splitLog struct {
	mu      sync.Mutex
	last    time.Time // when the previous line was logged (zero: none yet)
	pending int       // splits since then, this one included
}

// note records a split at now and reports whether to log it, with the
// number of splits the line stands for (this one and those not logged
// since the previous line).
func (l *splitLog) note(now time.Time) (splits int, log bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending++
	if !l.last.IsZero() && now.Sub(l.last) < splitLogEvery {
		return 0, false
	}
	splits, l.pending, l.last = l.pending, 0, now
	return splits, true
}

// batchElements returns the n elements of body, a JSON array as the
// batcher builds it ("[e1,e2,…]"), as subslices of body; ok is false when
// body is not an array of exactly n non-empty elements.
func batchElements(body []byte, n int) (elems [][]byte, ok bool) {
	if len(body) < 2 || body[0] != '[' || body[len(body)-1] != ']' {
		return nil, false
	}
	elems = make([][]byte, 0, n)
	depth, inString, escaped, start := 0, false, false, 1
	for i := 1; i < len(body)-1; i++ {
		c := body[i]
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			if depth--; depth < 0 {
				return nil, false
			}
		case c == ',' && depth == 0:
			elems = append(elems, body[start:i])
			start = i + 1
		}
	}
	if inString || depth != 0 {
		return nil, false
	}
	elems = append(elems, body[start:len(body)-1])
	if len(elems) != n || slices.ContainsFunc(elems, func(e []byte) bool { return len(e) == 0 }) {
		return nil, false
	}
	return elems, true
}

// joinElements returns the JSON array of elems: "[e1,e2,…]".
func joinElements(elems [][]byte) []byte {
	size := 2 + len(elems)
	for _, e := range elems {
		size += len(e)
	}
	body := make([]byte, 0, size)
	body = append(body, '[')
	for i, e := range elems {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, e...)
	}
	return append(body, ']')
}

// deliverBatchGuarded is deliverGuarded for a batch's request msg (whose
// payloads were built already; info is what the observers learn about
// it, prog the batch's progress record): the request goes through the
// circuit breaker and the retry stage; held reports that payload errors
// halted the dispatcher. A request refused as too large (tooLarge) returns
// at once, for the caller to split, without counting against the circuit:
// the endpoint answered, and it is the request, not the endpoint, that
// failed. A round that succeeds or fails otherwise resets the streak of
// consecutive payload errors (payload_errors.max_consecutive): the batch's
// payloads were built.
func (d *Dispatcher) deliverBatchGuarded(ctx context.Context, msg Message, info eventInfo, prog *progress) (res Result, err error, held bool) {
	forever := !d.deadLetter
	var rs rounds
	for {
		if d.payload.halted.Load() {
			return Result{}, nil, true
		}
		if gerr := d.circuit.gate(ctx); gerr != nil {
			return Result{WebhookID: msg.ID, Reason: ReasonCanceled}, fmt.Errorf("wait for the circuit to close: %w", gerr), false
		}
		if rs.done {
			return res, err, false // dead-lettered by the caller, now that the circuit is closed
		}
		if waited, werr := d.awaitDue(ctx, prog, &rs); werr != nil {
			res.Reason = ReasonCanceled
			return res, fmt.Errorf("deliver %s: %w", res.WebhookID, werr), false
		} else if waited {
			continue // the circuit may have opened meanwhile: back to its gate
		}
		bounded := !forever || d.circuit != nil
		// Numbered on from the previous rounds' attempts (res), the
		// current round's among them.
		var r roundResult
		r, err = d.sender.retryStage(ctx, msg, forever && !bounded, prog, info, res, res.Attempts-rs.start)
		res = r.Result
		switch {
		case err == nil:
			d.payload.streak.Store(0)
			d.circuit.succeeded()
			return res, nil, false
		case res.Reason == ReasonCanceled || ctx.Err() != nil:
			return res, err, false
		case errors.Is(err, errCircuitHeld):
			d.hold(&rs, r)
			continue // another delivery opened the circuit: wait at its gate
		case tooLarge(res.Status, info.events):
			return res, err, false
		}
		// A failed delivery whose payloads were built breaks the streak
		// of consecutive payload errors, as in deliverGuarded; also when
		// the circuit opens and the batch becomes its probe.
		d.payload.streak.Store(0)
		if d.circuit.failed(res.Status, err.Error(), msg.ID, prog, d.sender.retryAfter(r.resp)) {
			return d.probeBatch(ctx, msg, info, prog, res, err)
		}
		if d.circuit.open() || errors.Is(err, errOpensCircuit) {
			d.hold(&rs, r)
			continue // opened by another delivery: redeliver after it closes
		}
		if !forever {
			return res, err, false
		}
		rs.next(d, res.Attempts, r.resp)
	}
}

// probeBatch is probe for a batch: the request that opened the circuit is
// sent again, alone, at each probe time until it succeeds or ctx ends.
func (d *Dispatcher) probeBatch(ctx context.Context, msg Message, info eventInfo, prog *progress, res Result, err error) (Result, error, bool) {
	prog.scheduled(d.circuit.status().NextProbeAt)
	d.log.LogAttrs(ctx, slog.LevelWarn, "circuit opened: deliveries wait; the failed batch is retried alone as a probe",
		slog.String("webhook_id", res.WebhookID), slog.Int("events", info.events), slog.Int("status", res.Status), slog.String("error", err.Error()))
	return d.probeLoop(ctx, prog, res, info.events, func(n int) (Attempt, error) {
		at, retry, perr := d.sender.sendOnce(ctx, msg, n, info)
		at.Retry = retry
		return at, perr
	})
}

// BuildBatchMessage returns the request a batch of trigger's events evs (in
// stream order, at least one) becomes with webhook w: the body is a JSON
// array of what BuildMessage's body would be for each event (for the
// cloudevents format, structured CloudEvents, with Content-Type
// ContentTypeCloudEventsBatch), the id BatchWebhookID of the first and last
// events. Its errors are BuildPayload's, for the first event whose payload
// cannot be built; the cloudevents-binary format cannot be batched.
func BuildBatchMessage(trigger string, w triggers.Webhook, evs []Event) (Message, error) {
	if len(evs) == 0 {
		return Message{}, errors.New("build batch: no events")
	}
	m := Message{ID: BatchWebhookID(trigger, evs[0].Token, evs[len(evs)-1].Token)}
	switch w.Format {
	case triggers.FormatCloudEventsBinary:
		return m, errors.New("build batch: the cloudevents-binary format carries one event per request")
	case triggers.FormatCloudEvents:
		m.Header = http.Header{"Content-Type": {ContentTypeCloudEventsBatch}}
	}
	body := []byte{'['}
	for i, ev := range evs {
		one, err := BuildMessage(trigger, w, ev)
		if err != nil {
			return m, err
		}
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, one.Body...)
	}
	m.Body = append(body, ']')
	return m, nil
}

// DeliverBatch sends evs as one batch request (BuildBatchMessage) through
// the retry policy, as Deliver does for one event: it never dead-letters or
// checkpoints, and the observers see Attempt.Events. A batch whose payload
// cannot be built fails with ReasonPayload and no attempt. A batch of two
// or more events the endpoint refuses with 413 (too large) fails at once,
// whatever retry_on says: the caller sends its events in smaller batches.
func (s *Sender) DeliverBatch(ctx context.Context, evs []Event) (Result, error) {
	if ctx == nil {
		return Result{}, fmt.Errorf("deliver batch: %w", errNilContext)
	}
	msg, err := BuildBatchMessage(s.trigger, s.webhook, evs)
	if err != nil {
		s.metrics.attempt(s.trigger, ReasonPayload)
		return Result{WebhookID: msg.ID, Reason: ReasonPayload, FirstAttemptAt: s.clock.Now()}, fmt.Errorf("deliver %s: %w", msg.ID, err)
	}
	info := s.eventInfo(evs[0])
	info.events = len(evs)
	r, err := s.retryStage(ctx, msg, false, nil, info, Result{}, 0)
	return r.Result, err
}
