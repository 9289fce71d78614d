package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/metrics"
	"github.com/changehook/changehook/internal/textcut"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// History writer defaults.
const (
	// DefaultHistoryQueue is HistoryWriterOptions.Queue when zero.
	DefaultHistoryQueue = 4096
	// DefaultHistoryBatch is HistoryWriterOptions.Batch when zero: four
	// full buckets (maxBucketRecords each), so that a busy trigger's
	// history costs one insert per 2048 attempts (an insert's fixed cost,
	// in the driver and in the database's commit, is most of a bucket's).
	DefaultHistoryBatch = 4 * maxBucketRecords
	// DefaultHistoryFlushEvery is HistoryWriterOptions.FlushEvery when zero.
	DefaultHistoryFlushEvery = 200 * time.Millisecond
	// DefaultHistoryTrimEvery is HistoryWriterOptions.TrimEvery when zero.
	DefaultHistoryTrimEvery = time.Minute
	// historyWriteTimeout bounds one batch write or trim.
	historyWriteTimeout = 30 * time.Second
	// historyRetryMax caps the backoff between the writes of a batch whose
	// write failed (the first wait is up to FlushEvery).
	historyRetryMax = 10 * time.Second
)

// HistoryWriterOptions configure a HistoryWriter; zero values take
// defaults.
type HistoryWriterOptions struct {
	// Retention and MaxRecords are the history's bounds (history.retention
	// and history.max_records) enforced by the writer's trims; zero: that
	// bound is not enforced by the writer.
	Retention  time.Duration
	MaxRecords int
	// Queue bounds the records waiting to be written (default
	// DefaultHistoryQueue); a record that finds it full is dropped and
	// counted.
	Queue int
	// Batch is the most records written at once (default
	// DefaultHistoryBatch).
	Batch int
	// FlushEvery is how long a record may wait for its batch to fill
	// (default DefaultHistoryFlushEvery).
	FlushEvery time.Duration
	// TrimEvery is how often the bounds are enforced (default
	// DefaultHistoryTrimEvery); the writer also trims as soon as it has
	// written MaxRecords/10 records since the last trim, so the history
	// exceeds MaxRecords by at most a tenth plus one batch between trims.
	TrimEvery time.Duration
	// Registry receives changehook_history_written_total and
	// changehook_history_dropped_total (nil: not registered).
	Registry prometheus.Registerer
	// Logger reports write failures, once per distinct error (default
	// discard).
	Logger *slog.Logger
	// Now is the clock for record times and trims (default time.Now).
	Now func() time.Time
	// Insert replaces the batch write (tests: a slow or blocked state
	// database). Default: Store.InsertAttempts. The records' document keys
	// are the writer's buffers, reused once Insert returns: Insert must
	// not keep them. After a failure the same records (with the IDs and
	// times Insert gave them) are passed again.
	Insert func(ctx context.Context, records []AttemptRecord) (int, error)
}

// HistoryWriter records delivery attempts in the attempts collection off the
// delivery path: Record (and the observers of Observer) only puts the record
// in a bounded queue, never waiting; one goroutine writes the queue in
// batches and enforces the history's bounds. A batch whose write fails
// (the state database is down, refuses the client, lost the reply) is kept
// and written again with backoff, the same records in the same buckets (a
// write that was stored after all is not stored twice: see
// Store.InsertAttempts); meanwhile new records wait in the queue. When the
// queue is full (the state database is slow or down) records are dropped
// and counted (changehook_history_dropped_total), and so are records the
// state database refuses one by one (write errors), and those still
// waiting when Close gives up: delivery never waits for history. Its
// methods are safe for concurrent use.
//
// The queue is a ring of records that the writer inserts from in place:
// Record copies a record once, into its slot (its document key into the
// slot's own buffer, reused from record to record: no allocation per
// record), and the slots of the batch being written stay taken until the
// write ends (the ring holds Queue waiting records plus one batch in
// flight).
type HistoryWriter struct {
	st       *Store
	o        HistoryWriterOptions
	bell     chan struct{} // rung by Record at the first waiting record and at bellAt
	bellAt   int
	closing  chan struct{}
	done     chan struct{}
	ctx      context.Context // the writes'; canceled when Close gives up
	cancel   context.CancelFunc
	written  atomic.Uint64
	dropped  atomic.Uint64
	mWritten prometheus.Counter
	mDropped prometheus.Counter
	flushReq chan chan struct{}

	mu      sync.Mutex      // guards the fields below
	ring    []AttemptRecord // Queue + Batch slots
	keys    [][]byte        // each slot's document key buffer (its record's DocumentKey)
	head    int             // the oldest record's slot
	waiting int             // records queued and not being written, from head+inFlight
	flying  int             // records being written, from head
	closed  bool
	scratch []AttemptRecord // the writer's: a batch that wraps around the ring's end
}

// NewHistoryWriter starts a writer on st's attempts collection. Close stops
// it.
func NewHistoryWriter(st *Store, o HistoryWriterOptions) *HistoryWriter {
	if o.Queue <= 0 {
		o.Queue = DefaultHistoryQueue
	}
	if o.Batch <= 0 {
		o.Batch = DefaultHistoryBatch
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = DefaultHistoryFlushEvery
	}
	if o.TrimEvery <= 0 {
		o.TrimEvery = DefaultHistoryTrimEvery
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Insert == nil {
		o.Insert = st.InsertAttempts
	}
	w := &HistoryWriter{
		st: st, o: o,
		ring:     make([]AttemptRecord, o.Queue+o.Batch),
		keys:     make([][]byte, o.Queue+o.Batch),
		bell:     make(chan struct{}, 1),
		bellAt:   max(1, min(o.Batch, o.Queue/2)),
		closing:  make(chan struct{}),
		done:     make(chan struct{}),
		flushReq: make(chan chan struct{}),
		mWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "changehook_history_written_total",
			Help: "Delivery history records written to the state database's attempts collection.",
		}),
		mDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "changehook_history_dropped_total",
			Help: "Delivery history records dropped because the writer fell behind (queue full) or the state database refused them; delivery never waits for history.",
		}),
	}
	if o.Registry != nil {
		w.mWritten = metrics.Register(o.Registry, w.mWritten)
		w.mDropped = metrics.Register(o.Registry, w.mDropped)
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	go w.run()
	return w
}

// Record queues r for writing without waiting: it bounds r's fields
// (AttemptRecord.Truncate), sets At when zero, and reports false when r was
// dropped (queue full, or the writer closed).
func (w *HistoryWriter) Record(r AttemptRecord) bool {
	r.truncateText()
	key := r.DocumentKey
	if len(key) > MaxRecordDocumentKey {
		key, r.DocumentKeyOmitted = nil, true
	}
	r.DocumentKey = nil
	if r.At.IsZero() {
		r.At = w.o.Now()
	}
	slot := w.reserve(key)
	if slot == nil {
		return false
	}
	dk := slot.DocumentKey
	*slot = r
	slot.DocumentKey = dk
	w.commit()
	return true
}

// RecordAttempt is Record(AttemptFromDispatcher(*a, trigger, partition,
// kind, by)), the record built in its queue slot instead of being copied
// there: what the observers of Observer and of the runner call for every
// delivery attempt.
func (w *HistoryWriter) RecordAttempt(a *dispatcher.Attempt, trigger, partition, kind, by string) bool {
	if trigger == "" {
		trigger = a.Trigger
	}
	key, omitted := a.DocumentKey, false
	if len(key) > MaxRecordDocumentKey {
		key, omitted = nil, true
	}
	var errText string
	if a.Err != nil {
		errText = textcut.UTF8(a.Err.Error(), MaxRecordError)
	}
	at := a.Start.Add(a.Latency)
	if a.Start.IsZero() {
		at = w.o.Now()
	}
	r := w.reserve(key)
	if r == nil {
		return false
	}
	r.Kind, r.Trigger, r.Partition, r.By = kind, trigger, partition, by
	r.WebhookID, r.DocumentKeyOmitted, r.Operation, r.Events, r.Attempt = a.WebhookID, omitted, a.Operation, a.Events, a.Number
	r.Failed, r.Status, r.Reason, r.Error = a.Err != nil && a.Reason != dispatcher.ReasonDropped, a.Status, a.Reason, errText
	r.LatencyMS, r.Response = float64(a.Latency)/float64(time.Millisecond), textcut.UTF8(a.Body, MaxResponseSnippet)
	r.StartedAt, r.At = a.Start, at
	w.commit()
	return true
}

// reserve takes the next free slot of the ring for a record whose document
// key is key (nil: none), copied into the slot's own buffer, and returns
// the slot with w.mu held (the caller fills it, the key aside, and calls
// commit); nil (w.mu not held, the record dropped and counted) when the
// queue is full or the writer closed. The slot's other fields are zero (a
// released slot is cleared).
func (w *HistoryWriter) reserve(key []byte) *AttemptRecord {
	w.mu.Lock()
	if w.closed || w.waiting >= w.o.Queue {
		w.mu.Unlock()
		w.drop(1)
		return nil
	}
	i := w.head + w.flying + w.waiting
	if i >= len(w.ring) {
		i -= len(w.ring)
	}
	r := &w.ring[i]
	if len(key) > 0 {
		// The slot is free: neither waiting nor being written.
		w.keys[i] = append(w.keys[i][:0], key...)
		r.DocumentKey = w.keys[i]
	}
	return r
}

// commit queues the record of the slot reserve returned and releases w.mu.
func (w *HistoryWriter) commit() {
	w.waiting++
	n := w.waiting
	w.mu.Unlock()
	if n == 1 || n >= w.bellAt {
		select {
		case w.bell <- struct{}{}:
		default: // already rung
		}
	}
}

func (w *HistoryWriter) drop(n int) {
	w.dropped.Add(uint64(n))
	w.mDropped.Add(float64(n))
}

// Observer returns a dispatcher observer recording every attempt of
// trigger (partition "" when not partitioned) as a record of kind (KindDelivery
// for a trigger's dispatcher, KindReplay for a dead-letter replay) asked for
// by by ("" for deliveries). It never waits.
func (w *HistoryWriter) Observer(trigger, partition, kind, by string) func(dispatcher.Attempt) {
	return func(a dispatcher.Attempt) {
		w.RecordAttempt(&a, trigger, partition, kind, by)
	}
}

// AttemptFromDispatcher converts a dispatcher attempt into a history record
// (not yet truncated: see AttemptRecord.Truncate).
func AttemptFromDispatcher(a dispatcher.Attempt, trigger, partition, kind, by string) AttemptRecord {
	if trigger == "" {
		trigger = a.Trigger
	}
	r := AttemptRecord{
		Kind: kind, Trigger: trigger, Partition: partition, By: by,
		WebhookID: a.WebhookID, DocumentKey: a.DocumentKey, Operation: a.Operation, Events: a.Events, Attempt: a.Number,
		Failed: a.Err != nil && a.Reason != dispatcher.ReasonDropped, Status: a.Status, Reason: a.Reason,
		LatencyMS: float64(a.Latency) / float64(time.Millisecond), Response: a.Body, StartedAt: a.Start,
	}
	if a.Err != nil {
		r.Error = a.Err.Error()
	}
	if !a.Start.IsZero() {
		r.At = a.Start.Add(a.Latency)
	}
	return r
}

// Written and Dropped return how many records were written and dropped so
// far.
func (w *HistoryWriter) Written() uint64 { return w.written.Load() }

// Dropped returns how many records were dropped so far (queue full,
// refused by the state database, left when Close gave up, or recorded
// after Close).
func (w *HistoryWriter) Dropped() uint64 { return w.dropped.Load() }

// Flush waits until every record queued before the call is written (or
// dropped), or ctx ends: while a write fails and is retried, until it
// succeeds.
func (w *HistoryWriter) Flush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case w.flushReq <- ack:
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops accepting records and writes the queued ones (retrying a
// failed write) until ctx ends; then the write in progress is canceled and
// what is left is dropped and counted. Calling it again waits for the first Close.
func (w *HistoryWriter) Close(ctx context.Context) error {
	w.mu.Lock()
	first := !w.closed
	w.closed = true
	w.mu.Unlock()
	if first {
		close(w.closing)
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.cancel()
		<-w.done
		return fmt.Errorf("close history writer: %w", ctx.Err())
	}
}

// run writes batches until Close, then writes what is queued.
func (w *HistoryWriter) run() {
	defer close(w.done)
	defer w.cancel()
	ctx := w.ctx
	flush := time.NewTimer(w.o.FlushEvery)
	flush.Stop()
	trim := time.NewTicker(w.o.TrimEvery)
	defer trim.Stop()
	sinceTrim := 0
	trimAfter := max(w.o.MaxRecords/10, 1)
	var lastErr string
	// failed is the batch whose write failed (nil: none): it keeps its
	// slots (and, when it wrapped around the ring's end, scratch) and is
	// written again, the same records with the same ids, when retry fires,
	// with backoff; meanwhile new records wait in the queue, dropped only
	// when it is full. acks are the Flushes waiting for it.
	var failed []AttemptRecord
	retries := 0
	retry := time.NewTimer(0)
	retry.Stop()
	defer retry.Stop()
	var acks []chan struct{}
	defer func() {
		for _, ack := range acks {
			close(ack)
		}
	}()
	// insert writes batch and reports whether it is done with: written, or
	// refused record by record (those are dropped and counted), or given
	// up on because Close's deadline passed. Any other failure (the state
	// database unreachable, unauthorized, no primary, a lost reply) keeps
	// it for a retry: its buckets' ids come from its records' ids, so a
	// bucket already stored the first time is refused as a duplicate
	// and counts as written.
	insert := func(batch []AttemptRecord) bool {
		wctx, c := context.WithTimeout(ctx, historyWriteTimeout)
		n, err := w.o.Insert(wctx, batch)
		c()
		if err != nil && ctx.Err() == nil && !refused(err) {
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				w.o.Logger.Warn("delivery history: cannot write records; writing them again shortly", "records", len(batch), "error", msg)
			}
			return false
		}
		w.written.Add(uint64(n))
		w.mWritten.Add(float64(n))
		if lost := len(batch) - n; lost > 0 {
			w.drop(lost)
		}
		if err != nil {
			if msg := err.Error(); msg != lastErr {
				lastErr = msg
				w.o.Logger.Warn("delivery history: records dropped", "records", len(batch)-n, "error", msg)
			}
		} else {
			lastErr = ""
		}
		sinceTrim += n
		return true
	}
	// write writes queued records in batches of at most Batch: with full,
	// only while a batch of bellAt records is waiting; otherwise the
	// records waiting when it is called (each batch takes what is waiting
	// by then, up to Batch). Records that arrive while those are written
	// wait for their own batch to fill or their own FlushEvery: writing
	// until none was left chased a busy trigger's stream one insert of a
	// handful of records at a time (an insert takes about as long as a
	// few dozen deliveries), so that a flush of a steady stream became
	// hundreds of tiny inserts. A failed batch is written first, when
	// retry fires: until then write does nothing.
	write := func(full bool) {
		if failed != nil {
			if !insert(failed) {
				retry.Reset(dispatcher.FullJitterBackoff(retries, w.o.FlushEvery, historyRetryMax))
				retries++
				return
			}
			w.release(len(failed))
			failed, retries = nil, 0
		}
		w.mu.Lock()
		due := w.waiting
		w.mu.Unlock()
		for full || due > 0 {
			batch := w.take(full)
			if len(batch) == 0 {
				break
			}
			due -= len(batch)
			if !insert(batch) {
				failed = batch
				retry.Reset(dispatcher.FullJitterBackoff(retries, w.o.FlushEvery, historyRetryMax))
				retries++
				return
			}
			w.release(len(batch))
		}
		for _, ack := range acks {
			close(ack)
		}
		acks = nil
	}
	doTrim := func() {
		if w.o.Retention <= 0 && w.o.MaxRecords <= 0 {
			return
		}
		tctx, c := context.WithTimeout(ctx, historyWriteTimeout)
		_, err := w.st.TrimAttempts(tctx, w.o.Now(), w.o.Retention, w.o.MaxRecords)
		c()
		if err != nil && !errors.Is(err, context.Canceled) {
			w.o.Logger.Warn("delivery history: trim failed", "error", err.Error())
		}
		sinceTrim = 0
	}
	doTrim() // enforce the bounds once at start
	// The writer sleeps until Record rings the bell (at the first waiting
	// record, to start the batch's FlushEvery, and at bellAt waiting
	// records) or the batch's FlushEvery ends: waking at every record woke
	// this goroutine once per delivery attempt, a cross-thread wake-up per
	// event for a trigger delivering one event at a time.
	armed := false // flush is running for the waiting records
	for {
		select {
		case <-w.bell:
			if failed == nil {
				write(true) // full batches; a rest waits for flush
			}
		case <-flush.C:
			armed = false
			if failed == nil {
				write(false)
			}
		case <-retry.C:
			write(false)
		case ack := <-w.flushReq:
			acks = append(acks, ack) // closed once what waits now is written
			if failed == nil {
				write(false)
			}
		case <-trim.C:
			if failed == nil {
				write(false)
				doTrim()
			}
		case <-w.closing:
			// Written until Close's deadline cancels ctx: a failed batch
			// is retried until then, then dropped with the rest.
			for write(false); failed != nil; write(false) {
				select {
				case <-retry.C:
				case <-ctx.Done():
				}
			}
			if w.o.MaxRecords > 0 && sinceTrim > 0 {
				doTrim()
			}
			return
		}
		if w.o.MaxRecords > 0 && sinceTrim >= trimAfter {
			doTrim()
		}
		w.mu.Lock()
		waiting := w.waiting
		w.mu.Unlock()
		switch {
		case (waiting == 0 || failed != nil) && armed:
			flush.Stop()
			armed = false
		case waiting > 0 && failed == nil && !armed:
			flush.Reset(w.o.FlushEvery)
			armed = true
		}
	}
}

// refused reports whether err is the state database refusing records one
// by one (write errors other than a primary's absence), which writing them
// again would not change: they are dropped. Anything else (no answer,
// unauthorized, no primary, a write concern error) is worth a retry.
func refused(err error) bool {
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil || len(bwe.WriteErrors) == 0 {
		return false
	}
	for _, we := range bwe.WriteErrors {
		if slices.Contains(unavailableCodes, we.Code) {
			return false
		}
	}
	return true
}

// take returns the next batch to write, at most Batch of the waiting
// records (when full, only if bellAt are waiting; none: an empty batch),
// and marks them in flight: their slots stay taken until release, and only
// the writer touches them meanwhile (it alone moves head). A batch that
// wraps around the ring's end is copied into scratch.
func (w *HistoryWriter) take(full bool) []AttemptRecord {
	w.mu.Lock()
	n := min(w.waiting, w.o.Batch)
	if n == 0 || full && w.waiting < w.bellAt {
		w.mu.Unlock()
		return nil
	}
	w.waiting -= n
	w.flying = n
	w.mu.Unlock()
	if end := w.head + n; end <= len(w.ring) {
		return w.ring[w.head:end:end]
	}
	k := len(w.ring) - w.head
	w.scratch = append(append(w.scratch[:0], w.ring[w.head:]...), w.ring[:n-k]...)
	return w.scratch
}

// release frees the slots of the n records of the batch take returned,
// cleared first so that the ring holds no references to written records.
func (w *HistoryWriter) release(n int) {
	if end := w.head + n; end <= len(w.ring) {
		clear(w.ring[w.head:end])
	} else {
		clear(w.ring[w.head:])
		clear(w.ring[:end-len(w.ring)])
		clear(w.scratch)
	}
	w.mu.Lock()
	w.head = (w.head + n) % len(w.ring)
	w.flying = 0
	w.mu.Unlock()
}
