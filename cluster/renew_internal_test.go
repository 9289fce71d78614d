package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// lostRenewals makes renewals fail while fail is set: at once, or, with
// hang, after taking the round's whole budget (RenewEvery, on the fake
// clock) as a renewal whose request or reply was lost does.
type lostRenewals struct {
	*store.Store
	clock *fakeClock
	every time.Duration
	fail  atomic.Bool
	hang  bool
}

func (s *lostRenewals) lost() error {
	if s.hang {
		s.clock.Advance(s.every)
		return context.DeadlineExceeded
	}
	return errors.New("network unreachable")
}

func (s *lostRenewals) RenewLease(ctx context.Context, key string, fe store.Fence, ttl time.Duration) (store.Lease, error) {
	if s.fail.Load() {
		return store.Lease{}, s.lost()
	}
	return s.Store.RenewLease(ctx, key, fe, ttl)
}

func (s *lostRenewals) RenewLeases(ctx context.Context, refs []store.LeaseRef, ttl time.Duration) (int, error) {
	if s.fail.Load() {
		return 0, s.lost()
	}
	return s.Store.RenewLeases(ctx, refs, ttl)
}

// TestOneLostRenewalKeepsTheLease: with every accepted renew_every, one
// renewal that fails, at once or by timing out after the round's budget,
// leaves the owner valid until the next round renews: rounds are scheduled
// from their start (as Run does, with untilNextRound), so that round comes
// 2 × renew_every after the last successful renewal, before the local
// deadline (lease_ttl − lease_ttl/5).
func TestOneLostRenewalKeepsTheLease(t *testing.T) {
	const ttl = 10 * time.Second
	tests := []struct {
		name  string
		every time.Duration // 0: the default
		hang  bool
	}{
		{"default renew_every, renewal fails at once", 0, false},
		{"default renew_every, renewal times out", 0, true},
		{"largest renew_every, renewal fails at once", triggers.MaxRenewEvery(ttl), false},
		{"largest renew_every, renewal times out", triggers.MaxRenewEvery(ttl), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			st := &lostRenewals{Store: newTestStore(t), clock: clock, hang: tt.hang}
			cfg := testConfig(t, "orders")
			cfg.Cluster = triggers.ClusterConfig{LeaseTTL: ttl, RenewEvery: tt.every}
			m := newManager(t, st, cfg, "a", clock)
			st.every = m.opts.RenewEvery
			ctx := t.Context()
			// round runs one round and waits for the next as Run does.
			round := func() {
				started := clock.Now()
				m.round(ctx)
				clock.Advance(m.untilNextRound(started))
			}
			got := await(ctx, m, "orders")
			waitRegistered(t, m, 1)
			round()
			o := <-got
			if o == nil {
				t.Fatal("not acquired")
			}
			st.fail.Store(true)
			round() // the lost renewal
			st.fail.Store(false)
			if !o.Valid() {
				t.Fatalf("renew_every %s, lease_ttl %s: after one lost renewal the owner fenced itself before the next round (deadline passed %s before it)",
					m.opts.RenewEvery, ttl, clock.Now().Sub(o.Deadline()))
			}
			m.round(ctx)
			if d := o.Deadline().Sub(clock.Now()); !o.Valid() || d != ttl-ttl/5 {
				t.Fatalf("after the next renewal: valid %v, deadline in %s; want valid, %s", o.Valid(), d, ttl-ttl/5)
			}
			o.Release(ctx)
		})
	}
}

// TestUntilNextRound: the next round starts RenewEvery after the previous
// one started, at once when that round took longer.
func TestUntilNextRound(t *testing.T) {
	clock := newFakeClock()
	m := &Manager{clock: clock, opts: Options{RenewEvery: 3 * time.Second}}
	tests := []struct {
		took, want time.Duration
	}{
		{0, 3 * time.Second},
		{time.Second, 2 * time.Second},
		{3 * time.Second, 0},
		{5 * time.Second, 0},
	}
	for _, tt := range tests {
		started := clock.Now()
		clock.Advance(tt.took)
		if got := m.untilNextRound(started); got != tt.want {
			t.Errorf("round took %s: next in %s, want %s", tt.took, got, tt.want)
		}
	}
}

// TestSettingsRenewEvery: a renew_every the configuration would refuse
// (above triggers.MaxRenewEvery) or none gives the default lease_ttl/3.
func TestSettingsRenewEvery(t *testing.T) {
	const ttl = 10 * time.Second
	tests := []struct {
		every, want time.Duration
	}{
		{0, ttl / 3},
		{time.Second, time.Second},
		{triggers.MaxRenewEvery(ttl), triggers.MaxRenewEvery(ttl)},
		{triggers.MaxRenewEvery(ttl) + time.Millisecond, ttl / 3},
		{ttl / 2, ttl / 3},
	}
	for _, tt := range tests {
		got := settings(&triggers.Config{}, Options{LeaseTTL: ttl, RenewEvery: tt.every}).RenewEvery
		if got != tt.want {
			t.Errorf("renew_every %s: %s, want %s", tt.every, got, tt.want)
		}
	}
}

// renewalSpy fails the renewals of the leases in failing (a batch that
// includes one fails whole) and records the keys of the renewals sent
// otherwise.
type renewalSpy struct {
	*store.Store
	mu      sync.Mutex
	failing map[string]bool
	sent    []string
}

func (s *renewalSpy) setFailing(keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = map[string]bool{}
	for _, k := range keys {
		s.failing[k] = true
	}
}

// renewed returns the keys of the renewals sent since the last call.
func (s *renewalSpy) renewed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := s.sent
	s.sent = nil
	return keys
}

func (s *renewalSpy) RenewLease(ctx context.Context, key string, fe store.Fence, ttl time.Duration) (store.Lease, error) {
	s.mu.Lock()
	fail := s.failing[key]
	if !fail {
		s.sent = append(s.sent, key)
	}
	s.mu.Unlock()
	if fail {
		return store.Lease{}, errors.New("network unreachable")
	}
	return s.Store.RenewLease(ctx, key, fe, ttl)
}

func (s *renewalSpy) RenewLeases(ctx context.Context, refs []store.LeaseRef, ttl time.Duration) (int, error) {
	s.mu.Lock()
	fail := slices.ContainsFunc(refs, func(r store.LeaseRef) bool { return s.failing[r.Key] })
	if !fail {
		for _, r := range refs {
			s.sent = append(s.sent, r.Key)
		}
	}
	s.mu.Unlock()
	if fail {
		return 0, errors.New("network unreachable")
	}
	return s.Store.RenewLeases(ctx, refs, ttl)
}

// TestFencedOwnershipIsNotRenewed: once an ownership fenced itself (its
// renewals failed past its local deadline), its lease is no longer renewed,
// though its runner has not stopped the unit (no Release yet) and the state
// database answers again: the lease lapses there, and another member can
// take the unit. The other leases held, renewed one by one or in a batch,
// still are.
func TestFencedOwnershipIsNotRenewed(t *testing.T) {
	tests := []struct {
		name string
		held []string // orders is fenced; the others stay valid
	}{
		{"one lease, renewed alone", []string{"orders"}},
		{"two leases, one left to renew alone", []string{"orders", "users"}},
		{"three leases, two left to renew in a batch", []string{"orders", "users", "items"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &renewalSpy{Store: newTestStore(t)}
			clock := newFakeClock()
			m := newManager(t, st, testConfig(t, tt.held...), "a", clock)
			ctx := t.Context()
			owns := map[string]*Ownership{}
			chans := map[string]<-chan *Ownership{}
			for _, n := range tt.held {
				chans[n] = await(ctx, m, n)
			}
			waitRegistered(t, m, len(tt.held))
			m.round(ctx)
			for n, ch := range chans {
				if owns[n] = <-ch; owns[n] == nil {
					t.Fatalf("%s not acquired", n)
				}
			}
			// orders' renewals fail until its local deadline (8s after
			// the acquisition) passes: it fences itself.
			st.setFailing("orders")
			clock.Advance(3 * time.Second)
			m.round(ctx)
			clock.Advance(5 * time.Second)
			o := owns["orders"]
			select {
			case <-o.Context().Done():
			case <-time.After(30 * time.Second): // a hang detector, not a speed check
				t.Fatal("orders not fenced after its local deadline")
			}
			if !errors.Is(context.Cause(o.Context()), ErrFenced) {
				t.Fatalf("orders: cause %v, want ErrFenced", context.Cause(o.Context()))
			}
			// The state database answers again; orders is not released.
			st.setFailing()
			st.renewed()
			for _, d := range []time.Duration{2 * time.Second, 3 * time.Second} {
				clock.Advance(d) // the others' deadline is 11s after the acquisition
				m.round(ctx)
			}
			sent := st.renewed()
			if slices.Contains(sent, "orders") {
				t.Errorf("renewals sent after orders fenced itself: %v; want none of orders", sent)
			}
			for n, own := range owns {
				if n != "orders" && (!own.Valid() || !slices.Contains(sent, n)) {
					t.Errorf("%s: valid %v, renewals sent %v; want valid and renewed", n, own.Valid(), sent)
				}
			}
			for _, own := range owns {
				own.Release(ctx)
			}
		})
	}
}

// TestExpiredDeadlineIsFinal: once an ownership's local deadline has come
// (Valid is false, so the runner's lease gate withholds its requests), a
// renewal that succeeds before the watchdog fenced it (one sent before the
// deadline and answered after it) does not make it valid again: the
// trigger must stop, or the withheld events would stay undone while it ran
// on.
func TestExpiredDeadlineIsFinal(t *testing.T) {
	clock := newFakeClock()
	cfg := testConfig(t, "orders")
	cfg.Cluster = triggers.ClusterConfig{LeaseTTL: 10 * time.Second}
	m := newManager(t, newTestStore(t), cfg, "a", clock)
	ctx := t.Context()
	got := await(ctx, m, "orders")
	waitRegistered(t, m, 1)
	m.round(ctx)
	o := <-got
	if o == nil {
		t.Fatal("not acquired")
	}
	// The local deadline is reached; the watchdog, asleep until it on the
	// fake clock, has not run yet.
	o.mu.Lock()
	o.expires = m.now()
	o.mu.Unlock()
	if o.Valid() {
		t.Fatal("valid at its deadline")
	}
	m.round(ctx) // the renewal succeeds
	if o.Valid() {
		t.Errorf("valid again after its deadline passed (deadline now %s after the clock)", o.Deadline().Sub(clock.Now()))
	}
	o.Release(ctx)
}
