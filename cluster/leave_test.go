package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/runner"
)

// drainingSup is a Supervisor whose Stop of the key slow waits until
// drained is closed (that trigger's in-flight deliveries drain within the
// grace period); every other Stop returns at once.
type drainingSup struct {
	slow    string
	drained chan struct{}
	once    sync.Once
}

func (s *drainingSup) StartLeased(string, runner.Lease) error { return nil }

func (s *drainingSup) Stop(ctx context.Context, key string) error {
	if key != s.slow {
		return nil
	}
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *drainingSup) drain() { s.once.Do(func() { close(s.drained) }) }

// waitHeld waits until m holds the lease of key.
func waitHeld(t *testing.T, m *Manager, key string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		ks := m.keys[key]
		held := ks != nil && ks.own != nil
		m.mu.Unlock()
		if held {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s never held %s", m.InstanceID(), key)
}

// TestShutdownHandsReleasedLeasesOverAtOnce: member a runs two triggers,
// b stands by for both. a shuts down (its Driver's context ends; its
// membership goes on until every trigger drained): fast stops at once,
// slow still drains. b takes fast as soon as a released it, although a is
// still a live member that would be fast's preferred owner, while slow
// stays a's (its lease protects the drain) until a released it too.
//
// The clock is a fake one that the test never moves, so b runs no
// periodic round: only the release wakes it. b used to keep standing by,
// a being still registered with fast, and took fast only once a had
// drained every trigger and left (close to grace plus the lease TTL).
func TestShutdownHandsReleasedLeasesOverAtOnce(t *testing.T) {
	st := newTestStore(t)
	var names []string // preferred owner among a and b: a
	for i := 0; len(names) < 2; i++ {
		if n := fmt.Sprintf("t%d", i); PreferredMember([]string{"a", "b"}, n) == "a" {
			names = append(names, n)
		}
	}
	fast, slow := names[0], names[1]
	cfg := testConfig(t, fast, slow)
	clock := newFakeClock()

	a := newManager(t, st, cfg, "a", clock)
	actx, stopA := context.WithCancel(t.Context())
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(actx) }()
	dctx, sigterm := context.WithCancel(t.Context())
	asup := &drainingSup{slow: slow, drained: make(chan struct{})}
	ad := NewDriver(dctx, a, asup, time.Second)
	ad.Add(cfg)
	t.Cleanup(func() {
		sigterm()
		asup.drain()
		ad.Wait()
		stopA()
		<-aDone
	})
	waitHeld(t, a, fast)
	waitHeld(t, a, slow)

	b := newManager(t, st, cfg, "b", clock)
	bctx, stopB := context.WithCancel(t.Context())
	bDone := make(chan error, 1)
	go func() { bDone <- b.Run(bctx) }()
	t.Cleanup(func() { stopB(); <-bDone })
	bFast, bSlow := await(bctx, b, fast), await(bctx, b, slow)
	waitRegistered(t, b, 2)

	sigterm()
	var got *Ownership
	select {
	case got = <-bFast:
	case <-time.After(30 * time.Second): // a hang detector, not a speed check
		leases, _ := st.ListLeases(t.Context())
		live, _ := st.LiveMembers(t.Context())
		t.Fatalf("b did not take %s, released by a at shutdown while a drains %s: leases %+v, live members %+v", fast, slow, leases, live)
	}
	if got == nil || got.Fence().Owner != "b" {
		t.Fatalf("b's ownership of %s = %+v", fast, got)
	}
	defer got.Release(t.Context())
	live, err := st.LiveMembers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range live {
		if m.ID == "a" && len(m.Triggers) != 0 {
			t.Errorf("a, leaving, is registered with triggers %v", m.Triggers)
		}
	}
	select {
	case o := <-bSlow:
		t.Fatalf("b took %s (%+v) while a still drains it under its lease", slow, o)
	default:
	}

	asup.drain()
	select {
	case o := <-bSlow:
		if o == nil || o.Fence().Owner != "b" {
			t.Fatalf("b's ownership of %s = %+v", slow, o)
		}
		o.Release(t.Context())
	case <-time.After(30 * time.Second): // a hang detector
		t.Fatalf("b did not take %s once a drained and released it", slow)
	}
}

// TestLeaveAnnouncesNoTriggers: once Leave returned, the member's
// registration lists no trigger, and its later rounds keep it so: they
// renew the leases it holds (their triggers still drain) without handing
// them off, and acquire nothing more.
func TestLeaveAnnouncesNoTriggers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		roundFirst bool // a round registered the member and acquired the lease before Leave
	}{
		{"leaving while holding a lease", true},
		{"leaving before the first round", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newTestStore(t)
			m := newManager(t, st, testConfig(t, "orders"), "a", newFakeClock())
			got := await(t.Context(), m, "orders")
			waitRegistered(t, m, 1)
			if tc.roundFirst {
				m.round(t.Context())
			}
			m.Leave(t.Context())
			m.round(t.Context())
			live, err := st.LiveMembers(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(live) != 1 || len(live[0].Triggers) != 0 {
				t.Fatalf("live members = %+v, want a listing no trigger", live)
			}
			o := acquired(t, m, "orders", got)
			switch {
			case tc.roundFirst && o == nil:
				t.Fatal("the lease acquired before Leave is no longer held")
			case tc.roundFirst && o.Context().Err() != nil:
				t.Fatalf("the lease acquired before Leave was handed off: %v", context.Cause(o.Context()))
			case !tc.roundFirst && o != nil:
				t.Fatal("a round after Leave acquired a lease")
			}
			if o != nil {
				o.Release(t.Context())
			}
		})
	}
}
