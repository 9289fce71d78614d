package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/changehook/changehook/triggers"
)

// Driver runs triggers on a Supervisor under their leases (see Drive; one
// lease loop per partition), for a set of triggers that configuration
// reloads change: Retain stops the
// triggers no longer enabled, Add starts the newly enabled ones. Its methods
// are safe for concurrent use.
type Driver struct {
	ctx   context.Context
	m     *Manager
	sup   Supervisor
	grace time.Duration

	mu     sync.Mutex
	driven map[string]*driven
	wg     sync.WaitGroup
}

// driven is one trigger's lease loop.
type driven struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewDriver returns a Driver that runs triggers until ctx ends.
func NewDriver(ctx context.Context, m *Manager, sup Supervisor, grace time.Duration) *Driver {
	return &Driver{ctx: ctx, m: m, sup: sup, grace: grace, driven: map[string]*driven{}}
}

// Add starts the lease loop of every enabled trigger of cfg not driven yet.
func (d *Driver) Add(cfg *triggers.Config) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx.Err() != nil {
		return
	}
	for _, t := range cfg.Triggers {
		if !t.Enabled {
			continue
		}
		for _, u := range t.Units() {
			key := u.Key()
			if d.driven[key] != nil {
				continue
			}
			i, _ := u.PartitionIndex()
			ctx, cancel := context.WithCancel(d.ctx)
			dr := &driven{cancel: cancel, done: make(chan struct{})}
			d.driven[key] = dr
			name, n := t.Name, t.Partitions
			d.wg.Go(func() {
				defer close(dr.done)
				d.drive(ctx, name, i, n, key)
			})
		}
	}
}

// Retain stops the lease loops of the triggers that are not enabled in cfg:
// each stops its trigger (final checkpoint saved) and releases the lease.
// It waits until they ended or ctx ends.
func (d *Driver) Retain(ctx context.Context, cfg *triggers.Config) error {
	keep := map[string]bool{}
	for _, t := range cfg.Triggers {
		if t.Enabled {
			for _, u := range t.Units() {
				keep[u.Key()] = true
			}
		}
	}
	d.mu.Lock()
	var stopping []*driven
	for name, dr := range d.driven {
		if !keep[name] {
			dr.cancel()
			stopping = append(stopping, dr)
			delete(d.driven, name)
		}
	}
	d.mu.Unlock()
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
// ended, or Retain stopped them).
func (d *Driver) Wait() { d.wg.Wait() }

// drive is the lease loop (see Drive) of unit key, partition i of n of
// trigger name, until ctx ends.
func (d *Driver) drive(ctx context.Context, name string, i, n int, key string) {
	m := d.m
	for {
		o, err := m.Await(ctx, name, i, n)
		if err != nil {
			return // ctx ended
		}
		if err := d.sup.StartLeased(key, o); err != nil {
			m.log.Error("cannot start trigger under its lease", "trigger", name, "key", key, "error", err)
		} else {
			select {
			case <-o.Context().Done():
			case <-ctx.Done():
			}
		}
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.grace+m.opts.LeaseTTL)
		if err := d.sup.Stop(stopCtx, key); err != nil {
			m.log.Warn("trigger did not stop in time; its lease is left to expire", "trigger", name, "key", key, "error", err)
			cancel()
			o.abandon()
		} else {
			cancel()
			o.Release(context.WithoutCancel(ctx))
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// SetTriggers replaces the trigger definitions this member announces
// (their hashes decide which member runs what when definitions differ)
// after a configuration reload; the next heartbeat publishes them. It
// deletes the lease, transition and drift series of the triggers cfg
// removed, and the per-partition series of those whose partitions it
// changed; the caller has stopped their lease loops first (Retain).
func (m *Manager) SetTriggers(cfg *triggers.Config) {
	hashes := map[string]string{}
	for _, t := range cfg.Triggers {
		if t.Enabled {
			hashes[t.Name] = DefinitionHash(t)
		}
	}
	m.mu.Lock()
	m.self.Triggers, m.self.ConfigHash = hashes, ConfigHash(hashes)
	for name := range m.drift {
		if _, ok := hashes[name]; !ok {
			delete(m.drift, name)
		}
	}
	parts := partitionCounts(cfg)
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
