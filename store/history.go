package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// History writer defaults.
const (
	// DefaultHistoryQueue is HistoryWriterOptions.Queue when zero.
	DefaultHistoryQueue = 4096
	// DefaultHistoryBatch is HistoryWriterOptions.Batch when zero: one
	// full bucket (maxBucketRecords), so that a busy trigger's history
	// costs one insert per 512 attempts.
	DefaultHistoryBatch = maxBucketRecords
	// DefaultHistoryFlushEvery is HistoryWriterOptions.FlushEvery when zero.
	DefaultHistoryFlushEvery = 200 * time.Millisecond
	// DefaultHistoryTrimEvery is HistoryWriterOptions.TrimEvery when zero.
	DefaultHistoryTrimEvery = time.Minute
	// historyWriteTimeout bounds one batch write or trim.
	historyWriteTimeout = 30 * time.Second
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
	// database). Default: Store.InsertAttempts.
	Insert func(ctx context.Context, records []AttemptRecord) (int, error)
}

// HistoryWriter records delivery attempts in the attempts collection off the
// delivery path: Record (and the observers of Observer) only puts the record
// in a bounded queue, never waiting; one goroutine writes the queue in
// batches and enforces the history's bounds. When the queue is full (the
// state database is slow or down) records are dropped and counted
// (changehook_history_dropped_total): delivery never waits for history.
// Its methods are safe for concurrent use.
type HistoryWriter struct {
	st       *Store
	o        HistoryWriterOptions
	queue    chan AttemptRecord
	bell     chan struct{} // rung by Record once bellAt records are queued
	bellAt   int
	closing  chan struct{}
	done     chan struct{}
	ctx      context.Context // the writes'; canceled when Close gives up
	cancel   context.CancelFunc
	closeMu  sync.RWMutex // held for reading while enqueuing; Close takes it to stop Record
	closed   bool
	written  atomic.Uint64
	dropped  atomic.Uint64
	mWritten prometheus.Counter
	mDropped prometheus.Counter
	flushReq chan chan struct{}
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
		queue:    make(chan AttemptRecord, o.Queue),
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
	r.Truncate()
	if r.At.IsZero() {
		r.At = w.o.Now()
	}
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if !w.closed {
		select {
		case w.queue <- r:
			if len(w.queue) >= w.bellAt {
				select {
				case w.bell <- struct{}{}:
				default: // already rung
				}
			}
			return true
		default:
		}
	}
	w.drop(1)
	return false
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
		w.Record(AttemptFromDispatcher(a, trigger, partition, kind, by))
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

// Dropped returns how many records were dropped so far (queue full, write
// refused, or recorded after Close).
func (w *HistoryWriter) Dropped() uint64 { return w.dropped.Load() }

// Flush waits until every record queued before the call is written (or
// dropped), or ctx ends.
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

// Close stops accepting records and writes the queued ones until ctx ends;
// then the write in progress is canceled and what is left is dropped and
// counted. Calling it again waits for the first Close.
func (w *HistoryWriter) Close(ctx context.Context) error {
	w.closeMu.Lock()
	first := !w.closed
	w.closed = true
	w.closeMu.Unlock()
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

// run writes batches until Close, then drains the queue.
func (w *HistoryWriter) run() {
	defer close(w.done)
	defer w.cancel()
	ctx := w.ctx
	batch := make([]AttemptRecord, 0, w.o.Batch)
	flush := time.NewTimer(w.o.FlushEvery)
	flush.Stop()
	trim := time.NewTicker(w.o.TrimEvery)
	defer trim.Stop()
	sinceTrim := 0
	trimAfter := max(w.o.MaxRecords/10, 1)
	var lastErr string
	write := func() {
		if len(batch) == 0 {
			return
		}
		wctx, c := context.WithTimeout(ctx, historyWriteTimeout)
		n, err := w.o.Insert(wctx, batch)
		c()
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
		clear(batch)
		batch = batch[:0]
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
	// The writer takes a batch's first record from the queue and then
	// leaves the queue alone until the batch's FlushEvery ends or Record
	// rings the bell (bellAt records queued): receiving every record as it
	// came woke this goroutine once per delivery attempt, a cross-thread
	// wake-up per event for a trigger delivering one event at a time.
	armed := false // flush is running for the pending batch
	for {
		var queue <-chan AttemptRecord
		if len(batch) == 0 {
			queue = w.queue
		}
		select {
		case r := <-queue:
			batch = append(batch, r)
			if len(batch) >= w.o.Batch {
				write()
			}
		case <-w.bell:
			w.drainInto(&batch, write) // full batches; a rest waits for flush
		case <-flush.C:
			armed = false
			w.drainInto(&batch, write)
			write()
		case ack := <-w.flushReq:
			w.drainInto(&batch, write)
			write()
			close(ack)
		case <-trim.C:
			write()
			doTrim()
		case <-w.closing:
			w.drainInto(&batch, write)
			write()
			if w.o.MaxRecords > 0 && sinceTrim > 0 {
				doTrim()
			}
			return
		}
		if w.o.MaxRecords > 0 && sinceTrim >= trimAfter {
			doTrim()
		}
		switch {
		case len(batch) == 0 && armed:
			flush.Stop()
			armed = false
		case len(batch) > 0 && !armed:
			flush.Reset(w.o.FlushEvery)
			armed = true
		}
	}
}

// drainInto moves every queued record into batch, writing full batches.
func (w *HistoryWriter) drainInto(batch *[]AttemptRecord, write func()) {
	for {
		select {
		case r := <-w.queue:
			*batch = append(*batch, r)
			if len(*batch) >= w.o.Batch {
				write()
			}
		default:
			return
		}
	}
}
