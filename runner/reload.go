package runner

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// ReloadResult says what Reload did, by trigger name.
type ReloadResult struct {
	// Added triggers were started (when enabled).
	Added []string `json:"added"`
	// Removed triggers were stopped; their checkpoints are kept.
	Removed []string `json:"removed"`
	// Changed triggers were restarted from their checkpoints with the new
	// definition.
	Changed []string `json:"changed"`
	// Unchanged triggers were not touched.
	Unchanged []string `json:"unchanged"`
	// RestartNeeded names the settings outside the triggers (mongodb.uri,
	// admin, cluster, …) that the new configuration changes and that apply
	// only after a restart. Reload leaves it empty: the caller that
	// compares the configurations fills it.
	RestartNeeded []string `json:"restart_needed,omitempty"`
}

// Reload replaces the triggers with cfg's, a configuration as
// triggers.Parse validated it: a trigger whose definition is unchanged is
// not touched (its watcher keeps running, no event is delayed); a changed one
// is stopped (in-flight deliveries finish within the grace period, the
// checkpoint is saved) and started again from its checkpoint with the new
// definition, keeping a pause; a removed one is stopped and its checkpoint
// and dead letters are kept; a new one starts (with Options.Controls, once
// its control documents were read: a paused one starts paused; until they
// can be read it is held, see Options.Controls). Settings outside the triggers
// (mongodb, state, admin, cluster, limits, checkpoint) keep the values the
// Runner was created with. Reload waits (until ctx ends) for the stops,
// which run in parallel (one grace period at most, however many triggers
// change); reloads are applied one at a time. When ctx ends first, Reload
// returns its error at once, with what it set out to do, and changes
// nothing: every trigger keeps its definition and those it was stopping
// run again, as before (Units says what the Runner has). In a
// clustered runner the caller stops the lease drivers of removed triggers,
// and of changed ones whose cluster definition hash changes, before it:
// those triggers stop then, under their old definitions, and are not
// started again here. It starts lease drivers for them and for added
// triggers after it, with the definitions the Runner has (see
// cluster.Driver).
func (r *Runner) Reload(ctx context.Context, cfg *triggers.Config) (ReloadResult, error) {
	if cfg == nil {
		return ReloadResult{}, fmt.Errorf("reload: nil config")
	}
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	if err := ctx.Err(); err != nil {
		// Gone before it began (the caller gave up while another reload
		// ran): no trigger is stopped only to be started again.
		return ReloadResult{}, fmt.Errorf("reload: %w", err)
	}

	res := r.Diff(cfg)
	byName := map[string]*triggers.Trigger{}
	for _, t := range cfg.Triggers {
		byName[t.Name] = t
	}
	r.mu.Lock()
	oldSlots := map[string][]*slot{}
	for _, name := range append(append([]string(nil), res.Removed...), res.Changed...) {
		for _, key := range r.units[name] {
			oldSlots[name] = append(oldSlots[name], r.slots[key])
		}
	}
	r.mu.Unlock()

	// Every watcher to stop is told at once, then waited for: the stops
	// run in parallel, so a reload that changes many triggers with slow
	// in-flight deliveries takes one grace period, not one per trigger
	// (which would outlast the caller's deadline, and keep the triggers
	// stopped first waiting for the last).
	//
	// A removed or repartitioned trigger's slots are stopped for good
	// (unwanted); a changed trigger's, with as many units, are held while
	// their definitions are swapped. Each stopping slot is recorded with
	// the want it had: a Reload that does not finish changes nothing, so
	// the held slots run again with their old definitions and the
	// unwanted ones are wanted again as before (one still stopping starts
	// again once stopped). Left unwanted, such a trigger would stay
	// stopped while the Runner still has it, and a later Reload with its
	// definition would find it unchanged and leave it stopped.
	type stopping struct {
		name string
		s    *slot
		want bool // the want it had (unwanted ones)
		held bool // held to swap its definition (else unwanted)
		done <-chan struct{}
	}
	var stops []stopping
	finished := false
	defer func() {
		if finished {
			return
		}
		for _, st := range stops {
			st.s.mu.Lock()
			if st.held {
				st.s.releaseHold()
			} else {
				st.s.want = st.want
			}
			r.reconcile(st.s)
			st.s.mu.Unlock()
		}
	}()
	stop := func(name string, s *slot, held bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		st := stopping{name: name, s: s, want: s.want, held: held}
		if held {
			s.addHold("reload")
		} else {
			s.want = false
		}
		r.reconcile(s)
		st.done = s.doneChan()
		stops = append(stops, st)
	}
	for _, name := range res.Removed {
		for _, s := range oldSlots[name] {
			stop(name, s, false)
		}
	}
	var fresh []string // triggers whose slots are created anew: added or repartitioned
	fresh = append(fresh, res.Added...)
	repartitioned := map[string]bool{}
	for _, name := range res.Changed {
		held := len(byName[name].Units()) == len(oldSlots[name])
		if !held {
			repartitioned[name] = true
			fresh = append(fresh, name)
		}
		for _, s := range oldSlots[name] {
			stop(name, s, held)
		}
	}
	for _, st := range stops {
		if err := waitDone(ctx, st.done); err != nil {
			return res, fmt.Errorf("reload: stop trigger %s: %w", st.name, err)
		}
	}
	finished = true // from here on nothing fails: the stops are final

	for _, name := range res.Removed {
		r.log.Info("trigger removed by reload; its checkpoint is kept", "trigger", name)
	}
	for _, name := range res.Changed {
		t, ss := byName[name], oldSlots[name]
		paused := slices.ContainsFunc(ss, func(s *slot) bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.pause != nil
		})
		wasEnabled := slices.ContainsFunc(ss, func(s *slot) bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.t.Enabled
		})
		if !t.Enabled {
			// Stopped for good (or still not started): no restart to tell of.
			if wasEnabled {
				r.log.Info("trigger disabled by reload; stopped, its checkpoint is kept", "trigger", name)
			} else {
				r.log.Info("trigger changed by reload; still disabled: the new definition starts from its checkpoint when a reload enables it", "trigger", name)
			}
		}
		if repartitioned[name] {
			if t.Enabled {
				r.logRepartitioned(ctx, t, paused)
			}
			continue
		}
		// Swap the held partitions' definitions, let them run again.
		units := t.Units()
		for i, s := range ss {
			s.mu.Lock()
			s.t, s.failed = units[i], false
			s.err.Store(nil)
			if !t.Enabled {
				s.retireLast()
				s.last.Store(nil)
			}
			s.releaseHold()
			r.reconcile(s)
			s.mu.Unlock()
		}
		running := slices.ContainsFunc(ss, func(s *slot) bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return r.shouldRun(s)
		})
		switch {
		case !t.Enabled: // logged above
		case paused:
			r.log.Info("trigger changed by reload; paused: the new definition starts from its checkpoint when the trigger is resumed", "trigger", name)
		case (running || !r.opts.Clustered) && !wasEnabled:
			r.log.Info("trigger enabled by reload; started from its checkpoint", "trigger", name)
		case running || !r.opts.Clustered:
			r.log.Info("trigger changed by reload; restarted from its checkpoint", "trigger", name)
		default:
			r.log.Info("trigger changed by reload; not running here now: the new definition starts from its checkpoint when this member runs it under its lease", "trigger", name)
		}
	}

	// What the new partitions of a repartitioned trigger inherit from its
	// old ones (stopped for good above), read before r.mu is taken: a
	// slot's lock comes before r.mu (reconcile), never inside it.
	type inherited struct {
		pause    *PauseInfo
		pauseDoc string
		received uint64
		waits    *Waits
	}
	inherit := map[string]inherited{}
	now := r.opts.Clock.Now()
	for _, name := range fresh {
		// Repartitioned: the new partitions keep the trigger's pause.
		// Its events_received continues with the old partitions' events,
		// and its wait totals (counters) with the old partitions' waits.
		var in inherited
		for _, old := range oldSlots[name] {
			old.mu.Lock()
			if old.pause != nil && in.pause == nil {
				p := *old.pause
				in.pause = &p
				if old.pauseDoc == name {
					in.pauseDoc = name // the trigger's document, which the new partitions read too
				}
			}
			in.received += old.total()
			in.waits = addWaits(in.waits, old.waits.status(now))
			old.mu.Unlock()
		}
		inherit[name] = in
	}

	r.mu.Lock()
	drop := func(name string) {
		for _, key := range r.units[name] {
			delete(r.slots, key)
		}
		delete(r.units, name)
	}
	for _, name := range res.Removed {
		drop(name)
		delete(r.replaced, name)
		r.dmet.Forget(name)
		r.metrics.forget(name)
	}
	var added []*slot
	for _, name := range fresh {
		in := inherit[name]
		if in.received != 0 || in.waits != nil {
			tot := r.replaced[name]
			tot.received += in.received
			if in.waits != nil { // the old partitions wait no more: no DeliverySince
				tot.stream += in.waits.Stream
				tot.delivery += in.waits.Delivery
			}
			r.replaced[name] = tot
		}
		drop(name)
		// A repartitioned trigger's per-partition series describe units
		// that no longer exist (partition "3" of 4 has no successor among
		// 2): they are deleted before the new units' series start at
		// zero. Its delivery series are per trigger and continue; so do
		// its circuits' transitions, but not their per-partition states.
		r.metrics.forget(name)
		t := byName[name]
		r.dmet.ForgetCircuitState(t)
		for _, u := range t.Units() {
			// Held until its control documents are read (the controls
			// goroutine, poked below, reads them): it may be paused.
			s := &slot{t: u, want: !r.opts.StartStopped, pause: in.pause, pauseDoc: in.pauseDoc, unread: r.opts.Controls, since: r.opts.Clock.Now()}
			r.slots[u.Key()] = s
			r.units[name] = append(r.units[name], u.Key())
			added = append(added, s)
		}
		r.initSeries(t)
	}
	r.order = r.order[:0:0]
	for _, t := range cfg.Triggers {
		r.order = append(r.order, t.Name)
	}
	r.cfg = cfg
	r.mu.Unlock()
	// The triggers still drawing from a removed endpoint's limiter were
	// stopped or restarted above (their definition changed with it).
	r.limits.Retain(cfg)
	for _, s := range added {
		s.mu.Lock()
		r.reconcile(s)
		s.mu.Unlock()
	}
	for _, name := range res.Added {
		r.log.Info("trigger added by reload", "trigger", name, "enabled", byName[name].Enabled)
	}
	if len(res.Added) > 0 {
		// An added trigger shows the dead letters it kept from before
		// (removed, or run by another process) at once, not after the
		// next count.
		if err := r.RecountDeadLetters(ctx, res.Added...); err != nil {
			r.log.Warn("reload: cannot count the added triggers' dead letters; counted again shortly", "error", err)
		}
	}
	r.RefreshDeadLetters()    // and the removed triggers' counts are dropped
	r.forgetRemovedControls() // their control documents stay in the state database
	r.pokeControls()          // new units take the pending control requests
	return res, nil
}

// logRepartitioned logs what a reload that changed t's partitions does:
// its new partitions start from their checkpoints, but those without one
// of their own refuse to start (each fails, see Watcher.otherLayout) while
// only another partitioning's checkpoints exist, as after a change of
// partitions in the configuration without `checkpoints repartition`. When
// the checkpoints cannot be listed here it logs only that the partitions
// changed: each partition without a checkpoint lists them again itself
// before it starts (Watcher.otherLayout retries until it can).
func (r *Runner) logRepartitioned(ctx context.Context, t *triggers.Trigger, paused bool) {
	started := func() {
		if paused && t.Enabled {
			r.log.Info("trigger changed by reload: partitions changed; paused: the new partitions start from their checkpoints when the trigger is resumed",
				"trigger", t.Name, "partitions", len(t.Units()))
			return
		}
		r.log.Info("trigger changed by reload: partitions changed; restarted", "trigger", t.Name, "partitions", len(t.Units()))
	}
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultCheckpointTimeout)
	defer cancel()
	cps, err := r.store.TriggerCheckpoints(lctx, t.Name)
	if err != nil {
		started()
		return
	}
	others := otherPartitioning(t, cps)
	var refusing []string
	if len(others) > 0 {
		for _, u := range t.Units() {
			if !slices.ContainsFunc(cps, func(cp store.Checkpoint) bool { return cp.Trigger == u.Key() }) {
				refusing = append(refusing, u.Key())
			}
		}
	}
	if len(refusing) == 0 {
		started()
		return
	}
	r.log.Warn("trigger changed by reload: partitions changed, but its checkpoints are under another partitioning; "+
		"the new partitions without a checkpoint of their own refuse to start", "trigger", t.Name, "partitions", len(t.Units()),
		"refusing", refusing, "checkpoints", others, "way_out", repartitionWayOut(t, others, r.opts.Dev))
}

// Diff returns what Reload(cfg) would do, without doing it.
func (r *Runner) Diff(cfg *triggers.Config) ReloadResult {
	units, order := r.unitSlots()
	res := ReloadResult{Added: []string{}, Removed: []string{}, Changed: []string{}, Unchanged: []string{}}
	seen := map[string]bool{}
	for _, t := range cfg.Triggers {
		seen[t.Name] = true
		cur, ok := units[t.Name]
		if !ok {
			res.Added = append(res.Added, t.Name)
			continue
		}
		want := t.Units()
		same := len(want) == len(cur)
		for i := 0; same && i < len(cur); i++ {
			s := cur[i]
			s.mu.Lock()
			same = s.t.Key() == want[i].Key() && SameDefinition(s.t, want[i])
			s.mu.Unlock()
		}
		if same {
			res.Unchanged = append(res.Unchanged, t.Name)
		} else {
			res.Changed = append(res.Changed, t.Name)
		}
	}
	for _, name := range order {
		if !seen[name] {
			res.Removed = append(res.Removed, name)
		}
	}
	return res
}

// unitSlots returns the slots of each trigger's units, by trigger name,
// in partition order, and the triggers' names in configuration order. It
// takes r.mu only while it copies them: a slot's lock is taken before
// r.mu (reconcile holds it while it starts a watcher under r.mu), so the
// callers lock the slots after it returns.
func (r *Runner) unitSlots() (map[string][]*slot, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	units := make(map[string][]*slot, len(r.units))
	for name, keys := range r.units {
		for _, key := range keys {
			units[name] = append(units[name], r.slots[key])
		}
	}
	return units, slices.Clone(r.order)
}

// Units returns the definition the Runner has for each unit of each
// trigger (see triggers.Trigger.Units), by trigger name, in partition
// order. A Reload that did not finish leaves every trigger its old
// definition.
func (r *Runner) Units() map[string][]*triggers.Trigger {
	units, _ := r.unitSlots()
	out := make(map[string][]*triggers.Trigger, len(units))
	for name, ss := range units {
		for _, s := range ss {
			s.mu.Lock()
			out[name] = append(out[name], s.t)
			s.mu.Unlock()
		}
	}
	return out
}

// SameDefinition reports whether a and b define the same trigger:
// everything but the position in the file, secrets included (by value),
// compiled payload expressions compared by their source.
func SameDefinition(a, b *triggers.Trigger) bool {
	return fingerprint(a) == fingerprint(b)
}

// fingerprint hashes t's definition without its position
// (triggers.WriteDefinition).
func fingerprint(t *triggers.Trigger) uint64 {
	h := fnv.New64a()
	triggers.WriteDefinition(h, t)
	return h.Sum64()
}
