package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Dispatcher is the worker pool that delivers the events of one trigger: a
// Tracker orders and acknowledges them, Concurrency workers deliver them
// with a Sender, and failures are dead-lettered (Trigger.DeadLetter) or
// retried until they succeed. Its methods are safe for concurrent use,
// except that Submit must be called from one goroutine (the trigger's stream
// reader): submission order is stream order.
type Dispatcher struct {
	trigger     string
	deadLetter  bool
	ordering    triggers.Ordering
	concurrency int
	sender      *Sender
	sink        DeadLetterSink
	tracker     *Tracker[job]
	clock       Clock
	log         *slog.Logger
	metrics     *Metrics
	maxBytes    int64       // this trigger's in-flight bytes (0: no bound)
	shared      *ByteBudget // process-wide in-flight bytes (nil: none)
	submitWait  *WaitClock  // WithSubmitWait (nil: not measured)
	fail        failTrack   // FailingSince
	payload     payloadGuard
	circuit     *circuit             // nil: disabled
	batcher     *batcher             // nil: one event per request
	splitLog    splitLog             // throttles the 413 split log line
	progs       chunkAlloc[progress] // newProgress's records (Submit's goroutine)

	runCtx    context.Context // requests on the wire; canceled when Close's or Stop's grace ends, with its cause
	cancelRun context.CancelCauseFunc
	// workCtx is what deliveries run under: a child of runCtx that Stop
	// cancels at once, so that no delivery starts, waits or retries once
	// the dispatcher stops, while the requests already on the wire run
	// on under runCtx (it carries runCtx for them: attemptContext).
	workCtx  context.Context
	stopWork context.CancelCauseFunc
	stopped  chan struct{} // closed when the workers have exited
	closeMu  sync.Mutex
	closed   bool
}

// job is one submitted event.
type job struct {
	ev   Event     // its Received is when it was submitted, if not set before
	prog *progress // its attempts so far, for HeadOfLine (nil: none yet, see batcher.startProgress)
}

// deadLetterOf is the dead letter of ev, delivered as webhookID (its own, or
// for a batch's events each one's own) after the attempts res ended with
// err, whose text is kept up to MaxErrorText bytes.
func deadLetterOf(trigger, webhookID string, ev Event, res Result, err error) DeadLetter {
	return DeadLetter{
		Trigger:        trigger,
		WebhookID:      webhookID,
		Event:          ev.Raw,
		Token:          ev.Token,
		Attempts:       res.Attempts,
		LastStatus:     res.Status,
		LastReason:     res.Reason,
		LastError:      textcut.Marked(err.Error(), MaxErrorText),
		LastResponse:   res.Body,
		FirstAttemptAt: res.FirstAttemptAt,
	}
}

// New returns the Dispatcher of trigger t, a trigger as triggers.Parse
// validated it (tests may build one by hand), with its workers started. It
// reads t and never modifies it. sink receives dead letters; it is required
// when t.DeadLetter is true: an event that fails permanently (a 4xx other
// than 408/429, a redirect) or exhausts t.Retry.MaxAttempts is handed to the
// sink and counts as done. Without dead letters every failure is retried
// with capped backoff until it succeeds; the event is never skipped, so it
// blocks the trigger (Strict) or its key (PerDocument). Zero fields take
// defaults (triggers' Default* constants; Ordering Strict; Concurrency 1;
// Method POST; Format json). New checks the URL, method, headers, secrets and
// format; its errors never contain secrets. With t.Batch the events are
// delivered in batches (see triggers.BatchPolicy): one request per batch,
// whose events are done together, or dead-lettered one by one.
func New(t *triggers.Trigger, sink DeadLetterSink, opts ...Option) (*Dispatcher, error) {
	if t == nil {
		return nil, errors.New("new dispatcher: nil trigger")
	}
	d, err := newDispatcher(t, sink, opts)
	if err != nil {
		return nil, fmt.Errorf("new dispatcher for trigger %q: %w", t.Name, err)
	}
	d.start()
	return d, nil
}

// newDispatcher validates t and builds the Dispatcher and its Sender.
func newDispatcher(t *triggers.Trigger, sink DeadLetterSink, opts []Option) (*Dispatcher, error) {
	if t.Name == "" {
		return nil, errors.New("trigger name is empty")
	}
	ordering := t.Ordering
	if ordering == "" {
		ordering = triggers.Strict
	}
	if !ordering.Valid() {
		return nil, fmt.Errorf("unknown ordering %q (want strict, per_document or none)", ordering)
	}
	if t.DeadLetter && sink == nil {
		return nil, errors.New("dead letters enabled but no dead-letter sink given")
	}
	var o options
	for _, f := range opts {
		f(&o)
	}
	s, err := newSender(t, o)
	if err != nil {
		return nil, err
	}
	if t.MaxInflightBytes < 0 {
		return nil, fmt.Errorf("negative max_inflight_bytes %d", t.MaxInflightBytes)
	}
	d := &Dispatcher{
		trigger: t.Name, deadLetter: t.DeadLetter, ordering: ordering, concurrency: ordering.Concurrency(t.Concurrency),
		sender: s, sink: sink, clock: s.clock, log: s.log, metrics: s.metrics,
		maxBytes: t.MaxInflightBytes, shared: o.shared, submitWait: o.submitWait,
		payload: payloadGuard{max: t.PayloadErrors.MaxConsecutive, pause: o.payloadPause},
		circuit: newCircuit(t, s.retry, s.clock, s.metrics),
	}
	d.fail.clock = d.clock
	if d.circuit != nil {
		s.circuitOpen = d.circuit.open // only the probe is sent while it is open
		s.opensCircuit = d.circuit.opensOn
	}
	if t.Batch != nil {
		if d.batcher, err = newBatcher(d, t, t.Batch); err != nil {
			return nil, err
		}
		d.batcher.minHeld = o.batchedHeld
	}
	return d, nil
}

// queueLen is the minimum length of the queue behind the deliveries in
// flight. A blocked Submit resumes once half of the window is free (see
// Tracker), so the queue also sets how many events the stream reader
// admits per wake-up: with one delivery at a time (strict), a queue of 16
// woke the reader every 4 events, each wake-up a thread woken in an
// otherwise idle process; 64 wakes it every 32. The held events' bytes
// stay bounded by the byte budgets, not by this length.
const queueLen = 64

// capacity bounds the events held at once: every submitted event is held
// from Submit until the watermark passes it, so this is Concurrency
// deliveries in flight plus a queue of max(Concurrency, queueLen) events,
// and a slow (or blocked) oldest event stops admission once that window is
// full.
// Batched: the sealed batches and the open one, full, or more with
// WithBatchedHeld (batcher.capacity).
func (d *Dispatcher) capacity() int {
	if d.batcher != nil {
		return d.batcher.capacity()
	}
	return d.concurrency + max(d.concurrency, queueLen)
}

// Capacity returns how many submitted events the dispatcher holds at most
// before Submit blocks (deliveries in flight, queued, and for a batched
// trigger its sealed and open batches and the events waiting for them; see
// WithBatchedHeld). A blocked Submit resumes once half of it is free.
func (d *Dispatcher) Capacity() int { return d.tracker.Capacity() }

// start creates the tracker and starts the workers.
func (d *Dispatcher) start() {
	ordering, worker := d.ordering, d.worker
	if d.batcher != nil {
		// Every event is handed to the batcher at once, in stream order;
		// the batcher applies the ordering to whole batches.
		ordering, worker = triggers.None, d.batchWorker
	}
	d.tracker = NewTracker[job](ordering, d.capacity())
	d.tracker.SetByteBudgets(d.maxBytes, d.shared)
	if d.submitWait != nil {
		d.tracker.SetWaitClock(d.submitWait, d.clock.Now)
	}
	d.tracker.onPass = releaseJob
	d.runCtx, d.cancelRun = context.WithCancelCause(context.Background())
	work, stopWork := context.WithCancelCause(d.runCtx)
	d.workCtx, d.stopWork = context.WithValue(work, attemptCtxKey{}, d.runCtx), stopWork
	d.stopped = make(chan struct{})
	var workers sync.WaitGroup
	if d.batcher != nil {
		workers.Go(d.batcher.run)
	}
	for range d.concurrency {
		workers.Go(worker)
	}
	go func() {
		workers.Wait()
		close(d.stopped)
	}()
}

// Submit hands ev to the dispatcher. Events must be submitted in stream
// order, from one goroutine. Submit copies ev, so the caller may reuse its
// buffers afterwards. It blocks while the dispatcher is at capacity
// (Concurrency deliveries in flight and max(Concurrency, 64) queued) or its
// events' bytes would exceed Config.MaxInflightBytes or the shared budget (an event larger
// than a budget waits until nothing else is held, then passes alone), so a
// slow endpoint slows the caller down; it returns ctx's error if ctx ends first, and
// ErrClosed after Close. Under PerDocument a keyless event is a barrier: Submit
// returns once it is delivered (see PerDocument); a batched trigger's
// barrier is kept by its batches instead (see triggers.BatchPolicy), and
// Submit does not wait for it.
func (d *Dispatcher) Submit(ctx context.Context, ev Event) error { return d.submit(ctx, ev, false) }

// SubmitOwned is Submit for an event whose Raw and Token the caller hands
// over: the dispatcher keeps them as they are instead of copying them, so
// the caller must never modify them, nor any memory they share, afterwards
// (Token may lie within Raw, and several events may share one buffer).
// The byte budgets count len(Raw)+len(Token), as for Submit.
func (d *Dispatcher) SubmitOwned(ctx context.Context, ev Event) error { return d.submit(ctx, ev, true) }

// submit is Submit, or SubmitOwned when owned.
func (d *Dispatcher) submit(ctx context.Context, ev Event, owned bool) error {
	if ctx == nil {
		return fmt.Errorf("submit event: %w", errNilContext)
	}
	if len(ev.Token) == 0 {
		return errors.New("submit event: empty resume token")
	}
	if len(ev.Raw) == 0 {
		return errors.New("submit event: empty event document")
	}
	size := len(ev.Raw) + len(ev.Token)
	raw, token := ev.Raw, ev.Token
	if !owned {
		// One copy holds both (both are non-empty, checked above).
		buf := make([]byte, size)
		n := copy(buf, ev.Raw)
		copy(buf[n:], ev.Token)
		raw, token = buf[:n:n], buf[n:]
	}
	at := ev.Received
	if at.IsZero() {
		at = d.clock.Now()
	}
	j := job{ev: Event{Raw: raw, Token: token, Key: ev.Key, Received: at, More: ev.More}}
	if d.batcher == nil {
		// A batched event gets one only when it starts a batch or is
		// sealed alone (batcher.startProgress): a batch's attempts are its
		// first event's.
		j.prog = d.newProgress()
	}
	if owned {
		j.ev.Release = ev.Release
	}
	if _, err := d.tracker.TrackSized(ctx, j.ev.Token, j.ev.Key, int64(size), j); err != nil {
		return fmt.Errorf("submit event: %w", err)
	}
	return nil
}

// releaseJob lets go of an event's bytes once the watermark has passed it,
// and gives an owned event's bytes back (Event.Release): nothing refers to
// them after that. The job's ticket may stay reachable (its chunk of
// tickets lives while any of them is held), so its references go too:
// else each chunk would keep the bytes of up to allocChunk passed events,
// beyond the byte budgets. Key stays: a batch reads its events' keys
// after resolving them (batcher.resolved).
func releaseJob(j *job) {
	j.ev.Raw, j.ev.Token, j.prog = nil, nil, nil
	if release := j.ev.Release; release != nil {
		j.ev.Release = nil
		release()
	}
}

// newProgress returns a fresh progress record for a submitted event, from
// a chunk (see chunkAlloc). Submit's goroutine only.
func (d *Dispatcher) newProgress() *progress {
	p := d.progs.next()
	p.fail = &d.fail
	return p
}

// worker delivers started events until the tracker is closed and drained.
func (d *Dispatcher) worker() {
	for tk := range d.tracker.Ready() {
		done := false
		if d.workCtx.Err() == nil {
			done = d.process(d.workCtx, tk.Value)
		}
		tk.Resolve(done)
	}
}

// Watermark returns the resume token of the newest submitted event such
// that it and every event submitted before it were delivered or
// dead-lettered: the token that is safe to checkpoint. ok is false until the
// first submitted event is done. Events canceled by Close are never done, so
// the watermark never passes them. The returned token is a copy.
func (d *Dispatcher) Watermark() (token bson.Raw, ok bool) { return d.tracker.Watermark() }

// Idle reports whether every submitted event is done (delivered or
// dead-lettered): none is in flight or queued, none was resolved as not
// done while the dispatcher runs on, and none was held back by a
// payload-error pause (see Halted). Only then may the caller checkpoint
// past the watermark.
func (d *Dispatcher) Idle() bool { return d.tracker.Held() == 0 && !d.payload.halted.Load() }

// Close stops accepting events and lets the admitted ones finish until ctx
// is done (the grace period); then it cancels the remaining deliveries,
// which are not marked done, waits for the workers to exit and closes the
// webhook connections it kept open. It returns
// nil when everything finished within the grace period, otherwise an
// *UnfinishedError wrapping ctx's error. Calling Close again waits for the
// first Close.
//
// A ctx that ends with a cause of its own (context.WithTimeoutCause: not
// just its deadline or a cancellation) says why the dispatcher is closed —
// a control that restarts the trigger, say: the deliveries Close cuts off
// are logged with it rather than as a shutdown's, and the error names it.
func (d *Dispatcher) Close(ctx context.Context) error {
	if first, err := d.beginClose(ctx, "close dispatcher"); !first {
		return err
	}

	var graceErr error
	select {
	case <-d.tracker.Drained():
	case <-ctx.Done():
		what := "close dispatcher"
		if why := closeCause(ctx); why != "" {
			what += " for " + why
		}
		graceErr = &UnfinishedError{What: what, Events: d.tracker.Pending(), Err: ctx.Err()}
	}
	d.cancelRun(context.Cause(ctx))
	<-d.stopped
	d.sender.CloseIdleConnections()
	return graceErr
}

// Stop is Close for a trigger held by a pause, a control or a reload: it
// stops accepting events and, from now on, starts nothing — no queued
// event or batch is sent, no retry is made, and every wait (a backoff, a
// rate limit, the open circuit, a batch's max_wait) ends at once — while
// the attempts already on the wire finish until ctx is done (the grace
// period), when they are cut off. An attempt that finishes with success
// counts; one that fails is neither retried nor dead-lettered. The events
// it leaves undone are never marked done, so the watermark stops before
// the first of them and they are delivered again from the checkpoint,
// under the same webhook-id. why, when not nil, is why the dispatcher
// stops ("pause", "skip by cli"): the deliveries it cuts short are logged
// with it. Stop waits for the workers to exit and closes the webhook
// connections it kept open, as Close does. It returns nil when every
// submitted event was done, otherwise an *UnfinishedError: wrapping ctx's
// error when the grace period cut attempts off, ErrStopped when only
// events not on the wire were left. Calling Stop or Close again waits for
// the first call.
func (d *Dispatcher) Stop(ctx context.Context, why error) error {
	if first, err := d.beginClose(ctx, "stop dispatcher"); !first {
		return err
	}
	if why == nil {
		why = ErrStopped
	}
	d.stopWork(why)

	what := "stop dispatcher"
	if why != ErrStopped { //nolint:errorlint // the sentinel itself, not a wrapped one.
		what += " for " + why.Error()
	}
	var graceErr error
	select {
	case <-d.stopped:
	case <-ctx.Done():
		graceErr = &UnfinishedError{What: what, Events: d.tracker.Held(), Err: ctx.Err()}
	}
	d.cancelRun(context.Cause(ctx))
	<-d.stopped
	d.sender.CloseIdleConnections()
	if n := d.tracker.Held(); graceErr == nil && n > 0 {
		graceErr = &UnfinishedError{What: what, Events: n, Err: ErrStopped}
	}
	return graceErr
}

// beginClose starts the first Close or Stop (what names it in errors):
// it stops admitting events and reports first. A later call (first false)
// waits for the first one's workers to exit, or ctx to end, and returns
// its error; so does one with a nil ctx, at once.
func (d *Dispatcher) beginClose(ctx context.Context, what string) (first bool, err error) {
	if ctx == nil {
		return false, fmt.Errorf("%s: %w", what, errNilContext)
	}
	d.closeMu.Lock()
	if d.closed {
		d.closeMu.Unlock()
		select {
		case <-d.stopped:
			return false, nil
		case <-ctx.Done():
			return false, fmt.Errorf("%s: %w", what, ctx.Err())
		}
	}
	d.closed = true
	d.closeMu.Unlock()
	d.tracker.Close()
	return true, nil
}

// ErrStopped is the error of the events Dispatcher.Stop left undone
// without cutting an attempt off (see UnfinishedError).
var ErrStopped = errors.New("stopped before they were delivered or dead-lettered")

// attemptCtxKey is the context key under which the deliveries' context
// (Dispatcher.workCtx) carries the context their requests run under.
type attemptCtxKey struct{}

// attemptContext returns the context a request of a delivery running under
// ctx is sent under: the dispatcher's run context when ctx is its
// deliveries' (Stop ends those at once, but not the requests already on
// the wire), ctx itself otherwise (a Sender used alone).
func attemptContext(ctx context.Context) context.Context {
	if a, ok := ctx.Value(attemptCtxKey{}).(context.Context); ok {
		return a
	}
	return ctx
}

// UnfinishedError is Close's or Stop's error when they left submitted
// events neither delivered nor dead-lettered. The watermark stops before
// the first of those events, so they are delivered again from the
// checkpoint.
type UnfinishedError struct {
	// What names the close ("close dispatcher", with its cause).
	What string
	// Events is how many submitted events were neither delivered nor
	// dead-lettered.
	Events int
	// Err is the context's error, or ErrStopped for the events Stop left
	// before they were sent.
	Err error
}

// Error says how many events the grace period (or Stop) left unfinished.
func (e *UnfinishedError) Error() string {
	if e.Err == ErrStopped { //nolint:errorlint // the sentinel itself, not a wrapped one.
		return fmt.Sprintf("%s: %d events left undone: %v", e.What, e.Events, e.Err)
	}
	return fmt.Sprintf("%s: grace period ended with %d events unfinished: %v", e.What, e.Events, e.Err)
}

// Unwrap returns the context's error.
func (e *UnfinishedError) Unwrap() error { return e.Err }

// process delivers one event and reports whether it is done (delivered or
// dead-lettered).
func (d *Dispatcher) process(ctx context.Context, j job) bool {
	trigger := d.trigger
	d.metrics.inflightAdd(trigger, 1)
	defer d.metrics.inflightAdd(trigger, -1)
	res, err, held := d.deliverGuarded(ctx, j)
	switch {
	case held:
		// Payload errors paused the trigger: the event stays undone, so
		// resuming (with the configuration fixed) delivers it.
		return false
	case err == nil && res.Dropped:
		d.metrics.delivery(trigger, OutcomeDropped, d.clock.Now().Sub(j.ev.Received).Seconds())
		return true
	case err == nil:
		d.metrics.delivery(trigger, OutcomeDelivered, d.clock.Now().Sub(j.ev.Received).Seconds())
		if d.log.Enabled(ctx, slog.LevelDebug) {
			d.log.LogAttrs(ctx, slog.LevelDebug, "event delivered", slog.String("webhook_id", res.WebhookID),
				slog.Int("status", res.Status), slog.Int("attempts", res.Attempts), slog.Duration("latency", res.Latency))
		}
		return true
	case res.Reason == ReasonCanceled || ctx.Err() != nil:
		// Cut off by Close (a pause, reload, control, shutdown or lease
		// loss): the event stays undone and is delivered later (or
		// dead-lettered by a skip), so no outcome is recorded (its
		// attempts are).
		d.logCanceled(ctx, err, "delivery canceled", slog.String("webhook_id", res.WebhookID), slog.Int("attempts", res.Attempts))
		return false
	case !d.deadLetter:
		// Unreachable: DeliverUntilSuccess ends only on success or
		// cancellation. Never skip the event.
		d.metrics.delivery(trigger, OutcomeFailed, -1)
		return false
	}
	dl := deadLetterOf(trigger, res.WebhookID, j.ev, res, err)
	if !d.putDeadLetter(ctx, dl, j.prog) {
		// Canceled: the event stays undone and is delivered later.
		return false
	}
	d.metrics.delivery(trigger, OutcomeDeadLettered, d.clock.Now().Sub(j.ev.Received).Seconds())
	return true
}

// logCanceled logs deliveries Close cut off: msg with the cause Close was
// given (closeCause: a control that restarts the trigger, say), or msg
// "by shutdown" when it was given none; or, for a delivery the transport
// withheld (err matches ErrWithheld), msg saying so with err.
func (d *Dispatcher) logCanceled(ctx context.Context, err error, msg string, attrs ...slog.Attr) {
	if ctx.Err() == nil && errors.Is(err, ErrWithheld) {
		// Refused before sending (the lease gate), not cut off by Close.
		d.log.LogAttrs(ctx, slog.LevelInfo, msg+": withheld, not sent", append(attrs, slog.String("error", err.Error()))...)
		return
	}
	if why := closeCause(ctx); why != "" {
		d.log.LogAttrs(ctx, slog.LevelInfo, msg, append([]slog.Attr{slog.String("cause", why)}, attrs...)...)
		return
	}
	d.log.LogAttrs(ctx, slog.LevelInfo, msg+" by shutdown", attrs...)
}

// closeCause is why ctx (Close's, or the deliveries' once Close canceled
// them) ended, as its cause says (context.Cause): "" when it says no more
// than that its deadline passed or it was canceled.
func closeCause(ctx context.Context) string {
	c := context.Cause(ctx)
	if c == nil || errors.Is(c, context.Canceled) || errors.Is(c, context.DeadlineExceeded) {
		return ""
	}
	return c.Error()
}

// putDeadLetter stores dl, retrying with backoff until it succeeds (true) or
// ctx ends (false; for the deliveries' context, its run context: a Stop
// does not cut it off, its grace period does). Each failure is counted (by its DeadLetterFailReason)
// and recorded in prog, the delivery's progress, which the head of line
// shows while the event holds the checkpoint.
func (d *Dispatcher) putDeadLetter(ctx context.Context, dl DeadLetter, prog *progress) bool {
	// A dead letter decided before a Stop is stored as an attempt on the
	// wire finishes: within the grace period (the run context), not cut
	// off at once (an insert the server applied would be left beside an
	// event still undone).
	ctx = attemptContext(ctx)
	var last string
	for attempt := 0; ; attempt++ {
		dl.DeadLetteredAt = d.clock.Now()
		err := d.sink.PutDeadLetter(ctx, dl)
		if err == nil {
			prog.deadLetterStored()
			d.metrics.deadLettered(d.trigger)
			d.log.LogAttrs(ctx, slog.LevelWarn, "event dead-lettered",
				slog.String("webhook_id", dl.WebhookID),
				slog.Int("attempts", dl.Attempts),
				slog.String("reason", dl.LastReason),
				slog.Int("status", dl.LastStatus),
				slog.String("error", dl.LastError))
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		reason := DeadLetterFailReason(err)
		d.metrics.deadLetterStoreFailed(d.trigger, reason)
		wait := d.sender.backoff(d.sender.retry.InitialBackoff, d.sender.retry.MaxBackoff, attempt, nil)
		now := d.clock.Now()
		prog.deadLetterFailed(dl, err, reason, now, now.Add(wait))
		if msg := err.Error(); msg != last {
			last = msg
			d.log.LogAttrs(ctx, slog.LevelError, "cannot store dead letter; the event holds the checkpoint until it is stored, retrying",
				slog.String("webhook_id", dl.WebhookID), slog.String("reason", reason), slog.Int("tries", attempt+1),
				slog.Duration("retry_in", wait), slog.String("error", msg))
		}
		if d.clock.Sleep(ctx, wait) != nil {
			return false
		}
	}
}
