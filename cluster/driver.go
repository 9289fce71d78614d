package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/changehook/changehook/triggers"
)

// Driver runs triggers on a Supervisor under their leases (see Drive; one
// lease loop per partition), for a set of triggers that configuration
// reloads change. A reload calls Retain with the new configuration before
// it applies it to the Supervisor, then Manager.SetTriggers, then Add:
// Retain stops the triggers no longer enabled and those whose definition
// changes, Add starts the newly enabled ones and the changed ones again.
// SetTriggers and Add are given the definitions the Supervisor has then:
// the new configuration's, or those it was left with when applying it did
// not finish, so that the hashes this member announces, those its lease
// loops run under and the definitions it runs never differ. Its methods
// are safe for concurrent use.
//
// A changed trigger's new definition runs under a lease only once this
// member is known to be the trigger's preferred owner with it: a member
// whose definition is in the minority does not run the trigger, and if it
// ran the new one even briefly, the checkpoint it saved (past the events
// the new definition leaves out) would be where the majority's definition
// resumes, so those events would be neither delivered nor dead-lettered.
// So Retain stops it under its old definition (final checkpoint saved) but
// keeps the lease, and Add starts the new definition under that lease only
// after a round of the Manager has published the new definitions and did
// not hand the lease off; otherwise the lease is released and the trigger
// awaits it again like any other. So is it when no round decides within a
// lease TTL (heartbeats or reads of the members fail while the renewals go
// through): a lease held on without running its trigger would keep every
// member from running it.
type Driver struct {
	ctx   context.Context
	m     *Manager
	sup   Supervisor
	grace time.Duration

	mu     sync.Mutex
	driven map[string]*driven
	// kept are the leases of units Retain stopped for a changed
	// definition, kept for the loop Add starts next for the unit.
	kept map[string]*Ownership
	wg   sync.WaitGroup
}

// keptLease is a lease Retain kept, handed by Add to the unit's next loop.
type keptLease struct {
	o     *Ownership
	gen   uint64    // the generation of definitions the Manager must decide on first
	since time.Time // when Add handed it over, on the Manager's clock
}

// driven is one unit's lease loop.
type driven struct {
	cancel context.CancelFunc
	done   chan struct{}
	hash   string // DefinitionHash of the trigger the loop runs
	keep   bool   // stopped for a changed definition: keep the lease (guarded by Driver.mu)
}

// NewDriver returns a Driver that runs triggers until ctx ends. The end of
// ctx is the member's shutdown: before the Driver releases a lease from
// then on, it calls m.Leave, so that the lease is taken over at once while
// the member's other triggers still drain.
func NewDriver(ctx context.Context, m *Manager, sup Supervisor, grace time.Duration) *Driver {
	return &Driver{ctx: ctx, m: m, sup: sup, grace: grace, driven: map[string]*driven{}, kept: map[string]*Ownership{}}
}

// Add starts the lease loop of every enabled trigger unit of cfg not
// driven yet. A unit whose lease Retain kept starts under it once the
// Manager has decided on the definitions SetTriggers gave it last (see
// Driver), if it does within a lease TTL; a lease Retain kept for a unit
// that cfg does not run is released.
func (d *Driver) Add(cfg *triggers.Config) {
	gen, now := d.m.generation(), d.m.clock.Now()
	d.mu.Lock()
	if d.ctx.Err() != nil {
		d.mu.Unlock()
		return
	}
	for _, t := range cfg.Triggers {
		if !t.Enabled {
			continue
		}
		hash := DefinitionHash(t)
		for _, u := range t.Units() {
			key := u.Key()
			if d.driven[key] != nil {
				continue
			}
			var kept *keptLease
			if o := d.kept[key]; o != nil {
				kept = &keptLease{o: o, gen: gen, since: now}
				delete(d.kept, key)
			}
			i, _ := u.PartitionIndex()
			ctx, cancel := context.WithCancel(d.ctx)
			dr := &driven{cancel: cancel, done: make(chan struct{}), hash: hash}
			d.driven[key] = dr
			name, n := t.Name, t.Partitions
			d.wg.Go(func() {
				defer close(dr.done)
				d.drive(ctx, dr, name, i, n, key, kept)
			})
		}
	}
	var release []*Ownership
	for key, o := range d.kept {
		release = append(release, o)
		delete(d.kept, key)
	}
	d.mu.Unlock()
	for _, o := range release {
		o.Release(d.ctx)
	}
}

// Retain stops the lease loops of the trigger units that are not enabled
// in cfg, and of those whose definition cfg changes (DefinitionHash): each
// stops its trigger, which saves its final checkpoint under the definition
// it ran. A removed unit's lease is released; a changed unit's lease is
// kept for Add (see Driver). Retain waits until the loops ended or ctx
// ends.
func (d *Driver) Retain(ctx context.Context, cfg *triggers.Config) error {
	want := map[string]string{} // unit key → definition hash
	for _, t := range cfg.Triggers {
		if t.Enabled {
			hash := DefinitionHash(t)
			for _, u := range t.Units() {
				want[u.Key()] = hash
			}
		}
	}
	d.mu.Lock()
	var stopping []*driven
	for key, dr := range d.driven {
		hash, ok := want[key]
		if ok && hash == dr.hash {
			continue
		}
		dr.keep = ok
		dr.cancel()
		stopping = append(stopping, dr)
		delete(d.driven, key)
	}
	var release []*Ownership
	for key, o := range d.kept {
		if _, ok := want[key]; !ok {
			release = append(release, o)
			delete(d.kept, key)
		}
	}
	d.mu.Unlock()
	for _, o := range release {
		o.Release(ctx)
	}
	for _, dr := range stopping {
		select {
		case <-dr.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Wait returns once every lease loop ended (after the Driver's context
// ended, or Retain stopped them). Once the context ended it also releases
// the leases Retain kept for an Add that now starts nothing: their
// triggers stopped already, and another member may take them at once.
func (d *Driver) Wait() {
	if d.ctx.Err() != nil {
		d.mu.Lock()
		kept := d.kept
		d.kept = map[string]*Ownership{}
		d.mu.Unlock()
		if len(kept) > 0 {
			d.m.Leave(d.ctx)
		}
		for _, o := range kept {
			o.Release(context.WithoutCancel(d.ctx))
		}
	}
	d.wg.Wait()
}

// drive is the lease loop (see Drive) of unit key, partition i of n of
// trigger name, until ctx ends. kept, when not nil, is the unit's lease
// Retain kept across a reload that changed its definition: the unit runs
// under it only once the Manager decided on the definitions SetTriggers
// gave it last and did not hand it off (see confirmed).
func (d *Driver) drive(ctx context.Context, dr *driven, name string, i, n int, key string, kept *keptLease) {
	m := d.m
	for {
		var o *Ownership
		if kept != nil {
			o = kept.o
		} else {
			var err error
			if o, err = m.Await(ctx, name, i, n); err != nil {
				return // ctx ended
			}
		}
		if kept == nil || d.confirmed(ctx, kept, name, key) {
			if err := d.sup.StartLeased(key, o); err != nil {
				m.log.Error("cannot start trigger under its lease", "trigger", name, "key", key, "error", err)
			} else {
				select {
				case <-o.Context().Done():
				case <-ctx.Done():
				}
			}
		}
		kept = nil
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.grace+m.opts.LeaseTTL)
		if err := d.sup.Stop(stopCtx, key); err != nil {
			m.log.Warn("trigger did not stop in time; its lease is left to expire", "trigger", name, "key", key, "error", err)
			cancel()
			o.abandon()
		} else {
			cancel()
			if !d.keep(dr, key, o) {
				if d.ctx.Err() != nil {
					// Shutting down: announced as leaving first, so the
					// member preferred without this one takes it at once.
					m.Leave(d.ctx)
				}
				o.Release(context.WithoutCancel(ctx))
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// errUndecided ends confirmed's wait when no round decided in time.
var errUndecided = errors.New("no round decided")

// confirmed waits until the Manager has decided on definitions of
// generation k.gen (see Manager.awaitDecided) and reports whether k's
// lease is still this member's to run the unit key of trigger name under
// then: not handed off or lost, and ctx has not ended. It waits at most a
// lease TTL after Add handed the lease over, and says why when it gave
// up: rounds that cannot heartbeat or read the members decide nothing
// while the renewals go on keeping the lease, and a lease held on without
// running the unit would keep every member from running it.
func (d *Driver) confirmed(ctx context.Context, k *keptLease, name, key string) bool {
	m := d.m
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	defer context.AfterFunc(k.o.Context(), func() { cancel(nil) })()
	deadline := k.since.Add(m.opts.LeaseTTL)
	go func() {
		if m.clock.Sleep(wctx, deadline.Sub(m.clock.Now())) == nil {
			cancel(errUndecided)
		}
	}()
	if m.awaitDecided(wctx, k.gen) != nil {
		if errors.Is(context.Cause(wctx), errUndecided) {
			m.log.Warn("no round published the trigger's reloaded definition within lease_ttl; releasing the lease kept for it, so that the member that may run it can take it (this one too, once its rounds decide again)",
				"trigger", name, "key", key, "lease_ttl", m.opts.LeaseTTL, "reason", m.whyUndecided())
		}
		return false
	}
	return k.o.Context().Err() == nil && ctx.Err() == nil
}

// keep hands o, the lease of unit key whose trigger its loop dr has just
// stopped, to the next loop Add starts for key, when Retain stopped dr for
// a changed definition, o is still held (not handed off or lost) and no
// other loop drives key yet; it reports whether it did.
func (d *Driver) keep(dr *driven, key string, o *Ownership) bool {
	if o.Context().Err() != nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !dr.keep || d.driven[key] != nil || d.ctx.Err() != nil {
		return false
	}
	d.kept[key] = o
	return true
}

// SetTriggers replaces the trigger definitions this member announces
// (their hashes decide which member runs what when definitions differ)
// after a configuration reload; the next round publishes them, and a round
// whose heartbeat still carried the old ones decides nothing. It deletes
// the lease, transition and drift series of the triggers cfg removed (the
// drift series of those it disabled too), and
// the per-partition series of those whose partitions it changed; the
// caller has stopped their lease loops first (Retain).
func (m *Manager) SetTriggers(cfg *triggers.Config) {
	defs := enabledTriggers(cfg)
	m.mu.Lock()
	m.defs = defs
	m.rehashLocked()
	m.gen++
	for name := range m.drift {
		if _, ok := defs[name]; !ok {
			// Removed or disabled: no definition to differ any more.
			delete(m.drift, name)
			m.met.forgetDrift(name)
		}
	}
	parts := partitionCounts(cfg)
	for key := range m.fencedWhy {
		if name, _, n, ok := triggers.ParsePartitionKey(key); !ok || parts[name] != n {
			delete(m.fencedWhy, key) // a unit no longer configured
		}
	}
	for name, n := range m.parts {
		switch now, ok := parts[name]; {
		case !ok:
			m.met.forget(name)
		case now != n:
			m.met.forgetPartitions(name)
		}
	}
	m.parts = parts
	m.mu.Unlock()
	m.poke()
}

// partitionCounts returns the number of partitions (1: not partitioned)
// of every trigger of cfg.
func partitionCounts(cfg *triggers.Config) map[string]int {
	parts := make(map[string]int, len(cfg.Triggers))
	for _, t := range cfg.Triggers {
		parts[t.Name] = max(t.Partitions, 1)
	}
	return parts
}
