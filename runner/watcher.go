package runner

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/bsonwalk"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Watch loop defaults (WatcherOptions zero values).
const (
	// DefaultCheckpointEvery is WatcherOptions.CheckpointEvery when zero.
	// Each save is a write to the state database (and an oplog entry every
	// change stream of the deployment reads past). A crash redelivers the
	// events after the last save: at most this many or CheckpointInterval's
	// worth, whichever is fewer, plus those in flight.
	DefaultCheckpointEvery = 1000
	// DefaultCheckpointInterval is WatcherOptions.CheckpointInterval when
	// zero.
	DefaultCheckpointInterval = time.Second
	// firstCheckpointInterval replaces a longer CheckpointInterval until the
	// first save after a stream opens. A process that restarts after a
	// crash first delivers the backlog its predecessor left; saving that
	// progress within a tenth of a second, instead of a second, keeps a
	// crash loop (each process killed before its first save) from
	// redelivering the same events again on every restart.
	firstCheckpointInterval = 100 * time.Millisecond
	// DefaultShutdownGrace is WatcherOptions.ShutdownGrace when zero.
	DefaultShutdownGrace = 10 * time.Second
	// DefaultInitialRetryBackoff is the first wait before reopening a
	// failed stream (WatcherOptions.InitialRetryBackoff when zero).
	DefaultInitialRetryBackoff = 500 * time.Millisecond
	// DefaultMaxRetryBackoff caps the waits before reopening a failed
	// stream (WatcherOptions.MaxRetryBackoff when zero).
	DefaultMaxRetryBackoff = 30 * time.Second
	// DefaultMaxAwait is WatcherOptions.MaxAwait when zero: how long one
	// getMore of an idle stream waits for a change.
	DefaultMaxAwait = 10 * time.Second
	// DefaultCheckpointTimeout bounds one checkpoint write.
	DefaultCheckpointTimeout = 10 * time.Second
	// closeTimeout bounds closing a change stream cursor.
	closeTimeout = 10 * time.Second
	// streamBatchSize is the batchSize of the change stream (its first
	// batch and every getMore). Without one the server fills each getMore
	// reply up to 16 MiB: over a backlog the driver then holds a 16 MiB
	// reply per read (the batched backpressure run's RSS rose from 23 to
	// 91 MB and was not flat), and the server builds the whole reply while
	// the dispatcher, whose held events are fewer, runs dry. 4000 events
	// (~2 MB of typical events; an event larger than that still comes
	// alone) keep the next read going while the dispatcher still holds
	// work; 1000 cost measurably more CPU per event (more, smaller reads
	// and a smaller heap collected more often).
	streamBatchSize = 4000
	// maxPendingTracked bounds the lag bookkeeping of received events not
	// yet checkpointed. The dispatcher admits at most Concurrency +
	// max(Concurrency, 64) events beyond the watermark, a batched one
	// batchedHeld, but an event leaves the bookkeeping only when a save
	// covers it: while saves fail, the bound is reached, and the oldest
	// forgotten event stays as the lag's floor (pendingQueue.dropped).
	maxPendingTracked = max(4*triggers.MaxConcurrency, 2*batchedHeld)
	// batchedHeld is how many events a batched trigger's dispatcher holds
	// (dispatcher.WithBatchedHeld): two replies. A batched dispatcher
	// holds only max_events times its batches in flight (1,800 for
	// max_events 100 and concurrency 16), fewer than one reply: the loop
	// then blocked in Submit in the middle of each reply and asked for the
	// next one only after the dispatcher had admitted the last event of
	// this one, so the server built each reply while the dispatcher ran
	// dry, and the dispatcher waited while the server built. With room for
	// two replies, one is admitted whole while the previous one is
	// delivered, and the server builds the next meanwhile.
	batchedHeld = 2 * streamBatchSize
	// checkpointCheckEvery is how many events of a reply the watch loop
	// reads between two checkpoint checks (also after a reply's last
	// event): a count-based save is signalled at most this many events
	// late.
	checkpointCheckEvery = 32
)

// CheckpointStore loads and saves a trigger's resume token; *store.Store
// implements it.
type CheckpointStore interface {
	// LoadCheckpoint returns the trigger's checkpoint; ok is false when it
	// has none.
	LoadCheckpoint(ctx context.Context, trigger string) (cp store.Checkpoint, ok bool, err error)
	// SaveCheckpoint creates or replaces the trigger's checkpoint.
	SaveCheckpoint(ctx context.Context, cp store.Checkpoint) error
}

// WatcherOptions tune a Watcher; zero values take the defaults.
type WatcherOptions struct {
	// Logger receives the loop's logs, each with trigger=NAME (default
	// slog.Default()).
	Logger *slog.Logger
	// Clock is the source of time and of the waits between retries
	// (default dispatcher.SystemClock).
	Clock dispatcher.Clock
	// CheckpointEvery saves a checkpoint after this many events (default
	// DefaultCheckpointEvery).
	CheckpointEvery int
	// CheckpointInterval saves a checkpoint at least this often while events
	// are delivered (default 1s). The saves do not wait for the stream, nor
	// the stream for the saves: a flusher goroutine does them, every
	// CheckpointInterval while events are pending even when the getMore
	// waits longer, and reading goes on while a save is slow or failing.
	// Until the first save of an event the stream submitted since it
	// opened, saves come at most 100ms apart.
	CheckpointInterval time.Duration
	// MaxAwait bounds each getMore's wait for new changes (the change
	// stream's maxAwaitTimeMS; default DefaultMaxAwait, never more than
	// IdleCheckpointInterval). An event ends the wait at once, so it costs
	// no latency; a long wait keeps an idle trigger from sending a getMore
	// every second (hundreds per second across hundreds of triggers).
	MaxAwait time.Duration
	// IdleCheckpointInterval is how often an idle-only checkpoint is saved:
	// one that only moves the position past changes the trigger did not
	// deliver (no event submitted since the last save). Default
	// triggers.DefaultCheckpointIdleInterval. Idle saves are rare so that
	// many triggers on one deployment do not feed each other: every save
	// is a write that moves every other stream's resume token.
	IdleCheckpointInterval time.Duration
	// Metrics records the loop's metrics (nil: none).
	Metrics *Metrics
	// ShutdownGrace is how long in-flight deliveries may take to finish
	// after ctx is canceled (default 10s).
	ShutdownGrace time.Duration
	// CheckpointTimeout bounds one checkpoint read or write (default 10s).
	CheckpointTimeout time.Duration
	// InitialRetryBackoff and MaxRetryBackoff bound the waits before
	// reopening a stream after a transient failure (default 500ms, 30s).
	InitialRetryBackoff, MaxRetryBackoff time.Duration
	// Deadline, when set, returns the instant after which the trigger may no
	// longer deliver (its cluster lease's local deadline; zero: already
	// past). The shutdown grace period never extends beyond it: a stop's
	// drain ends at the grace period's end or once the deadline has passed,
	// whichever comes first. It is read again as the drain goes, so a
	// deadline that renewals move on lets the drain go on.
	Deadline func() time.Time
	// StreamWait (nil: a clock of the watcher's own) marks the time the
	// loop waits for the change stream: for a getMore reply (a batched
	// trigger: for the reader going ahead of it), whether the server
	// waits for changes or takes long to return them.
	StreamWait *dispatcher.WaitClock
	// Dev: the watcher runs under `changehook dev` (see Options.Dev).
	Dev bool
}

// Watcher runs one trigger: it owns the trigger's change stream, submits
// every event to the trigger's dispatcher in stream order and checkpoints
// the resume token up to which every event was delivered or dead-lettered.
//
// Status may be called from any goroutine; Run must be called once.
type Watcher struct {
	t      *triggers.Trigger
	client *mongo.Client
	cps    CheckpointStore
	disp   *dispatcher.Dispatcher
	opts   WatcherOptions
	log    *slog.Logger
	clock  dispatcher.Clock
	ran    atomic.Bool

	// Owned by the Run goroutine.
	lastOp string
	// oneByOne: the stream failed on an event too large to return, and
	// is read one event per batch since, so that the events before it,
	// which the failed read abandoned, are delivered (see toolarge.go).
	oneByOne bool
	// splitStage: the stream opens with $changeStreamSplitLargeEvent
	// (see splitevent.go), set once a read failed on an event too large
	// to return, or a resume from a fragment's token needed the stage;
	// kept for the rest of Run. streamSplit: the open stream has it.
	splitStage, streamSplit bool
	// splitRefused says why the stage was turned off ("" if it was not:
	// the server refused it, or could not split an event): the stream is
	// then read as without it, and fails on the large event.
	splitRefused string
	// frags holds the fragments of the split event being read.
	frags EventAssembler

	// The checkpoint state, shared by the Run goroutine and the flusher
	// (flushLoop), which does every save while the stream is open, so that
	// the Run goroutine never waits for the state database. saveMu is held
	// for a whole save, so saves never overtake each other; cpMu guards the
	// fields below and is never held across a write, so a slow or failing
	// save (a stepdown, a majority write concern waiting for a lagging
	// secondary) does not hold back reading and submitting events.
	saveMu      sync.Mutex
	cpMu        sync.Mutex
	streamToken bson.Raw // newest token handed out by the stream: all events before it were submitted or filtered out
	savedToken  bson.Raw // the checkpoint as last saved or loaded
	lastSave    time.Time
	sinceSave   int
	openPushed  uint64 // pushed when the stream last opened
	openSaved   bool   // a save written since then followed a submitted event
	lastCluster bson.Timestamp
	pending     pendingQueue
	pushed      uint64 // sequence number of the newest pendingEvent
	// kick wakes the flusher after an event was submitted; due wakes it
	// (also from its wait between saves) when the Run goroutine finds a
	// save due.
	kick, due chan struct{}

	// tokens holds the pending events' token copies (Run goroutine).
	tokens tokenSlab
	// replyBufs holds a batched trigger's released read-ahead buffers
	// (see replyBuf); the garbage collector empties it when they stay
	// unused, so an idle trigger keeps none.
	replyBufs sync.Pool
	// received and lag are the trigger's series of the watch loop's
	// metrics, looked up once (no-ops without metrics).
	received metricCounter
	lag      metricGauge
	// reassembled counts the split events reassembled (splitevent.go).
	reassembled metricCounter

	// restarting is set when the watcher is stopped to be started again
	// at once (a control such as skip, resume --from or redeliver, or a
	// reload, holds the trigger), to what it is stopped for ("skip by
	// cli", "reload"): deliveries its shutdown cuts off are then part of
	// the restart, not an unfinished shutdown, and are logged with that
	// cause.
	restarting atomic.Pointer[string]
	// stopNow is set when the watcher is stopped for a pause, a disable,
	// or a control or reload that holds it (slot.stopsAtOnce), to what
	// for: its shutdown then stops the deliveries at once
	// (dispatcher.Stop) instead of letting them finish within the grace
	// period, so that a paused trigger sends nothing more than the
	// attempts already on the wire.
	stopNow atomic.Pointer[string]
	// unfinished is how many submitted events the last shutdown's grace
	// period left neither delivered nor dead-lettered (see Runner.Unfinished).
	unfinished atomic.Int64
	// dispClosed is set once shutdown closed the dispatcher: its circuit
	// no longer holds or probes anything (the next watcher's starts
	// closed), so Status shows none.
	dispClosed atomic.Bool

	mu     sync.Mutex
	status TriggerStatus
	// failedBefore is the checkpoint failure the unit's previous watcher
	// stopped with (nil: none), and failedBeforeAt the position it had
	// last saved or loaded: when this watcher loads that same position (no
	// save succeeded in between) and its own saves fail too, its
	// CheckpointFailure goes on from that one (see saveFailed). Guarded by
	// mu; dropped once a save succeeds or the loaded position differs.
	failedBefore   *CheckpointFailure
	failedBeforeAt bson.Raw
	// tooLarge: Run failed on a change event too large to read, which a
	// skip can dead-letter (see toolarge.go); tooLargeToken is the resume
	// token the server's error names (nil: none).
	tooLarge      bool
	tooLargeToken bson.Raw
	// lost is the position loss Run's last stream failure was classified
	// as (positionKept: none); guarded by mu.
	lost positionLoss

	// startNow is, for a trigger with start_at: now, the watched
	// deployment's operation time when the first watcher of the unit
	// started (nil: not read yet, or it could not be): a unit without a
	// checkpoint starts there rather than at the time its stream opens,
	// which a state database slow to answer the checkpoint read may delay
	// by minutes. The runner shares it between the unit's watchers.
	startNow *atomic.Pointer[bson.Timestamp]
}

// NewWatcher returns a Watcher for t that reads with client, checkpoints to
// cps and delivers through disp. Run takes ownership of disp: it closes it
// (with the shutdown grace period) before returning.
func NewWatcher(t *triggers.Trigger, client *mongo.Client, cps CheckpointStore, disp *dispatcher.Dispatcher, opts WatcherOptions) *Watcher {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = dispatcher.SystemClock{}
	}
	if opts.StreamWait == nil {
		opts.StreamWait = new(dispatcher.WaitClock)
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = DefaultCheckpointEvery
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.IdleCheckpointInterval <= 0 {
		opts.IdleCheckpointInterval = triggers.DefaultCheckpointIdleInterval
	}
	if opts.MaxAwait <= 0 {
		opts.MaxAwait = DefaultMaxAwait
	}
	opts.MaxAwait = min(opts.MaxAwait, opts.IdleCheckpointInterval)
	if opts.CheckpointTimeout <= 0 {
		opts.CheckpointTimeout = DefaultCheckpointTimeout
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = DefaultShutdownGrace
	}
	if opts.InitialRetryBackoff <= 0 {
		opts.InitialRetryBackoff = DefaultInitialRetryBackoff
	}
	if opts.MaxRetryBackoff < opts.InitialRetryBackoff {
		opts.MaxRetryBackoff = max(DefaultMaxRetryBackoff, opts.InitialRetryBackoff)
	}
	w := &Watcher{
		t:      t,
		client: client,
		cps:    cps,
		disp:   disp,
		opts:   opts,
		log:    watcherLogger(opts.Logger, t),
		clock:  opts.Clock,
		kick:   make(chan struct{}, 1),
		due:    make(chan struct{}, 1),

		startNow: new(atomic.Pointer[bson.Timestamp]),
	}
	w.status = TriggerStatus{Name: t.Name, Namespace: t.Namespace(), State: StateStarting, Since: w.clock.Now()}
	w.received, w.lag, w.reassembled = opts.Metrics.series(t)
	return w
}

// tokenSlab copies resume tokens into shared chunks: one allocation per
// chunk instead of one per event. A copy is never written again, so it may
// be kept as long as needed (it keeps its chunk alive).
type tokenSlab struct{ buf []byte }

// tokenSlabChunk is the size of a tokenSlab chunk; larger tokens are
// copied alone.
const tokenSlabChunk = 16 << 10

// clone returns a copy of b.
func (s *tokenSlab) clone(b []byte) bson.Raw {
	if len(b) > tokenSlabChunk/16 {
		return bytes.Clone(b)
	}
	if cap(s.buf)-len(s.buf) < len(b) {
		s.buf = make([]byte, 0, tokenSlabChunk)
	}
	start := len(s.buf)
	s.buf = append(s.buf, b...)
	return bson.Raw(s.buf[start:len(s.buf):len(s.buf)])
}

// watcherLogger is base with trigger=NAME, and partition=i for a partition.
func watcherLogger(base *slog.Logger, t *triggers.Trigger) *slog.Logger {
	if i, ok := t.PartitionIndex(); ok {
		return base.With("trigger", t.Name, "partition", i)
	}
	return base.With("trigger", t.Name)
}

// eventsReceived is the number of events the watcher read (its status's
// EventsReceived).
func (w *Watcher) eventsReceived() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status.EventsReceived
}

// Status returns a snapshot of the trigger's state and counters, with its
// head-of-line delivery. A running trigger whose head-of-line delivery is
// failing shows StateRetrying (since its dispatcher's first failure), or
// StateFailed when the failure is permanent and the trigger has no dead
// letters, so it cannot get past the event. Its dispatcher's circuit
// (TriggerStatus.Circuit) is shown until Run closed the dispatcher, not
// after: a stopped watcher's circuit probes nothing, whatever state it
// was left in, and the next watcher's starts closed.
func (w *Watcher) Status() TriggerStatus {
	w.mu.Lock()
	st := w.status
	w.mu.Unlock()
	st = w.withHeadOfLine(st)
	if !w.dispClosed.Load() {
		st = withCircuit(st, w.disp)
	}
	return withCheckpointFailure(st, w.t.Key())
}

// withHeadOfLine adds the head-of-line delivery to st (see Status).
func (w *Watcher) withHeadOfLine(st TriggerStatus) TriggerStatus {
	if st.State == StateStopped {
		return st // what a stopped dispatcher still holds is redelivered at the next start
	}
	h, ok := w.disp.HeadOfLine()
	if !ok {
		return st
	}
	now := w.clock.Now()
	st.HeadOfLine = &HeadOfLine{WebhookID: h.WebhookID, EventAge: max(0, now.Sub(h.Submitted)), Attempts: h.Attempts,
		LastStatus: h.LastStatus, LastReason: h.LastReason, LastError: h.LastError, NextAttemptAt: h.NextAttemptAt,
		Permanent: h.Permanent, WaitsForProbe: h.WaitsForProbe}
	if h.PartWebhookID != "" {
		st.HeadOfLine.Part = &HeadOfLinePart{WebhookID: h.PartWebhookID, FirstEvent: h.PartFrom + 1, Events: h.PartEvents}
	}
	if f := h.DeadLetter; f != nil {
		st.HeadOfLine.DeadLetter = &DeadLetterFailure{WebhookID: f.WebhookID, Error: f.Error, Reason: f.Reason, Since: f.Since,
			Tries: f.Tries, NextTryAt: f.NextTryAt}
		if st.State == StateRunning {
			return w.deadLetterStuck(st, h, *f)
		}
	}
	if st.State != StateRunning || h.LastReason == "" || h.NextAttemptAt.IsZero() {
		return st
	}
	st.LastError = "delivery " + h.WebhookID + ": " + h.LastError
	st.LastErrorAt = h.NextAttemptAt // approximately: the attempt ended just before the wait
	if since := w.disp.FailingSince(); !since.IsZero() {
		st.Since = since
	}
	if h.Permanent && !w.t.DeadLetter {
		st.State = StateFailed
		st.WayOut = rejectedWayOut(h, w.t.Key())
		return st
	}
	st.State, st.Retrying = StateRetrying, true
	return st
}

// rejectedWayOut is the way out of a unit (key) without dead letters whose
// head of line h the endpoint rejects permanently: an event alone, a
// sealed batch (its requests carry the batch's id, and a skip naming that
// id dead-letters each of its events), or the part of a batch being sent
// after the endpoint refused it as too large.
func rejectedWayOut(h dispatcher.HeadOfLine, key string) string {
	what, them := "event "+h.WebhookID, "it"
	if h.WebhookID != h.EventID {
		// A batch: the skip names the batch and dead-letters the events
		// of the refused request.
		what, them = fmt.Sprintf("batch %s (%d events)", h.WebhookID, h.Events), "each of its events"
		if h.PartEvents > 0 && h.PartEvents < h.Events {
			part := fmt.Sprintf("events %d to %d", h.PartFrom+1, h.PartFrom+h.PartEvents)
			if h.PartEvents == 1 {
				part = fmt.Sprintf("event %d", h.PartFrom+1)
			}
			before := ""
			switch h.PartFrom {
			case 0:
			case 1:
				before = "; event 1 was delivered"
			default:
				before = fmt.Sprintf("; events 1 to %d were delivered", h.PartFrom)
			}
			what = fmt.Sprintf("%s of batch %s (%d events, sent in parts after the endpoint refused it as too large%s)",
				part, h.WebhookID, h.Events, before)
			them = "each event of that part"
			if h.PartEvents == 1 {
				them = "that event"
			}
		}
	}
	return "the endpoint rejects " + what + " permanently" + statusText(h.LastStatus) +
		"; without dead letters it is retried and every later event waits: fix the endpoint (or the trigger, then reload), " +
		"or run `changehook skip " + key + " --webhook-id " + h.WebhookID + "` to dead-letter " + them
}

// deadLetterStuck is st for a running trigger whose head-of-line event h
// was given up on but whose dead letter f cannot be stored: retrying,
// since its deliveries or the tries to store it started failing, whichever
// was first, as /readyz counts a retrying trigger; the last error is the
// store's, and the way out says what gets the trigger past the event.
func (w *Watcher) deadLetterStuck(st TriggerStatus, h dispatcher.HeadOfLine, f dispatcher.DeadLetterFailure) TriggerStatus {
	st.State, st.Retrying = StateRetrying, true
	st.Since = f.Since
	if since := w.disp.FailingSince(); !since.IsZero() && since.Before(st.Since) {
		st.Since = since
	}
	st.LastError, st.LastErrorAt = "store dead letter "+f.WebhookID+": "+f.Error, f.At
	fix := "Make the state database take the write (reachable, changehook's user with readWrite on it, no validator refusing it, space); " +
		"the trigger then continues by itself. To give the event up without a dead letter instead, run "
	switch f.Reason {
	case dispatcher.DeadLetterFailLeaseLost:
		fix = "This member lost the trigger's lease: it stops, and the member that takes the lease delivers the event. If it does not stop, run "
	case dispatcher.DeadLetterFailTooLarge:
		fix = "It does not fit in a document even with only the event's identity kept, so it never will: give the event up without a dead letter with "
	}
	st.WayOut = fmt.Sprintf("event %s was given up on%s, but its dead letter cannot be stored in the state database (%s; %s); "+
		"the trigger holds the event, and with it its checkpoint, and keeps trying, so nothing is lost. %s%s",
		f.WebhookID, statusText(h.LastStatus), f.Reason, failedTries(f.Tries), fix, resumeAfter(w.t.Key(), f.EventTime))
	return st
}

// failedTries is "1 failed try" or "n failed tries".
func failedTries(n int) string {
	if n == 1 {
		return "1 failed try"
	}
	return fmt.Sprintf("%d failed tries", n)
}

// resumeAfter is the command that moves the unit key past an event of
// cluster time at (zero: unknown) without a dead letter, and what else it
// skips.
func resumeAfter(key string, at time.Time) string {
	if at.IsZero() {
		return "`changehook resume " + key + " --from TIME` with a time after the event (it also skips the changes up to then)"
	}
	return "`changehook resume " + key + " --from " + at.Add(time.Second).UTC().Format(time.RFC3339) +
		"` (the second after the event; it also skips the changes up to then)"
}

// statusText is " (HTTP n)", or "" for no response.
func statusText(code int) string {
	if code == 0 {
		return ""
	}
	return fmt.Sprintf(" (HTTP %d)", code)
}

// TriggerError is the permanent failure that ends a Watcher's Run.
type TriggerError struct {
	// Trigger is the trigger name.
	Trigger string
	// Reason is the failure as shown in the trigger's status.
	Reason string
	// Err is the underlying error (nil for an invalidate).
	Err error
}

// Error returns "trigger NAME failed: REASON".
func (e *TriggerError) Error() string { return "trigger " + e.Trigger + " failed: " + e.Reason }

// Unwrap returns the underlying error.
func (e *TriggerError) Unwrap() error { return e.Err }

// errInvalidated reports an invalidate event (or a server-closed stream).
var errInvalidated = errors.New("change stream invalidated")

// Run watches the trigger until ctx is canceled, then stops reading, lets
// in-flight deliveries finish within the shutdown grace period, saves the
// final checkpoint and returns nil.
//
// Transient failures (network trouble, elections, failed checkpoint reads)
// are retried with capped exponential backoff (full jitter,
// dispatcher.FullJitterBackoff) while the status shows the
// trigger failed and retrying. Permanent ones — history lost (286),
// invalid resume token (260), an invalidate (collection dropped or renamed,
// database dropped), a pipeline the server rejects, a server error ending
// the open stream that is neither resumable nor transient — mark the trigger
// failed; Run then waits for the deliveries already submitted, checkpoints
// them and returns a *TriggerError.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.ran.CompareAndSwap(false, true) {
		return fmt.Errorf("run trigger %s: Run called twice", w.t.Name)
	}
	defer w.shutdown(ctx)

	if w.t.StartAt.Now {
		w.readStartNow(ctx)
	}
	cp, found, ok := w.loadCheckpoint(ctx)
	if !ok {
		return nil // ctx canceled
	}
	w.mu.Lock()
	if w.failedBefore != nil && !bytes.Equal(cp.Token, w.failedBeforeAt) {
		w.failedBefore = nil // the checkpoint moved since (another member, a control): saves succeeded
	}
	w.mu.Unlock()
	if found {
		w.savedToken = bytes.Clone(cp.Token)
		w.update(func(s *TriggerStatus) { s.CheckpointTime = cp.UpdatedAt })
		w.log.Info("resuming from checkpoint", "checkpoint_saved_at", cp.UpdatedAt)
		w.warnStaleLayout(ctx)
	} else if reason, wayOut, ok := w.otherLayout(ctx); !ok {
		return nil // ctx canceled
	} else if reason != "" {
		w.setFailed(reason, wayOut, false)
		w.log.Error("trigger failed", "reason", reason)
		return &TriggerError{Trigger: w.t.Name, Reason: reason}
	} else if !w.t.StartAt.Now && !w.waitForStartAt(ctx) {
		return nil // ctx canceled
	}
	attempt := 0
	for {
		w.cpMu.Lock()
		from := w.streamToken
		if from == nil {
			from = w.savedToken
		}
		w.cpMu.Unlock()
		opened, err := w.stream(ctx, from)
		if ctx.Err() != nil {
			return nil
		}
		if opened {
			attempt = 0
		}
		if w.splitRetry(err, opened) {
			// No failure to show or wait for: the stream reopens at once,
			// with $changeStreamSplitLargeEvent or, refused, without.
			continue
		}
		reason, wayOut, retry, lost := w.classifyLoss(err, opened)
		if _, _, large := eventTooLarge(err); large && !w.oneByOne {
			// The failed read abandoned the events before the large one
			// in its batch: read them one per batch, then fail on it.
			w.oneByOne, retry = true, true
		}
		if _, _, large := eventTooLarge(err); large && w.splitRefused != "" {
			reason += "; " + w.splitRefused
		}
		if token, _, large := eventTooLarge(err); large && !retry {
			// Before the status shows the failure: a skip that sees it
			// must see what it failed on.
			w.mu.Lock()
			w.tooLarge, w.tooLargeToken = true, token
			w.mu.Unlock()
		}
		w.mu.Lock()
		w.lost = lost // before the status shows the failure, as tooLarge
		w.mu.Unlock()
		w.setFailed(reason, wayOut, retry)
		if !retry {
			w.log.Error("trigger failed", "reason", reason)
			w.drain(ctx)
			return &TriggerError{Trigger: w.t.Name, Reason: reason, Err: err}
		}
		delay := dispatcher.FullJitterBackoff(attempt, w.opts.InitialRetryBackoff, w.opts.MaxRetryBackoff)
		attempt++
		w.log.Warn("change stream failed; reopening", "reason", reason, "retry_in", delay)
		if w.clock.Sleep(ctx, delay) != nil {
			return nil
		}
	}
}

// readStartNow records, unless a watcher of the unit did already, the
// watched deployment's current operation time as the unit's "now" of
// start_at: the position a unit without a checkpoint starts from, however
// long the checkpoint read then takes. The change at that time itself was
// before the start, so "now" is just after it. The time is just after the
// operation time hello reports or, when the server reports none (MongoDB does not
// always), the position of a change stream opened for it (streamNow). When
// neither can be read, nothing is recorded, a warning says so, and the
// stream starts at the time it opens, after the checkpoint read.
func (w *Watcher) readStartNow(ctx context.Context) {
	if w.startNow.Load() != nil {
		return
	}
	tctx, cancel := context.WithTimeout(ctx, w.opts.CheckpointTimeout)
	defer cancel()
	var hello struct {
		OperationTime bson.Timestamp `bson:"operationTime"`
	}
	err := w.client.Database("admin").RunCommand(tctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello)
	at := justAfter(hello.OperationTime)
	if err != nil || hello.OperationTime.T == 0 {
		w.log.Debug("the server reports no operation time for start_at: now; reading it from a change stream", "error", err)
		var serr error
		if at, serr = w.streamNow(tctx); serr != nil {
			if ctx.Err() == nil {
				w.log.Warn("cannot read the watched deployment's time for start_at: now; the trigger starts when its stream opens, "+
					"after its checkpoint is read, so changes written while the state database is slow to answer are not delivered",
					"hello_error", err, "stream_error", serr)
			}
			return
		}
	}
	w.startNow.CompareAndSwap(nil, &at)
}

// justAfter returns the first cluster time after ts.
func justAfter(ts bson.Timestamp) bson.Timestamp {
	if ts.I == math.MaxUint32 {
		return bson.Timestamp{T: ts.T + 1}
	}
	return bson.Timestamp{T: ts.T, I: ts.I + 1}
}

// streamNow returns the watched deployment's time as the trigger's change
// stream sees it: the cluster time of the position a stream opened now
// starts at (openAt), already after the changes made before it (a stream
// started at that time reads from the first change after them).
func (w *Watcher) streamNow(ctx context.Context) (bson.Timestamp, error) {
	token, err := openAt(ctx, w.client, w.t, time.Time{})
	if err != nil {
		return bson.Timestamp{}, fmt.Errorf("open change stream for the time: %w", err)
	}
	at, ok := tokenClusterTime(token)
	if !ok {
		return bson.Timestamp{}, errors.New("open change stream for the time: its resume token has no cluster time")
	}
	return at, nil
}

// startAtRecheck bounds how long waitForStartAt sleeps before it reads the
// server's time again.
const startAtRecheck = time.Minute

// waitForStartAt waits, for a trigger without a checkpoint whose start_at
// is after the server's current time (ServerTime: this machine's clock may
// differ from the one that stamps the oplog), until the server's clock
// reaches it, showing StateWaiting with StartsAt meanwhile. Nothing is read
// and no checkpoint is written before then: opening the stream at a future
// time would pin a checkpoint there, which a start_at changed later could
// no longer move. A failure to read the server's time is retried with the
// stream-retry backoff (StateRetrying). It returns false when ctx ended
// first.
func (w *Watcher) waitForStartAt(ctx context.Context) bool {
	at := w.t.StartAt.Time
	logged := false
	for attempt := 0; ; {
		tctx, cancel := context.WithTimeout(ctx, w.opts.CheckpointTimeout)
		now, err := ServerTime(tctx, w.client)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		var delay time.Duration
		switch {
		case err != nil:
			delay = dispatcher.FullJitterBackoff(attempt, w.opts.InitialRetryBackoff, w.opts.MaxRetryBackoff)
			attempt++
			w.setFailed(fmt.Sprintf("start_at %s: %v", at.UTC().Format(time.RFC3339), err), "", true)
			w.log.Warn("cannot read the server's time to compare start_at with; retrying", "error", err, "retry_in", delay)
		case !w.t.StartAt.After(now):
			return true
		default:
			attempt = 0
			delay = min(at.Sub(now), startAtRecheck)
			w.setWaiting(at)
			if !logged {
				w.log.Info("waiting for start_at: nothing is read until then", "start_at", at.UTC().Format(time.RFC3339),
					"server_time", now.Format(time.RFC3339))
				logged = true
			}
		}
		if w.clock.Sleep(ctx, delay) != nil {
			return false
		}
	}
}

// setWaiting shows StateWaiting until at (see waitForStartAt).
func (w *Watcher) setWaiting(at time.Time) {
	w.opts.Metrics.setUp(w.t, false)
	now := w.clock.Now()
	w.update(func(s *TriggerStatus) {
		if s.State != StateWaiting {
			s.Since = now
		}
		s.State, s.StreamOpen, s.Retrying, s.WayOut, s.StartsAt = StateWaiting, false, false, "", at.UTC()
	})
}

// loadCheckpoint reads the checkpoint, retrying transient errors; ok is
// false when ctx ended first.
func (w *Watcher) loadCheckpoint(ctx context.Context) (cp store.Checkpoint, found, ok bool) {
	for attempt := 0; ; attempt++ {
		loadCtx, cancel := context.WithTimeout(ctx, w.opts.CheckpointTimeout)
		cp, found, err := w.cps.LoadCheckpoint(loadCtx, w.t.Key())
		cancel()
		if err == nil {
			return cp, found, true
		}
		if ctx.Err() != nil {
			return cp, false, false
		}
		delay := dispatcher.FullJitterBackoff(attempt, w.opts.InitialRetryBackoff, w.opts.MaxRetryBackoff)
		wayOut := ""
		if errors.Is(err, store.ErrLeaseLost) {
			wayOut = claimRefusedWayOut(w.t.Key())
		}
		w.setFailed(fmt.Sprintf("load checkpoint: %v", err), wayOut, true)
		w.log.Warn("cannot load checkpoint; retrying", "error", err, "retry_in", delay)
		if w.clock.Sleep(ctx, delay) != nil {
			return cp, false, false
		}
	}
}

// TriggerCheckpointLister is implemented by checkpoint stores that can list
// a trigger's checkpoints under every partitioning (*store.Store).
type TriggerCheckpointLister interface {
	// TriggerCheckpoints returns the checkpoints under the trigger's name
	// and under any of its partition keys.
	TriggerCheckpoints(ctx context.Context, trigger string) ([]store.Checkpoint, error)
}

// otherLayout returns why the trigger must not start when it has no
// checkpoint under its key but has some under another partitioning (its
// partitions were changed in the configuration without `checkpoints
// repartition`, or a repartition stopped half-way): starting at start_at
// would skip every change since those checkpoints. "" when there are none,
// or the store cannot list them. A failed listing is retried with the
// stream-retry backoff (StateRetrying), as a failed checkpoint read is:
// starting without knowing would skip those changes for good, once the
// partition saved a checkpoint of its own. ok is false when ctx ended
// first.
func (w *Watcher) otherLayout(ctx context.Context) (reason, wayOut string, ok bool) {
	l, lister := w.cps.(TriggerCheckpointLister)
	if !lister {
		return "", "", true
	}
	for attempt := 0; ; attempt++ {
		listCtx, cancel := context.WithTimeout(ctx, w.opts.CheckpointTimeout)
		cps, err := l.TriggerCheckpoints(listCtx, w.t.Name)
		cancel()
		if err == nil {
			keys := otherPartitioning(w.t, cps)
			if len(keys) == 0 {
				return "", "", true
			}
			reason = fmt.Sprintf("no checkpoint under %s, but checkpoints of another partitioning exist (%s): partitions changed in the configuration; "+
				"starting at start_at would skip the changes since them", w.t.Key(), strings.Join(keys, ", "))
			return reason, repartitionWayOut(w.t, keys, w.opts.Dev), true
		}
		if ctx.Err() != nil {
			return "", "", false
		}
		delay := dispatcher.FullJitterBackoff(attempt, w.opts.InitialRetryBackoff, w.opts.MaxRetryBackoff)
		w.setFailed(fmt.Sprintf("list the checkpoints of %s under every partitioning: %v", w.t.Name, err), "", true)
		w.log.Warn("no checkpoint, and cannot list the trigger's checkpoints under other partitionings; retrying before it starts", "error", err, "retry_in", delay)
		if w.clock.Sleep(ctx, delay) != nil {
			return "", "", false
		}
	}
}

// warnStaleLayout logs a warning when checkpoints of another partitioning
// of the trigger remain beside the one the unit resumes from: left by a
// `checkpoints repartition` that did not finish (it removes them last), or
// by a partitions setting changed back. They are not read, but a change
// back to that number of partitions would resume from them, far behind.
// A failed listing only leaves the warning out.
func (w *Watcher) warnStaleLayout(ctx context.Context) {
	l, ok := w.cps.(TriggerCheckpointLister)
	if !ok {
		return
	}
	listCtx, cancel := context.WithTimeout(ctx, w.opts.CheckpointTimeout)
	defer cancel()
	cps, err := l.TriggerCheckpoints(listCtx, w.t.Name)
	if err != nil {
		return
	}
	if keys := otherPartitioning(w.t, cps); len(keys) > 0 {
		wayOut := fmt.Sprintf("stop every changehook that has the trigger in its configuration (this one included), run `changehook checkpoints repartition --trigger %s --partitions %d` again to remove them, then start them again",
			w.t.Name, max(1, w.t.Partitions))
		if w.opts.Dev {
			// dev refuses a repartition while it runs, and its data goes
			// when it stops: the leftovers only matter for a change back.
			wayOut = "none needed under dev: they go with dev's data; a change back to that number of partitions would resume from them"
		}
		w.log.Warn("checkpoints of another partitioning remain beside this one's (a `checkpoints repartition` that did not finish, "+
			"or an earlier partitions setting): they are not read now, but a change back to that number of partitions would resume from them",
			"checkpoints", keys, "way_out", wayOut)
	}
}

// otherPartitioning returns the keys of cps, checkpoints of t's trigger
// under every partitioning, that belong to another partitioning than t's.
// The other partitions of t's own partitioning start on their own (each
// pins start_at); only another partitioning counts.
func otherPartitioning(t *triggers.Trigger, cps []store.Checkpoint) []string {
	var keys []string
	for _, cp := range cps {
		if _, _, n, ok := triggers.ParsePartitionKey(cp.Trigger); ok && n == max(1, t.Partitions) || cp.Trigger == t.Name && t.Partitions <= 1 {
			continue
		}
		keys = append(keys, cp.Trigger)
	}
	return keys
}

// repartitionWayOut is the way out of t's units that refuse to start
// because only another partitioning's checkpoints exist (otherLayout;
// others are their keys). Under dev (see Options.Dev), where `checkpoints
// repartition` is refused while it runs, it is resuming from now or setting
// partitions back to the old checkpoints' number.
func repartitionWayOut(t *triggers.Trigger, others []string, dev bool) string {
	if dev {
		return fmt.Sprintf("`changehook checkpoints repartition` is refused while this dev runs the trigger: run `changehook resume %s --from now` "+
			"(the new partitions start now; the changes since the old checkpoints are not delivered), "+
			"or set partitions back to %d and reload",
			t.Name, formerPartitions(others))
	}
	return fmt.Sprintf("stop every changehook that has the trigger in its configuration (this one included: it holds the leases of the partitions that failed), "+
		"run `changehook checkpoints repartition --trigger %s --partitions %d` (every new partition then starts from the oldest old checkpoint), then start them again",
		t.Name, max(1, t.Partitions))
}

// formerPartitions returns the number of partitions the first of keys,
// checkpoint keys of another partitioning, was saved under (1 for the
// trigger's own name).
func formerPartitions(keys []string) int {
	for _, k := range keys {
		if _, _, n, ok := triggers.ParsePartitionKey(k); ok {
			return n
		}
	}
	return 1
}

// stream opens the change stream after from (or at start_at) and reads it
// until it fails, is invalidated or ctx ends. opened reports whether the
// stream was opened.
func (w *Watcher) stream(ctx context.Context, from bson.Raw) (opened bool, err error) {
	batch := int32(streamBatchSize)
	if w.oneByOne {
		batch = 1
	}
	opts := w.t.ChangeStreamOptions().SetMaxAwaitTime(w.opts.MaxAwait).SetBatchSize(batch)
	pinFirst := from == nil && w.t.StartAt.Now
	if pinFirst {
		// start_at: now without a position to resume from opens with an
		// empty first batch: its post-batch resume token is then the start
		// position itself, which pinStart saves before any event is read.
		// With a full first batch, the changes made since "now" (read
		// before the checkpoint) would come in it, the stream would have
		// no position of its own, and until one of them was delivered
		// nothing would be saved: a restart would start at a later "now"
		// and skip them. A start_at time needs no pin (a restart starts
		// there again) and must not get one: an empty first batch reads
		// no oplog, so a time the oplog no longer reaches would be saved
		// as the checkpoint before the first read fails with history
		// lost, and a corrected start_at would then be ignored.
		opts.SetBatchSize(0)
	}
	switch {
	case from != nil:
		opts.SetResumeAfter(from)
	case !w.t.StartAt.Now:
		ts, err := triggers.OperationTime(w.t.StartAt.Time)
		if err != nil {
			return false, fmt.Errorf("open change stream for trigger %s at start_at: %w", w.t.Name, err)
		}
		opts.SetStartAtOperationTime(&ts)
	default:
		if at := w.startNow.Load(); at != nil {
			opts.SetStartAtOperationTime(at)
		}
	}
	w.frags.reset()
	w.streamSplit = w.splitStage
	var cs *mongo.ChangeStream
	if w.streamSplit {
		if cs, err = w.t.WatchWith(ctx, w.client, opts, SplitLargeEventsStage()); err != nil {
			err = fmt.Errorf("open change stream for trigger %s with %s: %w", w.t.Name, splitStageName, err)
		}
	} else {
		cs, err = w.t.Watch(ctx, w.client, opts)
	}
	if err != nil {
		return false, err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		_ = cs.Close(closeCtx) // the stream is over either way; the server reaps the cursor
	}()
	if rt := cs.ResumeToken(); rt != nil && cs.RemainingBatchLength() == 0 {
		w.setStreamToken(rt)
	}
	if pinFirst {
		cs.SetBatchSize(batch) // every getMore reads full batches
	}
	w.setRunning()
	w.log.Info("change stream open", "namespace", w.t.Namespace(), "resumed", from != nil, "split_large_events", w.streamSplit)
	w.cpMu.Lock()
	w.openPushed, w.openSaved = w.pushed, false
	w.cpMu.Unlock()
	fctx, stopFlusher := context.WithCancel(ctx)
	flusherDone := make(chan struct{})
	go func() {
		defer close(flusherDone)
		w.flushLoop(fctx)
	}()
	// The flusher stops before the stream is closed and before Run's
	// shutdown or drain: after Close abandons events, only the watermark
	// may be saved, and the flusher would save the stream's token.
	defer func() {
		stopFlusher()
		<-flusherDone
	}()
	select {
	case w.kick <- struct{}{}: // events still pending from a previous stream
	default:
	}
	w.cpMu.Lock()
	unsaved := w.savedToken == nil
	w.cpMu.Unlock()
	if unsaved && !w.pinStart(ctx) {
		return true, nil // ctx ended
	}
	if w.t.Batch != nil {
		return true, w.readReplies(ctx, cs)
	}
	return true, w.readEvents(ctx, cs)
}

// pinStart saves the stream's starting position (start_at's "now" or
// time) before any event is read, so that a restart does not move the
// start forward: were events read first and the save failed, a process
// that died before a later save would start again from a later "now",
// and the events in between that it had not delivered would be skipped. A
// failed save is retried with the stream-retry backoff until it is written
// or ctx ends (false); the status shows the save's error meanwhile. There
// is nothing to pin when the stream has no position yet, or when events
// were submitted already (an earlier stream read them, and the regular
// checkpoints cover them).
func (w *Watcher) pinStart(ctx context.Context) bool {
	for attempt := 0; ; attempt++ {
		w.checkpointNow(ctx)
		w.cpMu.Lock()
		done := w.savedToken != nil || w.streamToken == nil || w.pushed > 0
		w.cpMu.Unlock()
		if done {
			return true
		}
		if w.clock.Sleep(ctx, dispatcher.FullJitterBackoff(attempt, w.opts.InitialRetryBackoff, w.opts.MaxRetryBackoff)) != nil {
			return false
		}
	}
}

// readEvents reads cs and submits its events until it fails, is
// invalidated or ctx ends.
func (w *Watcher) readEvents(ctx context.Context, cs *mongo.ChangeStream) error {
	// received is when the reply holding the current event arrived: the
	// events of one reply were received together, and reading the clock
	// once per reply instead of thrice per event is measurably cheaper.
	// The checkpoint check reads the clock afresh after every
	// checkpointCheckEvery events, after a reply's last event and after an
	// empty read, and renews received (a reply whose submission waited
	// for the dispatcher keeps an old time for at most that many events).
	var received time.Time
	remaining, sinceCheck := 0, 0
	for {
		positioned, got := false, false
		if remaining == 0 {
			// This TryNext sends a getMore (the reply is used up).
			w.opts.StreamWait.Begin(w.clock.Now())
		}
		next := cs.TryNext(ctx)
		if remaining == 0 {
			w.opts.StreamWait.End(w.clock.Now())
		}
		if next {
			got = true
			// Within a reply the remaining count falls by one per event;
			// the first event of the next reply (read only once the
			// last one is exhausted) leaves at least as many.
			r := cs.RemainingBatchLength()
			if r >= remaining || received.IsZero() {
				received = w.clock.Now()
			}
			remaining = r
			raw, owned, held, err := w.reassemble(cs.Current)
			if err != nil {
				return err
			}
			if held {
				// A fragment: the stream's position stays before its
				// event until the whole event is submitted.
				positioned = true
			} else {
				invalidated, pos, err := w.handle(ctx, raw, cs.ResumeToken(), received, nil, owned, remaining > 0)
				if err != nil {
					return err
				}
				if invalidated {
					return errInvalidated
				}
				positioned = pos
			}
		} else {
			if err := cs.Err(); err != nil {
				return err
			}
			if cs.ID() == 0 {
				return errInvalidated
			}
		}
		if rt := cs.ResumeToken(); rt != nil && !positioned && !w.frags.holding() {
			w.setStreamToken(rt)
		}
		if sinceCheck++; !got || remaining == 0 || sinceCheck >= checkpointCheckEvery {
			sinceCheck = 0
			received = w.clock.Now()
			w.checkpointIfDue(received)
		}
	}
}

// readReplies is readEvents for a batched trigger, with a reader
// goroutine reading ahead: a batched dispatcher takes a reply's events
// faster than the server builds the next reply, so the next getMore goes
// out while this loop submits the previous reply.
func (w *Watcher) readReplies(ctx context.Context, cs *mongo.ChangeStream) error {
	// A reader goroutine reads the next reply while this loop submits the
	// previous one (the driver has no prefetch); it stops, and is waited
	// for, before the stream is closed. Its replies are copies, so the
	// read-ahead events are not part of the stream's position until they
	// are submitted: a reopen after a failure reads them again.
	rctx, stopReader := context.WithCancel(ctx)
	replies := make(chan *readReply, readAheadReplies)
	free := make(chan *readReply, readAheadReplies+2)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		readAhead(rctx, driverStream{cs}, w.clock.Now, replies, free, &w.replyBufs)
	}()
	defer func() {
		stopReader()
		<-readerDone
	}()
	sinceCheck := 0
	for {
		var r *readReply
		select {
		case r = <-replies:
		default:
			// Nothing read ahead: the loop waits for the stream.
			w.opts.StreamWait.Begin(w.clock.Now())
			select {
			case r = <-replies:
			case <-ctx.Done():
			}
			w.opts.StreamWait.End(w.clock.Now())
			if r == nil && ctx.Err() != nil {
				return ctx.Err()
			}
		}
		if r == nil {
			return ctx.Err() // the reader stopped: ctx ended
		}
		// The events of one reply were received together: one clock
		// read for all (by the reader, as it read them), renewed at
		// every checkpoint check (every checkpointCheckEvery events and
		// after each reply), so a reply whose submission waited for the
		// dispatcher keeps an old time for at most that many events.
		received := r.at
		for i, e := range r.events {
			raw, owned, held, err := w.reassemble(e.raw)
			if err != nil {
				r.done()
				return err
			}
			if held {
				continue // a fragment: the position stays before its event
			}
			rb := r.rb
			if owned {
				rb = nil // the reassembled event is not in the reply's buffer
			}
			invalidated, positioned, err := w.handle(ctx, raw, e.after, received, rb, owned, i < len(r.events)-1)
			if err != nil {
				r.done()
				return err
			}
			if invalidated {
				r.done()
				return errInvalidated
			}
			if !positioned {
				// The reply's buffer is reused once its events are
				// delivered: the position is a copy.
				w.setStreamToken(e.after)
			}
			if sinceCheck++; sinceCheck >= checkpointCheckEvery {
				sinceCheck = 0
				received = w.clock.Now()
				w.checkpointIfDue(received)
			}
		}
		r.done()
		if r.err != nil {
			return r.err
		}
		if r.closed {
			return errInvalidated
		}
		if r.token != nil && !w.frags.holding() {
			w.setStreamTokenOwned(r.token) // the reader's own copy
		}
		sinceCheck = 0
		w.checkpointIfDue(w.clock.Now())
		select {
		case free <- r:
		default:
		}
	}
}

// handle submits one event; it reports an invalidate without submitting
// it. streamToken is the stream's resume token after this event (nil: not
// known): when it is the event's own token (every event of a getMore reply
// but the last), the stream's position is set from the event's copy, under
// the same lock, instead of a second copy (setStreamToken). A non-nil rb
// says that raw lies in that read-ahead buffer, which the loop holds: the
// dispatcher then keeps raw without copying it (dispatcher.SubmitOwned)
// and gives the event's reference to rb back once it is done with it; so
// does owned, for a raw the watcher made (a reassembled event), which
// nothing else refers to. more says that more events of the same reply
// follow (dispatcher.Event.More: a batch waits for them).
func (w *Watcher) handle(ctx context.Context, raw bson.Raw, streamToken bson.Raw, now time.Time, rb *replyBuf, owned, more bool) (invalidated, positioned bool, err error) {
	perDocument := w.t.Ordering == triggers.PerDocument
	f := scanEvent(raw, perDocument)
	token, ok := f.id.DocumentOK()
	if !ok {
		return false, false, errors.New("change event without a resume token (_id)")
	}
	op := stringBytes(f.operationType)
	if string(op) == "invalidate" {
		return true, false, nil
	}
	if len(op) > 0 && string(op) != w.lastOp {
		w.lastOp = string(op)
	}
	key := dispatcher.NoKey
	if perDocument && f.hasDocumentKey {
		key = dispatcher.DocumentKey(f.ns.Value, f.documentKey.Value)
	}
	ev := dispatcher.Event{Raw: raw, Token: bson.Raw(token), Key: key, Received: now, More: more}
	switch {
	case owned:
		err = w.disp.SubmitOwned(ctx, ev)
	case rb == nil:
		err = w.disp.Submit(ctx, ev)
	default:
		// The event's reference is taken before it is submitted: the
		// dispatcher may deliver it and give it back before SubmitOwned
		// returns. A failed submit leaves it with the loop.
		rb.hold()
		ev.Release = rb.release
		if err = w.disp.SubmitOwned(ctx, ev); err != nil {
			rb.put()
		}
	}
	if err != nil {
		return false, false, fmt.Errorf("submit event: %w", err)
	}
	t, i, hasCT := f.clusterTime.TimestampOK()
	// The bookkeeping keeps its own small copy even of an owned token: a
	// pending entry may outlive the event's delivery (until a checkpoint
	// is saved), when the read-ahead buffer it lies in is reused.
	tok := w.tokens.clone(token)
	positioned = streamToken != nil && bytes.Equal(streamToken, token)
	w.cpMu.Lock()
	if hasCT {
		w.lastCluster = bson.Timestamp{T: t, I: i}
	}
	w.pushed++
	w.pending.push(pendingEvent{token: tok, cluster: w.lastCluster, at: now, seq: w.pushed})
	w.sinceSave++
	if positioned {
		w.streamToken = tok
	}
	w.cpMu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default: // the flusher is already awake or kicked
	}
	w.received.Inc()
	w.update(func(s *TriggerStatus) {
		s.EventsReceived++
		if hasCT {
			s.LastEventTime = time.Unix(int64(t), 0).UTC()
		}
	})
	return false, positioned, nil
}

// eventFields are the top-level fields of a change event the watch loop
// reads (the first of each name, as bson.Raw.Lookup finds it).
type eventFields struct {
	id, operationType, ns, documentKey, clusterTime bson.RawValue
	hasDocumentKey                                  bool
}

// stringBytes returns the bytes of a string value without copying them:
// what v.StringValueOK returns, as bytes (nil when v is not a string).
func stringBytes(v bson.RawValue) []byte {
	if v.Type != bson.TypeString || len(v.Value) < 4 {
		return nil
	}
	l := int(int32(binary.LittleEndian.Uint32(v.Value)))
	if l <= 0 || len(v.Value)-4 < l {
		return nil
	}
	return v.Value[4 : 4+l-1]
}

// scanEvent reads raw's top-level elements once and picks the fields the
// watch loop needs, instead of one bson.Raw.Lookup (a walk from the first
// element) per field; without withKey it stops once _id, operationType and
// clusterTime are found (ns and documentKey are then left unset). For a
// well-formed event each field is what raw.Lookup(name) returns
// (TestScanEventMatchesLookup); a field after a malformed element is not
// found, nor any in a document whose declared length is not its own (the
// driver hands out every event with its exact length).
func scanEvent(raw bson.Raw, withKey bool) (f eventFields) {
	w := bsonwalk.New(raw)
	var seen uint8
	all := uint8(0x13)
	if withKey {
		all = 0x1F
	}
	for seen&all != all {
		key, v, ok := w.Next()
		if !ok {
			return f
		}
		var bit uint8
		var dst *bson.RawValue
		switch string(key) {
		case "_id":
			bit, dst = 1, &f.id
		case "operationType":
			bit, dst = 2, &f.operationType
		case "ns":
			if !withKey {
				continue
			}
			bit, dst = 4, &f.ns
		case "documentKey":
			if !withKey {
				continue
			}
			bit, dst = 8, &f.documentKey
			f.hasDocumentKey = true
		case "clusterTime":
			bit, dst = 16, &f.clusterTime
		default:
			continue
		}
		if seen&bit != 0 {
			continue
		}
		seen |= bit
		*dst = v
	}
	return f
}

// safeToken says which token a checkpoint may save.
type safeToken int

const (
	// streamWhenIdle saves the stream's own resume token when the
	// dispatcher is idle (every submitted event is done, so everything
	// before the token was delivered, dead-lettered or filtered out), else
	// the dispatcher's watermark.
	streamWhenIdle safeToken = iota
	// watermarkOnly saves the dispatcher's watermark: used when submitted
	// events may have been abandoned, so idleness proves nothing.
	watermarkOnly
)

// checkpointIfDue, on the Run goroutine, wakes the flusher when a save is
// due (see dueLocked); otherwise it only updates the checkpoint lag. It
// never writes itself, so the stream is read on while a save is slow.
func (w *Watcher) checkpointIfDue(now time.Time) {
	w.cpMu.Lock()
	due := w.dueLocked(now)
	if !due {
		w.updateLag(now)
	}
	w.cpMu.Unlock()
	if due {
		select {
		case w.due <- struct{}{}:
		default: // the flusher is already told
		}
	}
}

// dueLocked reports whether a save of the newest safe token is due:
// CheckpointEvery events or CheckpointInterval since the last save while
// events were submitted since it or are not yet checkpointed, or
// IdleCheckpointInterval since the last save when the only change is the
// stream's position (idle-only). cpMu must be held.
func (w *Watcher) dueLocked(now time.Time) bool {
	interval := w.intervalLocked()
	if _, pending := w.pending.front(); w.sinceSave == 0 && !pending && w.disp.Idle() {
		interval = w.opts.IdleCheckpointInterval
	}
	return w.sinceSave >= w.opts.CheckpointEvery || now.Sub(w.lastSave) >= interval
}

// intervalLocked is the time between saves while events are pending:
// CheckpointInterval, or at most firstCheckpointInterval until a save was
// written after an event the open stream submitted (the pin of "start_at:
// now" at open does not count). cpMu must be held.
func (w *Watcher) intervalLocked() time.Duration {
	if !w.openSaved {
		return min(w.opts.CheckpointInterval, firstCheckpointInterval)
	}
	return w.opts.CheckpointInterval
}

// setStreamToken records the stream's newest resume token (a copy of rt).
func (w *Watcher) setStreamToken(rt bson.Raw) { w.setStreamTokenOwned(w.tokens.clone(rt)) }

// setStreamTokenOwned records the stream's newest resume token rt itself:
// rt must never be modified afterwards, so it must not lie in a read-ahead
// buffer (those are reused once their events are delivered).
func (w *Watcher) setStreamTokenOwned(rt bson.Raw) {
	w.cpMu.Lock()
	w.streamToken = rt
	w.cpMu.Unlock()
}

// flushLoop does the saves while the stream is open, until ctx ends: every
// CheckpointInterval while events are pending (so that a burst's last
// events are checkpointed on time although the Run goroutine waits up to
// MaxAwait in a getMore), and at once when the Run goroutine finds one due
// (CheckpointEvery events, or an idle-only save). It sleeps while nothing
// is pending (woken by kick or due): idle triggers cost no timer.
func (w *Watcher) flushLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-w.due:
		}
		for w.flushIfDue(ctx) {
			if w.waitInterval(ctx) != nil {
				return
			}
		}
	}
}

// waitInterval waits the interval between saves (intervalLocked) on the
// clock, or until the Run goroutine finds a save due; it returns ctx's
// error when ctx ends.
func (w *Watcher) waitInterval(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-w.due:
			cancel()
		case <-stop:
		}
	}()
	w.cpMu.Lock()
	interval := w.intervalLocked()
	w.cpMu.Unlock()
	_ = w.clock.Sleep(sctx, interval)
	return ctx.Err()
}

// flushIfDue saves the newest safe token (streamWhenIdle) when a save is
// due (dueLocked), else updates the lag. It reports whether events remain
// that the saved checkpoint does not cover (the flusher keeps ticking).
func (w *Watcher) flushIfDue(ctx context.Context) (pending bool) {
	w.saveMu.Lock()
	defer w.saveMu.Unlock()
	w.cpMu.Lock()
	now := w.clock.Now()
	due := w.dueLocked(now)
	if !due {
		w.updateLag(now)
	}
	w.cpMu.Unlock()
	if due {
		w.saveLocked(ctx, streamWhenIdle)
	}
	w.cpMu.Lock()
	defer w.cpMu.Unlock()
	_, p := w.pending.front()
	return p || w.sinceSave > 0
}

// checkpointNow saves the newest safe token (streamWhenIdle) at once.
func (w *Watcher) checkpointNow(ctx context.Context) { w.saveCheckpoint(ctx, streamWhenIdle) }

// checkpointWatermark saves the dispatcher's watermark at once, never the
// stream's own token.
func (w *Watcher) checkpointWatermark(ctx context.Context) { w.saveCheckpoint(ctx, watermarkOnly) }

// saveCheckpoint saves the newest token that upTo allows, unless it is the
// one saved already, and updates the lag bookkeeping. A failed save is
// logged and shown in the status; the next checkpoint retries it.
func (w *Watcher) saveCheckpoint(ctx context.Context, upTo safeToken) {
	w.saveMu.Lock()
	defer w.saveMu.Unlock()
	w.saveLocked(ctx, upTo)
}

// saveLocked is saveCheckpoint with saveMu held. It picks the token under
// cpMu and writes it without: a token safe when picked stays safe, since
// deliveries only complete, and saveMu keeps a newer save from being
// overwritten by an older one.
func (w *Watcher) saveLocked(ctx context.Context, upTo safeToken) {
	w.cpMu.Lock()
	now := w.clock.Now()
	w.lastSave, w.sinceSave = now, 0
	var (
		token    bson.Raw
		cluster  bson.Timestamp
		caughtUp bool
	)
	if upTo == streamWhenIdle && w.streamToken != nil && w.disp.Idle() {
		// Caught up, the stream may have moved past changes it filtered
		// out since the last event it delivered: the position's time is
		// the token's own, not that event's.
		token, caughtUp = w.streamToken, true
		if cluster = w.pending.clusterOf(token); cluster.IsZero() {
			// A position between events (a post-batch resume token):
			// every change before its time is covered, none at it.
			if at, ok := tokenClusterTime(token); ok {
				cluster = justBefore(at)
			}
		}
	} else if wm, ok := w.disp.Watermark(); ok {
		token, cluster = wm, w.pending.clusterOf(wm)
	}
	pushed := w.pushed // the events submitted so far: all done when caughtUp
	write := token != nil && !bytes.Equal(token, w.savedToken)
	w.cpMu.Unlock()
	if write {
		saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.CheckpointTimeout)
		err := w.cps.SaveCheckpoint(saveCtx, store.Checkpoint{Trigger: w.t.Key(), Token: token, ClusterTime: cluster, UpdatedAt: now})
		cancel()
		if err != nil {
			w.saveFailed(err, now)
			w.cpMu.Lock()
			w.updateLag(w.clock.Now())
			w.cpMu.Unlock()
			return
		}
		w.update(func(s *TriggerStatus) {
			if s.CheckpointFailure != nil {
				w.log.Info("checkpoint saved again", "failed_since", s.CheckpointFailure.Since, "failed_tries", s.CheckpointFailure.Tries)
			}
			s.CheckpointTime, s.CheckpointFailure = now, nil
			w.failedBefore = nil
		})
		w.log.Debug("checkpoint saved", "caught_up", caughtUp)
	}
	w.cpMu.Lock()
	defer w.cpMu.Unlock()
	if write {
		w.savedToken = bytes.Clone(token)
		w.openSaved = w.openSaved || pushed > w.openPushed
	}
	if token != nil {
		if caughtUp {
			w.pending.popUpTo(pushed)
		} else {
			w.pending.popThrough(token)
		}
	}
	w.updateLag(w.clock.Now())
}

// saveFailed records a failed checkpoint save at now: the status's
// CheckpointFailure (since the first failure after the last successful
// save, also one of the unit's previous watcher: failedBefore), which
// Status shows as the last error while it lasts (withCheckpointFailure),
// the failure metric by reason, and a warning at the watcher's
// first failure and when the reason changes (every failure at debug). A
// save fenced out because the lease is gone (CheckpointFailLeaseLost) is
// not followed by further deliveries here, and its warning says so.
func (w *Watcher) saveFailed(err error, now time.Time) {
	reason := checkpointFailReason(err)
	w.opts.Metrics.checkpointSaveFailed(w.t, reason)
	var first bool
	var since time.Time
	w.update(func(s *TriggerStatus) {
		f := s.CheckpointFailure
		switch {
		case f != nil:
			c := *f // the snapshots handed out keep theirs
			f = &c
		case w.failedBefore != nil:
			c := *w.failedBefore
			f, first = &c, true
			w.failedBefore = nil
		default:
			f = &CheckpointFailure{Since: now, LastSavedAt: s.CheckpointTime}
		}
		first = first || f.Tries == 0 || f.Reason != reason
		f.Error, f.Reason, f.Tries, f.at = err.Error(), reason, f.Tries+1, now
		s.CheckpointFailure = f
		since = f.Since
	})
	switch {
	case first && reason == CheckpointFailLeaseLost:
		// Fenced out: this member stops the unit, so nothing continues
		// here; its next holder starts from the last save.
		w.log.Warn("cannot save checkpoint: this member no longer holds the trigger's lease; it stops reading and delivering, "+
			"and the member that runs the trigger next continues from the last saved checkpoint, delivering again every event since then",
			"error", err, "reason", reason, "failing_since", since)
	case first:
		w.log.Warn("cannot save checkpoint; deliveries continue, a restart would deliver again every event since the last save; will retry",
			"error", err, "reason", reason, "failing_since", since)
	default:
		w.log.Debug("cannot save checkpoint; will retry", "error", err, "reason", reason)
	}
}

// checkpointFailureLeft returns, for a watcher that stopped, the
// checkpoint failure it stopped with (nil: its last save succeeded, or
// none failed) and the position it had last saved or loaded, for the
// unit's next watcher (failedBefore).
func (w *Watcher) checkpointFailureLeft() (*CheckpointFailure, bson.Raw) {
	w.mu.Lock()
	f, before, at := w.status.CheckpointFailure, w.failedBefore, w.failedBeforeAt
	w.mu.Unlock()
	switch {
	case f == nil && before == nil:
		return nil, nil
	case f == nil:
		// The previous watcher's, still unresolved: this one saved
		// nothing (and loaded that position, or none yet).
		return before, at
	}
	w.cpMu.Lock()
	defer w.cpMu.Unlock()
	return f, bytes.Clone(w.savedToken)
}

// clearLag sets the checkpoint lag to 0 (metric and status), for a watcher
// that has stopped and whose trigger no longer runs here.
func (w *Watcher) clearLag() {
	w.lag.Set(0)
	w.update(func(s *TriggerStatus) { s.CheckpointLag = 0 })
}

func (w *Watcher) updateLag(now time.Time) {
	var lag time.Duration
	if oldest, ok := w.pending.front(); ok {
		lag = max(0, now.Sub(oldest.at))
	}
	w.lag.Set(lag.Seconds())
	w.update(func(s *TriggerStatus) { s.CheckpointLag = lag })
}

// drain waits for the submitted events after a permanent failure,
// checkpointing as they complete, until the dispatcher is idle or ctx ends.
func (w *Watcher) drain(ctx context.Context) {
	for !w.disp.Idle() {
		if w.clock.Sleep(ctx, w.opts.CheckpointInterval) != nil {
			return
		}
		w.checkpointWatermark(ctx)
	}
}

// shutdown closes the dispatcher with the grace period and saves the final
// checkpoint. Only when every delivery finished in time may the stream's own
// token be saved; otherwise the watermark stops before the abandoned events.
func (w *Watcher) shutdown(ctx context.Context) {
	why := w.restarting.Load()
	var cause error // nil: the grace period's end is the cause
	if why != nil {
		// The dispatcher logs the deliveries it cuts off with it.
		cause = errors.New(*why)
	}
	graceCtx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), w.opts.ShutdownGrace, cause)
	if w.opts.Deadline != nil {
		var stopCut context.CancelFunc
		graceCtx, stopCut = w.untilLeaseDeadline(graceCtx, cause)
		defer stopCut()
	}
	now := w.stopNow.Load()
	var closeErr error
	if now != nil {
		closeErr = w.disp.Stop(graceCtx, errors.New(*now))
	} else {
		closeErr = w.disp.Close(graceCtx)
	}
	cancel()
	w.dispClosed.Store(true)
	if ue, ok := errors.AsType[*dispatcher.UnfinishedError](closeErr); ok {
		w.unfinished.Store(int64(ue.Events))
	}
	switch {
	case closeErr != nil && why != nil:
		w.log.Info("in-flight deliveries cut off by a control or reload; they are delivered again when the trigger restarts", "cause", *why, "error", closeErr)
	case closeErr != nil && now != nil:
		w.log.Info("deliveries stopped; the events not delivered are delivered again when the trigger runs again", "cause", *now, "error", closeErr)
	case closeErr != nil:
		w.log.Warn("deliveries unfinished at shutdown; they will be redelivered after restart", "error", closeErr)
	}
	if closeErr == nil {
		w.checkpointNow(context.WithoutCancel(ctx))
	} else {
		w.checkpointWatermark(context.WithoutCancel(ctx))
	}
	w.opts.Metrics.setUp(w.t, false)
	w.update(func(s *TriggerStatus) {
		s.StreamOpen = false
		s.Retrying = false
		if s.State != StateFailed {
			s.State, s.Since = StateStopped, w.clock.Now()
		}
	})
	w.log.Info("trigger stopped")
}

// untilLeaseDeadline returns a context of parent that also ends, with
// cause (nil: context.DeadlineExceeded, as the grace period's own end),
// once the lease's local deadline (WatcherOptions.Deadline) has passed.
// The deadline is read again whenever the one read last comes, and at
// least every drainLeaseRecheck, so a lease that goes on being renewed
// while the trigger drains (a handoff, or a shutdown: the lease holder
// renews it until it is released) leaves the drain the whole grace period,
// one that is not renewed ends it at its deadline, and one fenced
// meanwhile (its deadline then zero: a renewal refused as lost, Lost, a
// suspend) ends it within drainLeaseRecheck, not when the deadline read
// before the fence comes. The returned function releases the context's
// resources; call it once Close returned.
// drainLeaseRecheck bounds how long a drain under a lease goes on after the
// lease was fenced: ten reads of the deadline a second while a stop
// drains, nothing otherwise.
const drainLeaseRecheck = 100 * time.Millisecond

func (w *Watcher) untilLeaseDeadline(parent context.Context, cause error) (context.Context, context.CancelFunc) {
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	ctx, cancel := context.WithCancelCause(parent)
	left := func() time.Duration { return w.opts.Deadline().Sub(w.clock.Now()) }
	if left() <= 0 {
		cancel(cause)
		return ctx, func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			d := left()
			if d <= 0 {
				cancel(cause)
				return
			}
			if w.clock.Sleep(ctx, min(d, drainLeaseRecheck)) != nil {
				return
			}
		}
	}()
	return ctx, func() {
		cancel(context.Canceled)
		<-done
	}
}

// positionLoss says whether a watcher failed permanently because its
// position (its checkpoint, or its start_at) cannot be resumed from, so
// that running it again from the same position fails the same way at
// once: only moving the position helps (a resume from now or a time, or
// `checkpoints reset`).
type positionLoss int

const (
	// positionKept: the failure is not about the position.
	positionKept positionLoss = iota
	// positionHistoryLost: the position is no longer in the oplog
	// (ChangeStreamHistoryLost, InvalidResumeToken).
	positionHistoryLost
	// positionNotFound: the checkpoint's resume token is not a position
	// of this change stream (ChangeStreamFatalError "resume token was not
	// found").
	positionNotFound
)

// String says what was lost, as a refused resume or redeliver words it.
func (l positionLoss) String() string {
	switch l {
	case positionHistoryLost:
		return "history lost (its checkpoint is no longer in the oplog)"
	case positionNotFound:
		return "its checkpoint's resume token not found in the change stream (the checkpoint does not belong to this collection or deployment)"
	}
	return "a position that can be resumed from"
}

// classify is classifyLoss without the position loss.
func (w *Watcher) classify(err error, opened bool) (reason, wayOut string, retry bool) {
	reason, wayOut, retry, _ = w.classifyLoss(err, opened)
	return reason, wayOut, retry
}

// classifyLoss turns a stream error into a status reason, the way out of a
// permanent failure, whether reopening the stream can help and whether the
// failure is a lost position (see positionLoss). opened says
// whether the stream was open when it failed: a server error that neither
// the driver resumes (no ResumableChangeStreamError label) nor is a
// transient code is then the server ending a running stream, not the
// server rejecting the trigger's pipeline.
func (w *Watcher) classifyLoss(err error, opened bool) (reason, wayOut string, retry bool, lost positionLoss) {
	name := w.t.Name
	if errors.Is(err, errInvalidated) {
		// The event before the invalidate says why, when the trigger's
		// operations let it through; otherwise either may have happened.
		what := "collection dropped or renamed"
		switch {
		case w.t.Collection == "" && w.t.Database != "", w.lastOp == "dropDatabase":
			what = "database dropped"
		case w.lastOp == "drop":
			what = "collection dropped"
		case w.lastOp == "rename":
			what = "collection renamed"
		}
		return what + ": the change stream was invalidated; recreate it (or point the trigger elsewhere and reload), then run `changehook resume " + name + " --from now` on the running changehook",
			"recreate it (or point the trigger elsewhere and reload), then run `changehook resume " + name + " --from now` on the running changehook", false, positionKept
	}
	if mongo.IsNetworkError(err) || mongo.IsTimeout(err) {
		return err.Error(), "", true, positionKept
	}
	if errors.Is(err, errSplitIncomplete) {
		return fmt.Sprintf("%v; the trigger holds on the event", err),
			"run `changehook resume " + name + "`: it reopens the stream from the checkpoint, before the event, and reads its fragments again; " +
				"when the stream starts within the split event (the checkpoint is one of its fragments), run `changehook redeliver " + name +
				" --since TIME` with TIME the second of that event" + w.checkpointSecond() + ", then `changehook resume " + name +
				"`: it reads the event whole again, with the other changes since then", false, positionKept
	}
	if _, at, ok := eventTooLarge(err); ok {
		return fmt.Sprintf("change event too large: %s is larger than the 16 MiB a change stream can return (BSONObjectTooLarge), so the trigger cannot read past it", tooLargeText(at)),
			"make the trigger's events smaller — a `project` that drops the large fields (fullDocument, fullDocumentBeforeChange, updateDescription), " +
				"or no `full_document: updateLookup` / `full_document_before_change` (pre-images) — and reload, then run `changehook resume " + name + "` (the event is then delivered as projected); " +
				"or run `changehook skip " + name + "`: it dead-letters the event without its fullDocument, fullDocumentBeforeChange and updateDescription and continues after it", false, positionKept
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) && ce.Code != 0 && !ce.HasErrorLabel("NetworkError") {
		if reason, wayOut, ok := deploymentRejection(ce, w.t); ok {
			return reason, wayOut, false, positionKept
		}
		switch ce.Code {
		case 286, 260:
			// The reason (also the log's) gives the way out that works on
			// the running process, as wayOut does: `checkpoints reset` is
			// refused while a changehook runs the trigger.
			return fmt.Sprintf("history lost: the checkpoint is no longer in the oplog (%s); events may have been missed. "+
					"The way out: `changehook resume %s --from now|TIME` on the running changehook (from now or a time still in the oplog; the changes before it are skipped), "+
					"or `changehook checkpoints reset --trigger %s` when no changehook runs", ce.Name, name, name),
				"on the running changehook, run `changehook resume " + name + " --from now` to continue from now (the lost range is skipped), " +
					"or `changehook resume " + name + " --from TIME` with a time still in the oplog; when it is stopped, `changehook checkpoints reset --trigger " + name + "`", false, positionHistoryLost
		case 280:
			if resumeNeedsSplit(err) && w.splitRefused != "" {
				// The stage was turned off (splitRetry) on an event the
				// server cannot split, right after a split event whose last
				// fragment is the stream's position: no stream reads on
				// from there.
				return fmt.Sprintf("the change event after the checkpoint cannot be read: it is larger than 16 MiB and %s; "+
						"and the checkpoint, the last fragment of a split change event, can be resumed from only with $changeStreamSplitLargeEvent", w.splitRefused),
					"make the trigger's events smaller — a `project` that keeps the large fields (fullDocument, fullDocumentBeforeChange, updateDescription) in fields of their own, or drops them — " +
						"and reload, then run `changehook resume " + name + "`; or run `changehook resume " + name + " --from TIME` with TIME after that change, which also skips the changes up to then", false, positionKept
			}
			if strings.Contains(ce.Message, "resume from a split event") {
				// The checkpoint is a split event's last fragment, and the
				// pipeline (a reload changed it) no longer splits that
				// event as it did: MongoDB cannot resume there.
				return fmt.Sprintf("the server cannot resume after the checkpoint, a fragment of a change event larger than 16 MiB (ChangeStreamFatalError): %s", ce.Message),
					"run `changehook redeliver " + name + " --since TIME` with TIME the second of that event" + w.checkpointSecond() +
						", then `changehook resume " + name + "`: it delivers the changes since then again, the large event included, as the trigger now makes them", false, positionKept
			}
			if strings.Contains(ce.Message, "resume token was not found") {
				// The checkpoint is not a position of this stream: resuming
				// from it again fails the same way, so only moving it helps.
				return fmt.Sprintf("the checkpoint's resume token was not found in the change stream (ChangeStreamFatalError): "+
						"the checkpoint does not belong to this collection or deployment (a state database shared with another deployment, "+
						"a trigger pointed at another collection under the same name), and resuming from it fails every time. "+
						"The way out: `changehook resume %s --from now|TIME` on the running changehook (the changes before it are skipped), "+
						"or `changehook checkpoints reset --trigger %s` when no changehook runs; the server said: %s", name, name, ce.Message),
					"on the running changehook, run `changehook resume " + name + " --from now` to start from now, " +
						"or `changehook resume " + name + " --from TIME` with a time still in the oplog; when it is stopped, `changehook checkpoints reset --trigger " + name + "`", false, positionNotFound
			}
			return fmt.Sprintf("the server ended the change stream (ChangeStreamFatalError): %s", ce.Message),
				"fix the cause, then run `changehook resume " + name + "`", false, positionKept
		}
		if !transientCode(ce.Code) && !ce.HasErrorLabel("ResumableChangeStreamError") && !ce.HasErrorLabel("RetryableError") {
			if opened {
				return fmt.Sprintf("the server ended the change stream with an error that is not resumable (%s %d): %s", ce.Name, ce.Code, ce.Message),
					"find the cause in the server's log, then run `changehook resume " + name + "`: it reopens the stream from the checkpoint and delivers every change since", false, positionKept
			}
			return fmt.Sprintf("the server rejected the change stream (%s %d): %s", ce.Name, ce.Code, ce.Message),
				"fix the trigger's match/pipeline in the configuration and reload (kill -HUP, or POST /api/reload)", false, positionKept
		}
	}
	return err.Error(), "", true, positionKept
}

// checkpointSecond is " (TIME)", the second of the stream's position
// (the resume token's cluster time), or "" when it is not known.
func (w *Watcher) checkpointSecond() string {
	w.cpMu.Lock()
	from := w.streamToken
	if from == nil {
		from = w.savedToken
	}
	w.cpMu.Unlock()
	if at := tokenTime(from); !at.IsZero() {
		return " (" + at.Format(time.RFC3339) + ")"
	}
	return ""
}

// transientCode reports server error codes worth retrying: elections,
// shutdowns, timeouts, stale routing and permissions an operator may fix.
func transientCode(code int32) bool {
	switch code {
	case 6, 7, 13, 18, 43, 50, 63, 89, 91, 133, 150, 189, 234, 262, 9001, 10107, 11600, 11602, 13388, 13435, 13436:
		return true
	}
	return false
}

func (w *Watcher) update(f func(*TriggerStatus)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(&w.status)
}

func (w *Watcher) setRunning() {
	w.opts.Metrics.setUp(w.t, true)
	now := w.clock.Now()
	w.update(func(s *TriggerStatus) {
		s.State, s.Since, s.StreamOpen, s.Retrying, s.WayOut, s.StartsAt = StateRunning, now, true, false, "", time.Time{}
	})
}

// failedPermanently reports whether the watcher's stream failed for good:
// Run returns a *TriggerError once the deliveries already submitted have
// finished (it may still be waiting for them).
func (w *Watcher) failedPermanently() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status.State == StateFailed
}

// failedOnTooLarge reports whether the watcher failed on a change event
// too large to read; token is the event's resume token as the server's
// error names it (nil when it names none).
func (w *Watcher) failedOnTooLarge() (token bson.Raw, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tooLargeToken, w.tooLarge
}

// setFailed shows a stream failure: StateRetrying when the loop tries
// again, else StateFailed with wayOut.
func (w *Watcher) setFailed(reason, wayOut string, retry bool) {
	w.opts.Metrics.setUp(w.t, false)
	now := w.clock.Now()
	state := StateFailed
	if retry {
		state = StateRetrying
	}
	w.update(func(s *TriggerStatus) {
		if s.State != state {
			s.Since = now
		}
		s.State, s.StreamOpen, s.Retrying = state, false, retry
		s.LastError, s.LastErrorAt, s.WayOut = reason, now, wayOut
	})
}

// pendingEvent is a submitted event not yet covered by the saved checkpoint.
type pendingEvent struct {
	token   bson.Raw
	cluster bson.Timestamp
	at      time.Time
	seq     uint64 // Watcher.pushed when it was pushed
}

// pendingQueue holds pendingEvents in stream order. It tracks at most
// maxPendingTracked of them: beyond, it forgets the oldest, but keeps the
// oldest it forgot (dropped) until a save covers it, so that the lag still
// counts from the oldest event the checkpoint does not cover.
type pendingQueue struct {
	items []pendingEvent
	head  int
	// dropped is the oldest event forgotten at the bound and not covered
	// by a save since (valid when hasDropped); it is older than every
	// tracked event.
	dropped    pendingEvent
	hasDropped bool
}

func (q *pendingQueue) push(e pendingEvent) {
	if len(q.items)-q.head >= maxPendingTracked {
		if !q.hasDropped {
			q.dropped, q.hasDropped = q.items[q.head], true
		}
		q.items[q.head] = pendingEvent{}
		q.head++ // bounded: forget the oldest but the first forgotten
	}
	if q.head > 0 && q.head >= len(q.items)/2 {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, e)
}

// front returns the oldest event not covered by a save: the oldest
// forgotten one if any, else the oldest tracked one.
func (q *pendingQueue) front() (pendingEvent, bool) {
	if q.hasDropped {
		return q.dropped, true
	}
	if q.head >= len(q.items) {
		return pendingEvent{}, false
	}
	return q.items[q.head], true
}

// popThrough drops every event up to and including token. When token is
// not tracked, it drops only the forgotten event, if token is at or after
// it in the stream (a token of a forgotten event).
func (q *pendingQueue) popThrough(token bson.Raw) {
	for i := q.head; i < len(q.items); i++ {
		if bytes.Equal(q.items[i].token, token) {
			clear(q.items[q.head : i+1])
			q.head = i + 1
			q.hasDropped, q.dropped = false, pendingEvent{}
			return
		}
	}
	if !q.hasDropped {
		return
	}
	if before, err := positionBefore(store.Checkpoint{Token: token}, store.Checkpoint{Token: q.dropped.token}); err == nil && !before {
		q.hasDropped, q.dropped = false, pendingEvent{}
	}
}

// popUpTo drops every event whose seq is at most seq.
func (q *pendingQueue) popUpTo(seq uint64) {
	if q.hasDropped && q.dropped.seq <= seq {
		q.hasDropped, q.dropped = false, pendingEvent{}
	}
	i := q.head
	for i < len(q.items) && q.items[i].seq <= seq {
		i++
	}
	clear(q.items[q.head:i])
	q.head = i
}

// clusterOf returns the cluster time of the event whose token is token
// (zero: not known).
func (q *pendingQueue) clusterOf(token bson.Raw) bson.Timestamp {
	for i := len(q.items) - 1; i >= q.head; i-- {
		if bytes.Equal(q.items[i].token, token) {
			return q.items[i].cluster
		}
	}
	if q.hasDropped && bytes.Equal(q.dropped.token, token) {
		return q.dropped.cluster
	}
	return bson.Timestamp{}
}
