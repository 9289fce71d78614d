package runner

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/version"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// PauseInfo says who paused a trigger, why and since when.
type PauseInfo struct {
	// Reason is the free text given with the pause ("" if none).
	Reason string `json:"reason,omitempty"`
	// By names who paused: "cli", "api", PauseByPayloadErrors, …
	By string `json:"by,omitempty"`
	// Since is when the pause was recorded.
	Since time.Time `json:"since"`
}

// ResumeFrom says where Resume continues. The zero value continues from the
// trigger's checkpoint, so every event held by the pause is delivered.
type ResumeFrom struct {
	// Now moves the checkpoint to now (the range passed over is reported
	// by Resume): the changes after the old checkpoint not delivered yet
	// are left undelivered, and are not dead-lettered either.
	Now bool
	// Time continues from the first change at or after Time (when not
	// zero and Now is false); it must still be in the oplog, not be after
	// the server's current time (ErrFutureTime) and not be before the
	// trigger's checkpoint (ErrRewind: Redeliver delivers changes again).
	Time time.Time
}

// ParseResumeFrom parses the --from / "from" value: "" (continue from the
// checkpoint), "now", or an RFC 3339 time.
func ParseResumeFrom(s string) (ResumeFrom, error) {
	switch s {
	case "":
		return ResumeFrom{}, nil
	case "now":
		return ResumeFrom{Now: true}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return ResumeFrom{}, fmt.Errorf("parse resume position: want now or an RFC 3339 time such as 2025-01-31T12:00:00Z, not %q", s)
	}
	return ResumeFrom{Time: t}, nil
}

// IsCheckpoint reports whether f is the zero value (continue from the
// checkpoint).
func (f ResumeFrom) IsCheckpoint() bool { return !f.Now && f.Time.IsZero() }

// String returns "checkpoint", "now" or the RFC 3339 time.
func (f ResumeFrom) String() string {
	switch {
	case f.Now:
		return "now"
	case !f.Time.IsZero():
		return f.Time.UTC().Format(time.RFC3339)
	}
	return "checkpoint"
}

// slot is one trigger of the runner and its supervision state. Every field
// except the atomics is guarded by mu.
type slot struct {
	// waits adds up, across its watchers, the time the unit's watch loop
	// waited for the change stream and for its dispatcher (backpressure).
	waits watchWaits

	mu    sync.Mutex
	t     *triggers.Trigger
	want  bool       // the supervisor wants it running (Start/Stop)
	pause *PauseInfo // non-nil while paused
	// pauseDoc is the control document pause was read from ("" when Pause
	// set it): that document's newer pause replaces its details.
	pauseDoc string
	// pauseLease is the fence of the lease a payload-error pause was set
	// under (pauseLeased false: none, or not such a pause): it belongs to
	// that lease and is dropped when the unit starts under another
	// (StartLeased).
	pauseLease  store.Fence
	pauseLeased bool
	// repaused is, per control document, the newest pause request this
	// unit saw and the pause it had before (nil: none), for the request's
	// result.
	repaused map[string]repause
	failed   bool      // its last watcher ended permanently: not restarted until Restart/Resume
	holds    int       // control operations holding it stopped
	cur      *instance // the running (or stopping) watcher, nil when none
	lease    Lease     // the cluster lease it runs under (StartLeased), nil when none
	// holdFor is what the newest of the holds holds it for ("skip by
	// cli", "reload"; "" when none does), which the log of the watcher a
	// hold stops gives as the cause (see heldFor).
	holdFor string
	// rewrite holds the unit stopped while a control request rewriting its
	// checkpoint is pending for it: control document → request id.
	rewrite map[string]string
	// applied is this Runner's result of the newest control request it
	// applied to the unit, per control document.
	applied map[string]store.UnitResult
	// lifted is, per control document, the id of the newest resume request
	// that lifted a pause or a permanent failure of the unit here: a resume
	// from the checkpoint that lifted neither changed nothing.
	lifted map[string]string
	// ctl is closed when the control request being applied to the unit
	// has been applied and recorded (nil when none is).
	ctl chan struct{}
	// unread holds the unit stopped (Options.Controls) until its control
	// documents — its trigger's and its own key's — have been read once
	// and their pause applied: a paused unit never delivers before its
	// pause is known, whatever the state database does. unreadErr is why
	// the last read failed ("" when none did; shown as the unit's
	// LastError while it waits), unreadErrAt when.
	unread      bool
	unreadErr   string
	unreadErrAt time.Time

	// since is when the unit was added (the Runner's start, or the reload
	// that added it): the Since of the states it shows before its first
	// watcher starts (starting, stopped, standby).
	since time.Time

	last atomic.Pointer[Watcher] // the newest watcher, for Status
	// received counts the events read by the unit's earlier watchers (a
	// new one starts after a reload change, a pause, a control or a lease
	// regained), so that its events_received continues across them.
	received uint64
	err      atomic.Pointer[TriggerStatus] // status of a trigger whose dispatcher could not start
	// known is the checkpoint the unit's watchers last saved or loaded
	// (nil: none yet), written again when the checkpoint vanished (see
	// knownCheckpoints).
	known atomic.Pointer[store.Checkpoint]
	// startNow is the unit's "now" of start_at: now, shared by its
	// watchers (see Watcher.startNow).
	startNow atomic.Pointer[bson.Timestamp]
}

// instance is one run of a trigger's watcher.
type instance struct {
	w        *Watcher
	cancel   context.CancelFunc
	done     chan struct{} // closed when the watcher's Run returned
	stopping bool          // canceled on purpose (guarded by the slot's mu)
	// resumed is set (under the slot's mu) when a resume cleared the
	// permanent failure of a watcher still finishing its deliveries: its
	// end then does not mark the slot failed, and a new watcher starts.
	resumed bool
}

// requestedBy is the why of a hold for control kind requested by by
// ("skip by cli").
func requestedBy(kind, by string) string { return kind + " by " + cmp.Or(by, "unknown") }

// addHold holds s stopped for why (see holdFor); s.mu must be held, and
// reconcile called after.
func (s *slot) addHold(why string) {
	s.holds++
	s.holdFor = why
}

// releaseHold ends a hold of addHold; s.mu must be held, and reconcile
// called after.
func (s *slot) releaseHold() {
	s.holds--
	if s.holds == 0 {
		s.holdFor = ""
	}
}

// heldFor says why s is stopped although it should run, for the log of
// its watcher (Watcher.restarting): what a control or reload holds it for.
// s.mu must be held.
func (s *slot) heldFor() string {
	switch {
	case s.holds > 0 && s.holdFor != "":
		return s.holdFor
	case len(s.rewrite) > 0:
		return "a pending resume --from or redeliver request"
	}
	return "a control or reload"
}

// stopsAtOnce says why s's watcher, which should no longer run, stops its
// deliveries at once (Watcher.stopNow, dispatcher.Stop: the attempts on
// the wire finish, nothing else is sent, retried or dead-lettered) rather
// than letting them finish within the grace period: a pause ("pause"), a
// reload that disables the trigger ("disable"), or a control or reload
// that holds it (heldFor). "" when its deliveries drain: the trigger is
// stopped (Stop: its lease ended or was handed off, a reload removed it)
// or failed. s.mu must be held.
func (s *slot) stopsAtOnce() string {
	switch {
	case !s.want || s.failed:
		return ""
	case s.pause != nil:
		return "pause"
	case !s.t.Enabled:
		return "disable"
	case s.holds > 0 || len(s.rewrite) > 0:
		return s.heldFor()
	}
	return ""
}

// shouldRun reports whether s should have a watcher; s.mu must be held.
func (r *Runner) shouldRun(s *slot) bool {
	return s.t.Enabled && s.want && s.pause == nil && !s.failed && s.holds == 0 && len(s.rewrite) == 0 && !s.unread
}

// reconcile starts or stops s's watcher to match shouldRun; s.mu must be
// held. A new watcher starts only once the previous one has stopped (its
// exit calls reconcile again).
func (r *Runner) reconcile(s *slot) {
	if s.cur != nil {
		if !r.shouldRun(s) && !s.cur.stopping {
			s.cur.stopping = true
			// Stopped only to be held by a control or a reload (not
			// disabled, unwanted, paused or failed): it starts again as
			// soon as that is done.
			if s.t.Enabled && s.want && s.pause == nil && !s.failed {
				why := s.heldFor()
				s.cur.w.restarting.Store(&why)
			}
			if why := s.stopsAtOnce(); why != "" {
				s.cur.w.stopNow.Store(&why)
			}
			s.cur.cancel()
		}
		return
	}
	if !r.shouldRun(s) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runCtx == nil || r.closing || r.runCtx.Err() != nil {
		return
	}
	r.startLocked(s)
}

// startLocked creates s's dispatcher and watcher and runs it; s.mu and r.mu
// must be held, Run running.
func (r *Runner) startLocked(s *slot) {
	t := s.t
	log := r.log.With("trigger", t.Name)
	dopts := []dispatcher.Option{dispatcher.WithUserAgent(version.UserAgent(r.opts.Version)), dispatcher.WithLogger(r.log), dispatcher.WithClock(r.opts.Clock), dispatcher.WithMetrics(r.dmet), dispatcher.WithLimiters(r.limits)}
	if r.opts.HTTPClient != nil {
		dopts = append(dopts, dispatcher.WithHTTPClient(r.opts.HTTPClient))
	}
	if r.budget != nil {
		dopts = append(dopts, dispatcher.WithSharedByteBudget(r.budget))
	}
	// Always, but active only while a writer is in use: the writer is
	// looked up at each attempt, so a reload that turns the history on or
	// off applies to running triggers too, and while it is off deliveries
	// do no work for it.
	dopts = append(dopts, dispatcher.WithActiveObserver(r.HistoryObserver(t.Name, historyPartition(t), store.KindDelivery, ""), r.HistoryOn))
	if r.opts.DispatcherOptions != nil {
		dopts = append(dopts, r.opts.DispatcherOptions(t)...)
	}
	dopts = append(dopts, dispatcher.WithPayloadErrorPause(func(reason string) {
		_ = r.Pause(t.Name, reason, PauseByPayloadErrors) // t is a trigger of r: never ErrUnknownTrigger
	}))
	dopts = append(dopts, dispatcher.WithBatchedHeld(batchedHeld), dispatcher.WithSubmitWait(&s.waits.delivery))
	leaseOpts, sink, cps, deadline := r.leased(s)
	dopts = append(dopts, leaseOpts...)
	disp, err := dispatcher.New(t, refreshingSink{sink, r}, dopts...)
	if err != nil {
		r.dmet.ForgetCircuitState(t) // no dispatcher: no circuit
		log.Error("trigger failed", "reason", err.Error())
		now := r.opts.Clock.Now()
		s.failed = true
		s.err.Store(&TriggerStatus{Name: t.Name, Namespace: t.Namespace(), State: StateFailed, Since: now,
			LastError: fmt.Sprintf("start dispatcher: %v", err), LastErrorAt: now,
			WayOut: "fix the trigger in the configuration and reload (kill -HUP, or POST /api/reload)"})
		return
	}
	cps = knownCheckpoints{CheckpointStore: cps, s: s, log: watcherLogger(r.log, t), now: r.opts.Clock.Now}
	w := NewWatcher(t, r.client, cps, disp, WatcherOptions{
		Logger:                 r.log,
		Clock:                  r.opts.Clock,
		CheckpointEvery:        r.opts.CheckpointEvery,
		CheckpointInterval:     r.opts.CheckpointInterval,
		IdleCheckpointInterval: r.opts.IdleCheckpointInterval,
		Metrics:                r.metrics,
		ShutdownGrace:          r.opts.ShutdownGrace,
		Deadline:               deadline,
		StreamWait:             &s.waits.stream,
		Dev:                    r.opts.Dev,
	})
	w.startNow = &s.startNow
	if prev := s.last.Load(); prev != nil {
		// Stopped (a new watcher starts only then): its failing saves go
		// on in this one if it loads the same checkpoint.
		w.failedBefore, w.failedBeforeAt = prev.checkpointFailureLeft()
	}
	runCtx := r.runCtx
	ctx, cancel := context.WithCancel(runCtx)
	inst := &instance{w: w, cancel: cancel, done: make(chan struct{})}
	s.cur = inst
	s.err.Store(nil)
	s.retireLast()
	s.last.Store(w)
	r.wg.Go(func() {
		defer close(inst.done)
		defer cancel()
		err := w.Run(ctx)
		if runCtx.Err() != nil { // stopped by the process's shutdown
			r.unfinished.Add(w.unfinished.Load())
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			log.Error("trigger stopped after a permanent failure; the other triggers keep running", "error", err)
			if !inst.stopping && !inst.resumed {
				s.failed = true
			}
		}
		if s.pause == nil && !s.failed {
			// Not held here (stopped, standby, restarting, shutting
			// down): no event of it waits here, so its lag is not left
			// at the value it had when it stopped.
			w.clearLag()
		}
		// Whatever stopped it (paused and failed too): its dispatcher
		// is closed, so its circuit probes nothing any more, and the
		// next watcher's circuit starts closed. Its last state (open,
		// say) must not stay exported, as Status no longer shows it.
		r.dmet.ForgetCircuitState(t)
		if s.cur == inst {
			s.cur = nil
		}
		r.reconcile(s)
	})
}

// clearFailure lifts s's permanent failure, also one its watcher has shown
// but not yet ended with (it waits for the deliveries already submitted):
// that watcher's end then starts a new one instead of marking s failed.
// s.mu must be held.
func (s *slot) clearFailure() {
	s.failed = false
	if s.cur != nil && !s.cur.stopping && s.cur.w.failedPermanently() {
		s.cur.resumed = true
	}
}

// key returns the unit's checkpoint key (s.mu must not be held).
func (s *slot) key() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.t.Key()
}

// failedNow reports whether s has a permanent failure clearFailure would
// lift; s.mu must be held.
func (s *slot) failedNow() bool {
	return s.failed || s.cur != nil && !s.cur.stopping && s.cur.w.failedPermanently()
}

// retireLast adds the events the slot's newest watcher read, which has
// stopped, to s.received before it is replaced; s.mu must be held.
func (s *slot) retireLast() {
	if w := s.last.Load(); w != nil {
		s.received += w.eventsReceived()
	}
}

// total is the number of events every watcher of the slot read; s.mu must
// be held.
func (s *slot) total() uint64 {
	n := s.received
	if w := s.last.Load(); w != nil {
		n += w.eventsReceived()
	}
	return n
}

// status returns the slot's status without the delivery counters.
func (s *slot) status() TriggerStatus {
	s.mu.Lock()
	t, pause, want, failed := s.t, s.pause, s.want, s.failed
	last, received := s.last.Load(), s.received
	unreadErr, unreadErrAt := "", time.Time{}
	if s.unread {
		unreadErr, unreadErrAt = s.unreadErr, s.unreadErrAt
	}
	s.mu.Unlock()
	var st TriggerStatus
	switch {
	case !t.Enabled:
		return TriggerStatus{Name: t.Name, Namespace: t.Namespace(), State: StateDisabled, EventsReceived: received}
	case s.err.Load() != nil:
		st = *s.err.Load()
	case last != nil:
		st = last.Status()
	case !want:
		st = TriggerStatus{Name: t.Name, Namespace: t.Namespace(), State: StateStopped, Since: s.since}
	default:
		st = TriggerStatus{Name: t.Name, Namespace: t.Namespace(), State: StateStarting, Since: s.since}
	}
	st.EventsReceived += received
	if unreadErr != "" {
		// Held until its pause can be read: it starts by itself then.
		st.LastError, st.LastErrorAt = unreadErr, unreadErrAt
	}
	if pause != nil {
		p := *pause
		st.State, st.Since, st.Paused = StatePaused, p.Since, &p
		if p.By == PauseByPayloadErrors {
			st.WayOut = PayloadErrorsWayOut(t.Name)
		}
	} else if !want && !failed && st.State != StateFailed {
		st.State = StateStopped
	}
	return st
}

// Start marks the trigger wanted and starts its watcher if it may run (see
// the package documentation); it returns without waiting for the stream to
// open. Starting a running trigger does nothing. On a partitioned trigger
// it applies to every partition; name may also be one partition's key.
// Control requests recorded while it was stopped (a redeliver, say) are
// then applied, as on StartLeased.
func (r *Runner) Start(name string) error {
	ss, err := r.slotsOf(name)
	if err != nil {
		return fmt.Errorf("start trigger: %w", err)
	}
	for _, s := range ss {
		s.mu.Lock()
		s.want = true
		r.reconcile(s)
		s.mu.Unlock()
	}
	// Control requests pending for the trigger are now this runner's to
	// apply; until one is, the controls goroutine holds the trigger.
	r.pokeControls()
	return nil
}

// Stop marks the trigger unwanted and stops its watcher: it stops reading,
// lets in-flight deliveries finish within the shutdown grace period and
// saves its checkpoint. Stop waits until the watcher has stopped, and a
// control request being applied to the trigger has been recorded, or ctx
// ends (the watcher then still stops in the background). On a partitioned
// trigger it applies to every partition; name may also be one partition's
// key.
func (r *Runner) Stop(ctx context.Context, name string) error {
	ss, err := r.slotsOf(name)
	if err != nil {
		return fmt.Errorf("stop trigger: %w", err)
	}
	var dones []<-chan struct{}
	for _, s := range ss {
		s.mu.Lock()
		s.want = false
		r.reconcile(s)
		dones = append(dones, s.doneChan())
		if s.ctl != nil {
			dones = append(dones, s.ctl) // a control request being applied finishes first
		}
		s.mu.Unlock()
	}
	if err := waitAll(ctx, dones); err != nil {
		return fmt.Errorf("stop trigger %s: %w", name, err)
	}
	return nil
}

// Restart stops the trigger's watcher (waiting as Stop does), clears a
// permanent failure and starts it again from its checkpoint, unless it is
// paused, disabled or unwanted. On a partitioned trigger it applies to
// every partition.
func (r *Runner) Restart(ctx context.Context, name string) error {
	return r.holding(ctx, name, "restart trigger", func(ss []*slot) error {
		for _, s := range ss {
			s.mu.Lock()
			s.failed = false
			s.mu.Unlock()
		}
		return nil
	})
}

// Pause holds the trigger: see the package documentation. It returns
// without waiting for the watcher to stop, so it may be called from any
// goroutine, including the trigger's own dispatcher workers. Pausing a
// paused trigger keeps the first pause's information (a pause request of
// the controls, in contrast, shows its own: see pauseFromControl). On a
// partitioned trigger it pauses every partition.
func (r *Runner) Pause(name, reason, by string) error {
	ss, err := r.slotsOf(name)
	if err != nil {
		return fmt.Errorf("pause trigger: %w", err)
	}
	since := r.opts.Clock.Now()
	logged := false
	for _, s := range ss {
		s.mu.Lock()
		if by == PauseByPayloadErrors && r.opts.Clustered && !s.want {
			// Not held here: another member runs the unit (the trigger's
			// other partitions, or a delivery draining after Stop), which
			// meets its payload itself and pauses it there.
			s.mu.Unlock()
			continue
		}
		if s.pause == nil {
			s.pause, s.pauseDoc = &PauseInfo{Reason: reason, By: by, Since: since}, ""
			s.pauseLeased = by == PauseByPayloadErrors && s.lease != nil
			if s.pauseLeased {
				s.pauseLease = s.lease.Fence()
			}
			if !logged {
				r.log.Warn("trigger paused", "trigger", name, "by", by, "reason", reason)
				logged = true
			}
			r.reconcile(s)
		}
		s.mu.Unlock()
	}
	return nil
}

// Paused returns the trigger's pause, ok false when it is not paused (for a
// partitioned trigger: the first paused partition's).
func (r *Runner) Paused(name string) (p PauseInfo, ok bool, err error) {
	ss, err := r.slotsOf(name)
	if err != nil {
		return PauseInfo{}, false, fmt.Errorf("paused: %w", err)
	}
	for _, s := range ss {
		s.mu.Lock()
		pause := s.pause
		s.mu.Unlock()
		if pause != nil {
			return *pause, true, nil
		}
	}
	return PauseInfo{}, false, nil
}

// Skipped is the range of the stream a Resume from now or from a time
// jumped over, for the history: the changes in it not delivered yet are
// left undelivered, and the resume does not dead-letter them either (those
// delivered or dead-lettered before stay so). From is the old checkpoint's position
// (cluster time, or the time its resume token opens with, or when it was
// saved when neither is known; zero when the trigger had no checkpoint),
// To the new position (the time resumed from; for now, the time the new
// position's resume token opens with, by the server's clock).
type Skipped struct {
	// From is where the old checkpoint stood: the unit's own, or, when it
	// had none because the trigger's partitions changed without its
	// checkpoints carried over, the oldest checkpoint of the previous
	// partitioning (the one it would have resumed from). Zero when there
	// was neither: no range was passed over from a checkpoint.
	From time.Time
	// To is where the trigger continues.
	To time.Time
	// Back is set when the old checkpoint was after To (a checkpoint
	// ahead of the server's clock, after a clock fault, met by a resume
	// from now): nothing was skipped; the trigger moved back to To and
	// delivers every change from there.
	Back bool
}

// Resume lifts the trigger's pause (and a permanent failure) and runs it
// again. With the zero ResumeFrom it continues from its checkpoint: nothing
// written during the pause is lost. With from.Now or from.Time it first
// waits for the old watcher to stop (until ctx ends), moves the checkpoint to
// that position (every change before it not delivered yet is left
// undelivered, not dead-lettered) and returns the range passed over, which it
// also records in the history (Options.History); a time
// in the future or before the checkpoint is refused and changes nothing
// (see ResumeFrom.Time).
// Resuming a trigger that is not paused from its checkpoint does nothing but
// clear a permanent failure. On a partitioned trigger it applies to every
// partition; the range passed over then runs from the oldest partition
// checkpoint to the newest new position, over the partitions that moved
// forward. When none did (every checkpoint was ahead of the server's clock,
// met by a resume from now), the returned Skipped has Back set, From the
// oldest of those checkpoints and To the newest new position, and no range
// passed over is logged.
//
// Resume lifts the pause this process holds. A pause recorded in the state
// database's runtime controls (changehook pause, the admin API, another
// member) is read again at the next controls read and pauses the trigger
// again: lift it with a resume request recorded there (RequestControl),
// which every member applies.
func (r *Runner) Resume(ctx context.Context, name string, from ResumeFrom) (Skipped, error) {
	var skipped Skipped
	if from.IsCheckpoint() {
		ss, err := r.slotsOf(name)
		if err != nil {
			return skipped, fmt.Errorf("resume trigger: %w", err)
		}
		for i, s := range ss {
			s.mu.Lock()
			if s.pause != nil && i == 0 {
				r.log.Info("trigger resumed", "trigger", name, "from", from.String())
			}
			s.pause = nil
			s.clearFailure()
			r.reconcile(s)
			s.mu.Unlock()
		}
		return skipped, nil
	}
	err := r.holding(ctx, name, "resume trigger", func(ss []*slot) error {
		// Every partition is checked before any moves: one refused must
		// leave the others as they were.
		plans := make([]resumePlan, len(ss))
		for i, s := range ss {
			p, err := r.planResume(ctx, s, from)
			if err != nil {
				return err
			}
			plans[i] = p
		}
		var back Skipped // the range of the units that moved back
		moved := 0
		for _, p := range plans {
			sk, err := r.applyResume(ctx, p, from, "")
			if err != nil {
				return err
			}
			if sk.Back {
				// Nothing skipped there (applyResume logged it).
				if back.From.IsZero() || sk.From.Before(back.From) {
					back.From = sk.From
				}
				if sk.To.After(back.To) {
					back.To = sk.To
				}
				continue
			}
			moved++
			if !sk.From.IsZero() && (skipped.From.IsZero() || sk.From.Before(skipped.From)) {
				skipped.From = sk.From
			}
			if sk.To.After(skipped.To) {
				skipped.To = sk.To
			}
		}
		if moved == 0 {
			back.Back = true
			skipped = back
			return nil
		}
		r.log.Warn(passedOverLog, append([]any{"trigger", name, "from", from.String()}, skippedAttrs(skipped)...)...)
		return nil
	})
	return skipped, err
}

// holding stops the watchers of the trigger's units (every partition, or
// the one partition name is the key of) and keeps them stopped while f
// runs: see hold, whose why is action. Its error starts with action and
// the trigger's name.
func (r *Runner) holding(ctx context.Context, name, action string, f func(ss []*slot) error) error {
	ss, err := r.slotsOf(name)
	if err != nil {
		return fmt.Errorf("%s: %w", action, err) // the error names the trigger
	}
	if err := r.hold(ctx, ss, action, f); err != nil {
		return fmt.Errorf("%s %s: %w", action, name, err)
	}
	return nil
}

// hold stops the watchers of the units ss and keeps them stopped (waiting
// until they have stopped or ctx ends) while f runs, then lets them run
// again if they should. why says what for ("skip by cli"; see
// requestedBy): the watchers it stops log the deliveries they cut off with
// it as the cause. It needs Run to be running, so that no other watcher of
// the trigger can appear while f rewrites its state. Its error
// (f's, or why it could not hold them) names neither the action nor the
// trigger: holding's caller, or RequestControl for a control request's
// result, says them once.
func (r *Runner) hold(ctx context.Context, ss []*slot, why string, f func(ss []*slot) error) error {
	r.mu.Lock()
	running := r.runCtx != nil && !r.closing
	r.mu.Unlock()
	if !running {
		return ErrNotRunning
	}
	dones := make([]<-chan struct{}, len(ss))
	for i, s := range ss {
		s.mu.Lock()
		s.addHold(why)
		r.reconcile(s)
		dones[i] = s.doneChan()
		s.mu.Unlock()
	}
	defer func() {
		for _, s := range ss {
			s.mu.Lock()
			s.releaseHold()
			r.reconcile(s)
			s.mu.Unlock()
		}
	}()
	if err := waitAll(ctx, dones); err != nil {
		return err
	}
	return f(ss)
}

// waitAll waits until every channel is closed or ctx ends; see waitDone.
func waitAll(ctx context.Context, dones []<-chan struct{}) error {
	for _, d := range dones {
		if err := waitDone(ctx, d); err != nil {
			return err
		}
	}
	return nil
}

// doneChan returns a channel closed once the slot's current watcher has
// stopped (already closed when none runs); s.mu must be held.
func (s *slot) doneChan() <-chan struct{} {
	if s.cur == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return s.cur.done
}

// waitDone waits until done (a watcher's) is closed or ctx ends; the
// error says what it waited for, the caller what for.
func waitDone(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the watcher to stop: %w", ctx.Err())
	}
}

// historyPartition is the partition a history record names: "p<i>of<N>" for
// one partition of a partitioned trigger, "" otherwise.
func historyPartition(t *triggers.Trigger) string {
	if _, ok := t.PartitionIndex(); ok {
		_, part, _ := strings.Cut(t.Key(), "/")
		return part
	}
	return ""
}
