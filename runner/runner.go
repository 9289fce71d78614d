// Package runner runs triggers: one Watcher per enabled trigger owns the
// trigger's change stream, submits every event to the trigger's dispatcher
// in stream order and checkpoints the resume token up to which every event
// was delivered or dead-lettered. A Runner runs every trigger of a
// configuration independently and reports each one's status.
//
// # Supervisor
//
// The Runner supervises each trigger separately: Start, Stop and Restart
// start and stop one trigger's watcher while the others keep running (the
// HA leases build on them), and Pause and Resume hold a trigger without
// losing events. At most one watcher of a trigger runs at a time: a trigger
// is started again only after its previous watcher has stopped and saved its
// final checkpoint.
//
// A trigger runs when all of these hold: Run is running, the trigger is
// enabled, it is wanted (every enabled trigger is wanted when Run starts,
// unless Options.StartStopped; Start and Stop change it), it is not paused,
// it did not fail permanently (Restart or Resume clear that), no
// control operation (Resume from a position, Skip, Redeliver) holds it
// stopped while it rewrites its checkpoint, and, with Options.Controls, its
// control documents have been read once since Run or the Reload that
// added it (so that a paused trigger never starts before its pause is
// known).
//
// # Pause
//
// Pause(name, reason, by) records the pause and returns at once, without
// waiting: it is safe to call from any goroutine, including a dispatcher's
// worker (the payload-error pause and the circuit breaker do). The trigger's
// watcher stops reading its change stream at once; the deliveries already
// admitted into its dispatcher (at most its capacity) may finish within the
// shutdown grace period, and whatever is cut off is not checkpointed. So the
// checkpoint stays at the watermark and no event is lost: Resume with the
// zero ResumeFrom continues from the checkpoint and delivers everything
// written during the pause, in order. Status shows the trigger paused (with
// who, why and since) from the moment Pause returns.
package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/internal/version"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Options configure a Runner; zero values take defaults.
type Options struct {
	// Logger is the base logger (default slog.Default()); every line about a
	// trigger carries trigger=NAME.
	Logger *slog.Logger
	// Registry receives the watch loop's and the dispatchers' metrics (nil:
	// metrics are not registered).
	Registry prometheus.Registerer
	// HTTPClient is the dispatchers' base client (nil: each dispatcher's
	// own, see dispatcher.WithHTTPClient). Its transport
	// (http.DefaultTransport when its Transport is nil) is the caller's,
	// shared by every dispatcher and never closed by the runner: its
	// connection pool is the caller's to bound. Under a lease
	// (StartLeased) it is wrapped in the lease's gate, not copied.
	HTTPClient *http.Client
	// Clock is the source of time of watchers and dispatchers (default
	// dispatcher.SystemClock).
	Clock dispatcher.Clock
	// Version goes into User-Agent (see version.UserAgent; default
	// version.Dev).
	Version string
	// ShutdownGrace bounds how long in-flight deliveries may finish after
	// Run's context is canceled, or a trigger is stopped or paused (default
	// 10s).
	ShutdownGrace time.Duration
	// CheckpointEvery saves a trigger's checkpoint after this many events
	// (see WatcherOptions; default DefaultCheckpointEvery).
	CheckpointEvery int
	// CheckpointInterval saves a trigger's checkpoint at least this often
	// while events are delivered (see WatcherOptions; default
	// DefaultCheckpointInterval).
	CheckpointInterval time.Duration
	// StartStopped makes Run start no trigger by itself: each one runs only
	// after Start(name) (the HA lease holder does that). Default false:
	// every enabled trigger starts when Run starts.
	StartStopped bool
	// DispatcherOptions, when set, returns extra dispatcher options for a
	// trigger's dispatcher, appended after the Runner's own (logger, clock,
	// metrics, HTTP client). It is called each time the trigger starts.
	DispatcherOptions func(t *triggers.Trigger) []dispatcher.Option
	// Clustered means triggers run only under cluster leases (StartLeased;
	// use with StartStopped).
	Clustered bool
	// Standby, in a clustered runner, reports whether another member is
	// meant to run the unit — a trigger's name, or a partition's key
	// "NAME/p<i>of<N>": such a stopped unit shows StateStandby and does not
	// hold readiness back (*cluster.Manager's Standby). nil: none is.
	Standby func(trigger string) bool
	// Unrun, in a clustered runner, reports whether no member runs the
	// trigger now: no live member lists it enabled and no lease of it is
	// held (*cluster.Manager's Unrun). A pause or a resume from the
	// checkpoint of a trigger disabled here is recorded as applied by this
	// member only then (by every member: nobody else would); while another
	// member runs the trigger, its units' lease holders record their
	// results once they applied the request. nil, or an error: this member
	// records none for a trigger disabled here.
	Unrun func(ctx context.Context, trigger string) (bool, error)
	// LeaseWait, in a clustered runner, says why this member does not run
	// the unit key now (*cluster.Manager's LeaseWait): the member that
	// runs it or holds its lease ("" when not known), when that lease
	// lapses (zero: not known), and a sentence ("": nothing to say). A
	// unit shown StateStandby or, waiting for its lease, StateStarting
	// carries it as TriggerStatus.LeaseWait. nil: never said.
	LeaseWait func(key string) (member string, until time.Time, reason string)
	// Controls applies the runtime controls stored in the state database
	// (see Runner.Skip and the controls section of controls.go): paused
	// triggers start paused and new requests are applied while Run runs.
	// A trigger (or partition) starts only once its control documents
	// have been read: while they cannot be, it stays StateStarting with
	// LastError "cannot read the runtime controls: …", and they are read
	// again with backoff until it can start.
	Controls bool
	// Dev marks the runner of `changehook dev`, under which `changehook
	// checkpoints repartition` is refused while it runs (and stopping a dev
	// without --data loses its data): the way out of partitions changed by
	// a reload then names `changehook resume NAME --from now` or setting
	// partitions back, not a repartition.
	Dev bool
	// WatchDeadLetters watches the deadletters collection's change stream
	// while Run runs and recounts the current dead-letter counts when it
	// changes, so that a replay or purge by another process (`changehook
	// dlq`, another member) shows within a second. It keeps one more
	// change stream open.
	WatchDeadLetters bool
	// DeadLetterRefresh is how often the triggers' current dead-letter
	// counts are read from the state database (default
	// DefaultDeadLetterRefresh); RefreshDeadLetters and every stored dead
	// letter also ask for a refresh.
	DeadLetterRefresh time.Duration
	// History, when set, records every delivery attempt of every trigger
	// (an observer on each dispatcher; it never waits), the changes a
	// Resume from now or from a time skips and the events Skip
	// dead-letters. The caller creates and closes it; SetHistory replaces
	// it while Run runs (a reload that turns the history on or off).
	History *store.HistoryWriter
	// IdleCheckpointInterval overrides the configuration's
	// checkpoint.idle_interval when not zero (see WatcherOptions).
	IdleCheckpointInterval time.Duration
}

// ErrUnknownTrigger is returned (wrapped) by the control methods for a name
// that is not a trigger of the configuration.
var ErrUnknownTrigger = errors.New("unknown trigger")

// ErrNotRunning is returned (wrapped) by control methods that need Run to be
// running (Resume from a position, Skip, Redeliver) when it is not.
var ErrNotRunning = errors.New("runner not running")

// Runner runs every enabled trigger of a configuration, each with its own
// dispatcher and Watcher, independently: one trigger failing never stops
// the others. Its methods are safe for concurrent use.
type Runner struct {
	client  *mongo.Client
	store   *store.Store
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	dmet    *dispatcher.Metrics
	// limits are the endpoints' rate limiters, shared by every trigger.
	limits   *dispatcher.Limiters
	budget   *dispatcher.ByteBudget // limits.max_inflight_bytes, shared by every trigger (nil: none)
	dl       deadLetterCounts
	reloadMu sync.Mutex // one Reload at a time
	started  atomic.Bool
	// unfinished counts the events the triggers' shutdown left unfinished
	// (see Unfinished).
	unfinished atomic.Int64

	// mu guards cfg, slots, order, units, replaced, runCtx, closing
	// and adding to wg. Where a slot's lock is held too, the slot's is
	// taken first (reconcile starts a watcher under both).
	mu    sync.Mutex
	cfg   *triggers.Config
	slots map[string]*slot    // by unit key: the trigger's name, or NAME/p<i>of<N> per partition
	order []string            // trigger names in configuration order
	units map[string][]string // trigger name → its unit keys in partition order
	// replaced holds, per trigger, what the partitions a reload replaced
	// (repartitioned) counted, so that the trigger's counters continue;
	// dropped when the trigger is removed.
	replaced map[string]replacedTotals
	runCtx   context.Context
	closing  bool
	wg       sync.WaitGroup

	// ctlPoke asks the controls goroutine to read the configuration's
	// control documents again. ctlSeen is, per control document of a
	// trigger or partition key in the configuration, the newest request
	// whose effect on this process was applied; the controls goroutine
	// adds to it and Reload deletes the keys it removed, both under ctlMu
	// (taken before r.mu when both are).
	ctlPoke chan struct{}
	ctlMu   sync.Mutex
	ctlSeen map[string]string

	// hist is the history writer in use (nil: history off); histMu is
	// held for reading while a record is handed to it, and for writing
	// while SetHistory replaces it, so that a replaced writer has no
	// record coming once SetHistory returns.
	histMu sync.RWMutex
	hist   *store.HistoryWriter
	// histOn is hist != nil, read without the lock by the dispatchers'
	// observers (dispatcher.WithActiveObserver).
	histOn atomic.Bool
}

// New prepares a Runner for cfg. It does no I/O and starts nothing:
// dispatchers and watchers are created by Run.
func New(cfg *triggers.Config, client *mongo.Client, st *store.Store, opts Options) (*Runner, error) {
	switch {
	case cfg == nil:
		return nil, errors.New("new runner: nil config")
	case client == nil:
		return nil, errors.New("new runner: nil mongo client")
	case st == nil:
		return nil, errors.New("new runner: nil store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = dispatcher.SystemClock{}
	}
	if opts.Version == "" {
		opts.Version = version.Dev
	}
	if opts.ShutdownGrace <= 0 {
		opts.ShutdownGrace = DefaultShutdownGrace
	}
	// Set once: a reload keeps the first configuration's idle interval and
	// process-wide byte budget.
	opts.IdleCheckpointInterval = cmp.Or(opts.IdleCheckpointInterval, cfg.Checkpoint.IdleInterval)
	r := &Runner{cfg: cfg, client: client, store: st, opts: opts, log: opts.Logger, slots: map[string]*slot{}, units: map[string][]string{}, replaced: map[string]replacedTotals{},
		ctlPoke: make(chan struct{}, 1), ctlSeen: map[string]string{}, hist: opts.History}
	if n := cfg.Limits.MaxInflightBytes; n > 0 {
		r.budget = dispatcher.NewByteBudget(n)
	}
	r.histOn.Store(opts.History != nil)
	r.dl = deadLetterCounts{n: map[string]int64{}, poke: make(chan struct{}, 1)}
	if opts.Registry != nil {
		r.metrics = NewMetrics(opts.Registry)
		if err := opts.Registry.Register(newStateCollector(r)); err != nil {
			// A second runner on one registry: the first one's series stay.
			opts.Logger.Warn("trigger state metrics not registered", "error", err)
		}
	}
	// The dispatchers always record into dmet: Status reads the delivery
	// counters from it, registered with Prometheus or not.
	r.dmet = dispatcher.NewMetrics(opts.Registry)
	r.limits = dispatcher.NewLimiters()
	for _, t := range cfg.Triggers {
		// A partitioned trigger runs as one unit per partition, each with
		// its own watcher, dispatcher and checkpoint (triggers.Partition).
		for _, u := range t.Units() {
			r.slots[u.Key()] = &slot{t: u, want: !opts.StartStopped, unread: opts.Controls, since: opts.Clock.Now()}
			r.units[t.Name] = append(r.units[t.Name], u.Key())
		}
		r.order = append(r.order, t.Name)
		r.initSeries(t)
	}
	return r, nil
}

// initSeries creates every per-trigger metric series of t at zero (the
// watch loop's once per partition).
func (r *Runner) initSeries(t *triggers.Trigger) {
	r.dmet.Init(t.Name)
	for _, u := range t.Units() {
		r.metrics.initTrigger(u)
	}
}

// Run starts a dispatcher and a Watcher for every enabled trigger (unless
// Options.StartStopped) and blocks until ctx is canceled. Then every
// watcher stops reading, lets its in-flight deliveries finish within the
// grace period and saves its final checkpoint, and Run returns nil. A
// trigger that fails permanently stays failed (see Status) while the others
// keep running. Run may be called once.
func (r *Runner) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("run triggers: Run called twice")
	}
	r.mu.Lock()
	r.runCtx = ctx
	slots := r.orderedSlots()
	r.mu.Unlock()
	r.mu.Lock()
	r.wg.Go(func() { r.refreshDeadLetters(ctx) })
	if r.opts.WatchDeadLetters {
		r.wg.Go(func() { r.watchDeadLetters(ctx) })
	}
	r.mu.Unlock()
	if r.opts.Controls {
		r.loadPauses(ctx)
		r.mu.Lock()
		r.wg.Go(func() { r.watchControls(ctx) })
		r.mu.Unlock()
	}
	for _, s := range slots {
		if i, _ := s.t.PartitionIndex(); !s.t.Enabled && i == 0 {
			r.log.Info("trigger disabled", "trigger", s.t.Name)
		}
		s.mu.Lock()
		r.reconcile(s)
		s.mu.Unlock()
	}
	<-ctx.Done()
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// Unfinished returns how many events Run's shutdown left neither delivered
// nor dead-lettered: deliveries still in flight or queued when a trigger's
// grace period (Options.ShutdownGrace) ended. Their checkpoints stay
// before them, so they are delivered again at the next start. Read it
// after Run returned; 0 when every trigger finished in time.
func (r *Runner) Unfinished() int { return int(r.unfinished.Load()) }

// orderedSlots returns every unit's slot in configuration (then
// partition) order; r.mu must be held.
func (r *Runner) orderedSlots() []*slot {
	out := make([]*slot, 0, len(r.slots))
	for _, name := range r.order {
		for _, key := range r.units[name] {
			out = append(out, r.slots[key])
		}
	}
	return out
}

// slotsOf finds the slots a control on name applies to: every partition of
// the trigger name, or the one partition whose key ("NAME/p<i>of<N>") name
// is.
func (r *Runner) slotsOf(name string) ([]*slot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.slotsOfLocked(name)
}

// slotsOfLocked is slotsOf with r.mu held.
func (r *Runner) slotsOfLocked(name string) ([]*slot, error) {
	if keys, ok := r.units[name]; ok {
		out := make([]*slot, len(keys))
		for i, k := range keys {
			out[i] = r.slots[k]
		}
		return out, nil
	}
	if s, ok := r.slots[name]; ok {
		return []*slot{s}, nil
	}
	// As the CLI and the admin API's other endpoints say it: the closest
	// trigger, and the configured ones.
	hint := ""
	if s := triggers.Suggest(name, r.order); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	}
	if len(r.order) > 0 {
		hint += "; triggers: " + strings.Join(r.order, ", ")
	}
	return nil, fmt.Errorf("%w %s%s", ErrUnknownTrigger, textcut.Quote(name), hint)
}

// slot finds the one slot of name: an unpartitioned trigger or one
// partition's key. A partitioned trigger's name is an error naming its
// partitions' keys.
func (r *Runner) slot(name string) (*slot, error) {
	ss, err := r.slotsOf(name)
	if err != nil {
		return nil, err
	}
	if len(ss) != 1 {
		return nil, fmt.Errorf("trigger %q has %d partitions: name one of them (%s … %s)", name, len(ss), ss[0].t.Key(), ss[len(ss)-1].t.Key())
	}
	return ss[0], nil
}

// Status returns every trigger's status and counters, in configuration
// order: the watch loop's state and counters and the trigger's delivery
// counters (the values of its Prometheus series, read from memory). A
// paused trigger is StatePaused with Paused set.
func (r *Runner) Status() []TriggerStatus {
	r.mu.Lock()
	names := slices.Clone(r.order)
	r.mu.Unlock()
	out := make([]TriggerStatus, 0, len(names))
	for _, name := range names {
		if st, err := r.TriggerStatus(name); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// TriggerStatus returns the status of one trigger, like Status. A
// partitioned trigger's status sums its partitions (see
// TriggerStatus.Partitions); a partition's key gives that partition alone.
func (r *Runner) TriggerStatus(name string) (TriggerStatus, error) {
	// The slots and what the trigger's replaced partitions counted are
	// read together: a repartitioning reload swaps the one for the other
	// under r.mu, and read apart they would count the old partitions
	// twice, or not at all, making the counters fall back.
	r.mu.Lock()
	ss, err := r.slotsOfLocked(name)
	before := r.replaced[name]
	r.mu.Unlock()
	if err != nil {
		return TriggerStatus{}, err
	}
	parts := make([]TriggerStatus, len(ss))
	now := r.opts.Clock.Now()
	for i, s := range ss {
		parts[i] = r.clusterState(s, s.status())
		// A disabled trigger's too: its clocks stand still, and its
		// changehook_watch_wait_seconds_total must not fall back to 0.
		parts[i].Waits = s.waits.status(now)
	}
	st := parts[0]
	if len(ss) > 1 {
		st = combinePartitions(parts, ss[0].t.Partitions)
	}
	c := r.dmet.Counts(st.Name)
	st.Deliveries, st.Attempts, st.DeadLetters, st.InFlight = c.Deliveries, c.Attempts, c.DeadLetters, c.InFlight
	st.BatchSplits = c.BatchSplits
	st.DeadLettersCurrent = r.dl.get(st.Name)
	if name == st.Name { // the whole trigger, not one partition's key
		st.EventsReceived += before.received
		st.Waits = addWaits(st.Waits, &Waits{Stream: before.stream, Delivery: before.delivery})
	}
	return st, nil
}

// Ready reports whether Run has started, every trigger that should run
// (enabled, wanted, not paused) has its change stream open or waits for
// its start_at (StateWaiting: a planned start), and no trigger run here
// is paused by PauseByPayloadErrors (clustered: a unit this member does
// not hold the lease of never counts). A trigger paused by an operator does
// not make the runner unready (it is held on purpose); one paused by its
// payload errors does, because nobody asked for it and it needs a fixed
// configuration (and a rollout of a configuration that breaks a payload
// should stop there).
func (r *Runner) Ready() bool {
	if !r.started.Load() {
		return false
	}
	r.mu.Lock()
	slots := r.orderedSlots()
	r.mu.Unlock()
	for _, s := range slots {
		s.mu.Lock()
		// Clustered: a trigger another member runs is not expected here;
		// one this member should run is, from before its lease is held.
		expected := s.t.Enabled && (s.want || r.opts.Clustered && !r.standby(s.t.Key())) && s.pause == nil
		// A payload-error pause counts only while the unit is held here:
		// clustered, a unit this member does not run (standby, its lease
		// lost) is the running member's to report.
		payloadPaused := s.pause != nil && s.pause.By == PauseByPayloadErrors && (s.want || !r.opts.Clustered)
		s.mu.Unlock()
		if payloadPaused {
			return false
		}
		if !expected {
			continue
		}
		if st := s.status(); !st.StreamOpen && st.State != StateWaiting {
			return false
		}
	}
	return true
}

// standby reports whether another cluster member is meant to run the unit
// key (a trigger name, or a partition's key).
func (r *Runner) standby(key string) bool {
	return r.opts.Clustered && r.opts.Standby != nil && r.opts.Standby(key)
}

// clusterState shows a clustered unit of s that this member does not run
// — stopped because it does not hold the unit's lease, or still running
// on a lease that is no longer valid (a member woken after its lease
// expired, until its lease driver stops the unit: its successor runs it)
// — as StateStandby (another member is meant to run it) or StateStarting
// (this member waits for the lease), with Options.LeaseWait's reason and
// without a circuit. A paused, failed or disabled unit keeps its state,
// except one paused by its payload errors under a lease this member no
// longer runs it under: that pause belongs to the lease (StartLeased), and
// the unit is shown as any other unit not run here.
func (r *Runner) clusterState(s *slot, st TriggerStatus) TriggerStatus {
	if !r.opts.Clustered {
		return st
	}
	s.mu.Lock()
	key, l := s.t.Key(), s.lease
	earlierLease := s.pause != nil && s.pause.By == PauseByPayloadErrors && !s.want
	s.mu.Unlock()
	switch st.State {
	case StateStopped:
	case StatePaused:
		if !earlierLease {
			return st
		}
		// Not this member's to show: the member running the unit shows
		// its own state and way out.
		st.Paused, st.WayOut, st.LastError = nil, "", ""
	case StateStarting, StateRunning, StateRetrying, StateWaiting:
		if l == nil || l.Valid() {
			return st
		}
	default:
		return st
	}
	if r.standby(key) {
		st.State = StateStandby
	} else {
		st.State = StateStarting
	}
	// Not run here: a circuit of a watcher still stopping, which may not
	// deliver or probe any more, is not the endpoint's state.
	st.Circuit = nil
	if r.opts.LeaseWait != nil {
		if member, until, reason := r.opts.LeaseWait(key); reason != "" {
			st.LeaseWait = &LeaseWait{Member: member, Until: until, Reason: reason}
		}
	}
	return st
}
