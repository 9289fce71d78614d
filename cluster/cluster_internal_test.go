package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// fakeClock is a manual clock: Sleep returns once Advance moved past the
// wake-up time.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
	ch  chan struct{} // closed and replaced at every Advance
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), ch: make(chan struct{})}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	close(c.ch)
	c.ch = make(chan struct{})
	c.mu.Unlock()
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	until := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		now, ch := c.now, c.ch
		c.mu.Unlock()
		if !now.Before(until) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// flakyStore fails renewals while failRenew is set.
type flakyStore struct {
	*store.Store
	failRenew atomic.Bool
}

func (f *flakyStore) RenewLease(ctx context.Context, key string, fe store.Fence, ttl time.Duration) (store.Lease, error) {
	if f.failRenew.Load() {
		return store.Lease{}, errors.New("network unreachable")
	}
	return f.Store.RenewLease(ctx, key, fe, ttl)
}

func (f *flakyStore) RenewLeases(ctx context.Context, refs []store.LeaseRef, ttl time.Duration) (int, error) {
	if f.failRenew.Load() {
		return 0, errors.New("network unreachable")
	}
	return f.Store.RenewLeases(ctx, refs, ttl)
}

func testConfig(t *testing.T, names ...string) *triggers.Config {
	t.Helper()
	cfg := &triggers.Config{Cluster: triggers.ClusterConfig{LeaseTTL: 10 * time.Second, RenewEvery: 3 * time.Second}}
	for _, n := range names {
		cfg.Triggers = append(cfg.Triggers, &triggers.Trigger{Name: n, Database: "shop", Enabled: true})
	}
	return cfg
}

func newTestStore(t *testing.T) *store.Store {
	t.Helper()
	srv, _ := devdbtest.Start(t)
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetTimeout(10*time.Second))
	return store.New(client, "changehook_state")
}

func newManager(t *testing.T, st Store, cfg *triggers.Config, id string, clock *fakeClock) *Manager {
	t.Helper()
	m, err := New(st, cfg, Options{InstanceID: id, Clock: clock, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// await starts Await in the background and returns a channel with its result.
func await(ctx context.Context, m *Manager, trigger string) <-chan *Ownership {
	ch := make(chan *Ownership, 1)
	go func() {
		o, _ := m.Await(ctx, trigger, 0, 1)
		ch <- o
	}()
	return ch
}

// acquired returns the ownership of trigger's lease that m acquired (in the
// rounds run so far) for the Await started by await, whose result is got;
// nil when m holds no such lease. The round delivers the ownership before
// it returns, but Await hands it over on its own goroutine: acquired waits
// for that, not for more rounds.
func acquired(t *testing.T, m *Manager, trigger string, got <-chan *Ownership) *Ownership {
	t.Helper()
	m.mu.Lock()
	ks := m.keys[Key(trigger, 0, 1)]
	held := ks != nil && ks.own != nil
	m.mu.Unlock()
	if !held {
		return nil
	}
	select {
	case o := <-got:
		return o
	case <-time.After(30 * time.Second): // a hang detector, not a speed check
		t.Fatalf("%s: the lease is held, but Await did not return its ownership", trigger)
		return nil
	}
}

// waitRegistered waits until n keys wait in m (Await registered them).
func waitRegistered(t *testing.T, m *Manager, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		got := 0
		for _, ks := range m.keys {
			got += ks.waiters
		}
		m.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("Await did not register %d keys", n)
}

func TestSelfFencing(t *testing.T) {
	st := &flakyStore{Store: newTestStore(t)}
	clock := newFakeClock()
	m := newManager(t, st, testConfig(t, "orders"), "a", clock)
	ctx := t.Context()

	got := await(ctx, m, "orders")
	waitRegistered(t, m, 1)
	m.round(ctx)
	o := <-got
	if o == nil || !o.Valid() || o.Fence().Epoch != 1 {
		t.Fatalf("ownership = %+v, want valid epoch 1", o)
	}
	// The local deadline is the TTL minus the margin after the request.
	if d := o.Deadline().Sub(clock.Now()); d != 8*time.Second {
		t.Fatalf("deadline in %s, want 8s (ttl 10s - margin 2s)", d)
	}
	// A renewal moves the deadline.
	clock.Advance(3 * time.Second)
	m.round(ctx)
	if d := o.Deadline().Sub(clock.Now()); d != 8*time.Second {
		t.Fatalf("after renewal deadline in %s, want 8s", d)
	}
	// Renewals fail: the ownership stays valid until the deadline, then
	// fences itself without any round running.
	st.failRenew.Store(true)
	clock.Advance(3 * time.Second)
	m.round(ctx)
	if !o.Valid() || o.Context().Err() != nil {
		t.Fatal("ownership invalid before its deadline")
	}
	clock.Advance(5 * time.Second) // 8s after the last successful renewal
	select {
	case <-o.Context().Done():
	case <-time.After(30 * time.Second):
		t.Fatal("ownership not fenced after its local deadline")
	}
	if !errors.Is(context.Cause(o.Context()), ErrFenced) || o.Valid() {
		t.Fatalf("cause = %v, valid = %v; want ErrFenced, invalid", context.Cause(o.Context()), o.Valid())
	}
	o.Release(ctx) // lost: no release is sent, nothing panics
}

func TestLostLeaseFencesAtOnce(t *testing.T) {
	st := newTestStore(t)
	clock := newFakeClock()
	m := newManager(t, st, testConfig(t, "orders"), "a", clock)
	ctx := t.Context()
	got := await(ctx, m, "orders")
	waitRegistered(t, m, 1)
	m.round(ctx)
	o := <-got
	// Someone releases it behind our back and another instance takes it.
	if err := st.ReleaseLease(ctx, "orders", o.Fence()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcquireLease(ctx, "orders", "b", time.Hour); err != nil {
		t.Fatal(err)
	}
	m.round(ctx)
	if !errors.Is(context.Cause(o.Context()), ErrFenced) || o.Valid() {
		t.Fatalf("after losing the lease: cause %v, valid %v", context.Cause(o.Context()), o.Valid())
	}
}

func TestRendezvousSpreadAndHandoff(t *testing.T) {
	st := newTestStore(t)
	ctx := t.Context()
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("t%02d", i))
	}
	cfg := testConfig(t, names...)
	clock := newFakeClock()
	a := newManager(t, st, cfg, "a", clock)
	owns := map[string]<-chan *Ownership{}
	for _, n := range names {
		owns[n] = await(ctx, a, n)
	}
	waitRegistered(t, a, len(names))
	a.round(ctx)
	held := map[string]*Ownership{}
	for _, n := range names {
		held[n] = <-owns[n]
	}

	// b joins: it heartbeats, a sees it and hands off b's share.
	b := newManager(t, st, cfg, "b", clock)
	bOwns := map[string]<-chan *Ownership{}
	for _, n := range names {
		bOwns[n] = await(ctx, b, n)
	}
	waitRegistered(t, b, len(names))
	b.round(ctx) // registers b; a still holds everything
	a.round(ctx)
	live, err := st.LiveMembers(ctx)
	if err != nil || len(live) != 2 {
		t.Fatalf("live = %v, %v", live, err)
	}
	moved := 0
	for _, n := range names {
		pref := a.preferred(live, n, n)
		cause := context.Cause(held[n].Context())
		switch {
		case pref == "b" && !errors.Is(cause, ErrHandoff):
			t.Errorf("%s: preferred b, but a's cause = %v", n, cause)
		case pref == "a" && cause != nil:
			t.Errorf("%s: preferred a, but a was stopped: %v", n, cause)
		}
		if pref == "b" {
			moved++
			if !held[n].Valid() {
				t.Errorf("%s: draining ownership must stay valid until Release", n)
			}
			held[n].Release(ctx) // the runner drained and checkpointed
		}
	}
	if moved == 0 || moved == len(names) {
		t.Fatalf("%d of %d triggers moved to b; rendezvous should split them", moved, len(names))
	}
	b.round(ctx)
	for _, n := range names {
		if a.preferred(live, n, n) != "b" {
			continue
		}
		o := acquired(t, b, n, bOwns[n])
		if o == nil {
			t.Errorf("%s: b did not acquire it after the handoff", n)
		} else if o.Fence().Epoch != 2 {
			t.Errorf("%s: b's epoch = %d, want 2", n, o.Fence().Epoch)
		}
	}
}

func TestDriftMinorityDoesNotRun(t *testing.T) {
	st := newTestStore(t)
	ctx := t.Context()
	clock := newFakeClock()
	cfg := testConfig(t, "orders")
	changed := testConfig(t, "orders")
	changed.Triggers[0].Collection = "orders_v2"
	a := newManager(t, st, cfg, "a", clock)
	b := newManager(t, st, cfg, "b", clock)
	c := newManager(t, st, changed, "c", clock)
	for _, m := range []*Manager{a, b, c} {
		m.round(ctx)
	}
	c.round(ctx)
	live, _ := st.LiveMembers(ctx)
	if p := c.preferred(live, "orders", "orders"); p == "c" || p == "" {
		t.Fatalf("preferred = %q; the minority member c must never be chosen", p)
	}
	s, err := c.Status(ctx)
	if err != nil || len(s.Drift) != 1 || s.Drift[0] != "orders" || len(s.Members) != 3 {
		t.Fatalf("status = %+v, %v; want drift [orders] and 3 members", s, err)
	}
	if s2, _ := a.Status(ctx); len(s2.Drift) != 0 {
		t.Fatalf("majority member reports drift %v", s2.Drift)
	}
}

func TestShutdownReleasesAndLeaves(t *testing.T) {
	st := newTestStore(t)
	m, err := New(st, testConfig(t, "orders"), Options{InstanceID: "a", LeaseTTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	o, err := m.Await(t.Context(), "orders", 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	o.Release(t.Context())
	if l, _ := st.ListLeases(t.Context()); len(l) != 1 || l[0].Owner != "" {
		t.Fatalf("leases after release = %+v", l)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ms, _ := st.ListMembers(t.Context()); len(ms) != 0 {
		t.Fatalf("members after shutdown = %+v", ms)
	}
}

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		p, n int
		want string
	}{{0, 1, "orders"}, {0, 0, "orders"}, {2, 4, "orders/p2of4"}} {
		if got := Key("orders", tc.p, tc.n); got != tc.want {
			t.Errorf("Key(orders, %d, %d) = %q, want %q", tc.p, tc.n, got, tc.want)
		}
	}
}

// sharedSup is a Supervisor for several members at once (see
// startMembers): it records which member runs each unit, how often each
// member started one, every unit started while another member runs it
// (double) and every start while another member ran a unit of another
// partitioning of the same trigger (overlap).
type sharedSup struct {
	mu      sync.Mutex
	running map[string]string // unit key → member
	starts  map[string]int    // member → starts
	double  []string
	overlap []string
}

func newSharedSup() *sharedSup {
	return &sharedSup{running: map[string]string{}, starts: map[string]int{}}
}

type memberSup struct {
	s  *sharedSup
	id string
}

func (m memberSup) StartLeased(key string, _ runner.Lease) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if other, ok := m.s.running[key]; ok {
		m.s.double = append(m.s.double, key+" on "+other+" and "+m.id)
	}
	_, _, n, _ := triggers.ParsePartitionKey(key)
	for other, id := range m.s.running {
		if _, _, on, _ := triggers.ParsePartitionKey(other); on != n && id != m.id {
			m.s.overlap = append(m.s.overlap, fmt.Sprintf("%s started on %s while %s ran %s", key, m.id, id, other))
		}
	}
	m.s.running[key] = m.id
	m.s.starts[m.id]++
	return nil
}

func (m memberSup) Stop(_ context.Context, key string) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if m.s.running[key] == m.id {
		delete(m.s.running, key)
	}
	return nil
}

// members runs cluster members on one store, each driving its
// configuration's triggers on sup, until the test ends.
type members struct {
	ctx context.Context
	wg  *sync.WaitGroup
	st  Store
	sup *sharedSup
}

// startMembers returns members on st and sup; t.Cleanup stops every member
// started with start at once and waits for them.
func startMembers(t *testing.T, st Store, sup *sharedSup) *members {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	wg := &sync.WaitGroup{}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return &members{ctx: ctx, wg: wg, st: st, sup: sup}
}

// start runs member id with cfg (lease TTL 2s, renewals every 300ms): its
// Manager's Run and Drive of cfg on the member's part of sup.
func (ms *members) start(t *testing.T, id string, cfg *triggers.Config) *Manager {
	t.Helper()
	m, err := New(ms.st, cfg, Options{InstanceID: id, LeaseTTL: 2 * time.Second, RenewEvery: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ms.wg.Go(func() { _ = m.Run(ms.ctx) })
	ms.wg.Go(func() { Drive(ms.ctx, m, memberSup{ms.sup, id}, cfg, time.Second) })
	return m
}

// TestDrivePartitionsOverMembers drives a trigger with 8 partitions on two
// members: each partition runs under its own lease on exactly one member,
// the members share them, and Standby agrees with who runs what.
func TestDrivePartitionsOverMembers(t *testing.T) {
	st := newTestStore(t)
	cfg := testConfig(t, "orders")
	cfg.Triggers[0].Partitions = 8
	sup := newSharedSup()
	ms := startMembers(t, st, sup)
	mgrs := map[string]*Manager{}
	for _, id := range []string{"a", "b"} {
		mgrs[id] = ms.start(t, id, cfg)
	}
	settled := func() bool {
		sup.mu.Lock()
		defer sup.mu.Unlock()
		if len(sup.running) != 8 {
			return false
		}
		per := map[string]int{}
		for i := range 8 {
			key := Key("orders", i, 8)
			owner := sup.running[key]
			per[owner]++
			for id, m := range mgrs {
				if m.Standby(key) != (id != owner) {
					return false
				}
			}
		}
		return per["a"] > 0 && per["b"] > 0
	}
	deadline := time.Now().Add(30 * time.Second)
	for !settled() {
		if time.Now().After(deadline) {
			sup.mu.Lock()
			running := maps.Clone(sup.running)
			sup.mu.Unlock() // the members' Stop at the cleanup takes it
			t.Fatalf("partitions not shared: running = %v", running)
		}
		time.Sleep(50 * time.Millisecond)
	}
	sup.mu.Lock()
	defer sup.mu.Unlock()
	if len(sup.double) > 0 {
		t.Fatalf("units started while another member ran them: %v", sup.double)
	}
	leases, err := st.ListLeases(t.Context())
	if err != nil || len(leases) != 8 {
		t.Fatalf("leases = %+v, %v; want one per partition", leases, err)
	}
}

// countingStore counts lease renewal writes.
type countingStore struct {
	*store.Store
	single, batch atomic.Int64
}

func (c *countingStore) RenewLease(ctx context.Context, key string, fe store.Fence, ttl time.Duration) (store.Lease, error) {
	c.single.Add(1)
	return c.Store.RenewLease(ctx, key, fe, ttl)
}

func (c *countingStore) RenewLeases(ctx context.Context, refs []store.LeaseRef, ttl time.Duration) (int, error) {
	c.batch.Add(1)
	return c.Store.RenewLeases(ctx, refs, ttl)
}

// TestRenewalsAreOneWrite: a member holding many leases renews them all in
// one write per round (per-lease round trips grow with the number of
// triggers until a round no longer fits in renew_every); when one of them
// was lost, the round falls back to one renewal per lease and fences only
// that one.
func TestRenewalsAreOneWrite(t *testing.T) {
	st := &countingStore{Store: newTestStore(t)}
	clock := newFakeClock()
	names := make([]string, 20)
	for i := range names {
		names[i] = fmt.Sprintf("t%02d", i)
	}
	m := newManager(t, st, testConfig(t, names...), "a", clock)
	ctx := t.Context()
	chans := make([]<-chan *Ownership, len(names))
	for i, n := range names {
		chans[i] = await(ctx, m, n)
	}
	waitRegistered(t, m, len(names))
	m.round(ctx)
	owns := make([]*Ownership, len(names))
	for i, ch := range chans {
		if owns[i] = <-ch; owns[i] == nil {
			t.Fatalf("no ownership of %s", names[i])
		}
	}
	for round := 1; round <= 3; round++ {
		clock.Advance(3 * time.Second)
		m.round(ctx)
		if got := st.batch.Load(); got != int64(round) || st.single.Load() != 0 {
			t.Fatalf("after %d renewal rounds: %d batch and %d single renewals, want %d and 0", round, got, st.single.Load(), round)
		}
	}
	for i, o := range owns {
		if d := o.Deadline().Sub(clock.Now()); !o.Valid() || d != 8*time.Second {
			t.Fatalf("%s: valid %v, deadline in %s; want valid, 8s", names[i], o.Valid(), d)
		}
	}
	// t03 is taken away: the batch matches 19 of 20, and the fallback
	// fences exactly t03.
	if err := st.ReleaseLease(ctx, "t03", owns[3].Fence()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AcquireLease(ctx, "t03", "b", time.Hour); err != nil {
		t.Fatal(err)
	}
	clock.Advance(3 * time.Second)
	m.round(ctx)
	if got := st.single.Load(); got != int64(len(names)) {
		t.Fatalf("fallback sent %d single renewals, want %d", got, len(names))
	}
	for i, o := range owns {
		if lost := i == 3; o.Valid() == lost {
			t.Fatalf("%s: valid %v after the round, want %v", names[i], o.Valid(), !lost)
		}
	}
}

// TestReadStatusOrdersPartitions: /api/cluster and `cluster status` list a
// trigger's partition leases in partition order, p2 before p10.
func TestReadStatusOrdersPartitions(t *testing.T) {
	st := newTestStore(t)
	for _, key := range []string{"t/p10of12", "t/p2of12", "b", "t/p0of12", "a"} {
		if _, err := st.AcquireLease(t.Context(), key, "m1", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	s, err := ReadStatus(t.Context(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range s.Leases {
		got = append(got, l.Key)
	}
	if want := []string{"a", "b", "t/p0of12", "t/p2of12", "t/p10of12"}; !slices.Equal(got, want) {
		t.Errorf("leases in order %v, want %v", got, want)
	}
}

// TestReleaseWakesSuccessor: when the owner of a trigger stops, the next
// member takes the lease as soon as it is released, not at its next
// periodic round. The clock never advances here, so without the release
// watch the successor would never run another round.
func TestReleaseWakesSuccessor(t *testing.T) {
	st := newTestStore(t)
	cfg := testConfig(t, "orders")
	clock := newFakeClock()
	first, second := "a", "b"
	if PreferredMember([]string{"a", "b"}, "orders") != "a" {
		first, second = "b", "a"
	}
	a := newManager(t, st, cfg, first, clock)
	actx, stopA := context.WithCancel(t.Context())
	aDone := make(chan error, 1)
	go func() { aDone <- a.Run(actx) }()
	t.Cleanup(func() { stopA(); <-aDone })
	o, err := a.Await(t.Context(), "orders", 0, 1)
	if err != nil {
		t.Fatal(err)
	}

	b := newManager(t, st, cfg, second, clock)
	bctx, stopB := context.WithCancel(t.Context())
	bDone := make(chan error, 1)
	go func() { bDone <- b.Run(bctx) }()
	t.Cleanup(func() { stopB(); <-bDone })
	bOwn := await(t.Context(), b, "orders")
	// b's round must have seen a as the live, preferred owner.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.mu.Lock()
		n := len(b.members)
		b.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b never saw both members")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-bOwn:
		t.Fatal("b acquired the trigger while its preferred owner held it")
	default:
	}

	o.Release(t.Context()) // a's runner drained and checkpointed
	stopA()
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	aDone <- nil // for the cleanup
	select {
	case got := <-bOwn:
		if got == nil || got.Fence().Epoch != 2 || got.Fence().Owner != second {
			t.Fatalf("b's ownership = %+v, want %s's at epoch 2", got, second)
		}
		got.Release(t.Context())
	case <-time.After(30 * time.Second):
		t.Fatal("b did not take the released lease: it waited for a periodic round")
	}
}

// TestRoundCompletesWhenCancelled: a round that starts or runs while the
// member is shutting down still completes its writes (bounded by
// RenewEvery), so no heartbeat is left in flight to be applied after
// shutdown removed the registration.
func TestRoundCompletesWhenCancelled(t *testing.T) {
	st := newTestStore(t)
	m := newManager(t, st, testConfig(t, "orders"), "a", newFakeClock())
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	m.round(ctx)
	live, err := st.LiveMembers(t.Context())
	if err != nil || len(live) != 1 || live[0].ID != "a" {
		t.Fatalf("live members after a cancelled round = %+v, %v; want a registered", live, err)
	}
}

// acquireHookStore runs hook after a lease was acquired in the state
// database and before the Manager records it.
type acquireHookStore struct {
	*store.Store
	hook atomic.Pointer[func()]
}

func (s *acquireHookStore) AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) (store.Lease, error) {
	l, err := s.Store.AcquireLease(ctx, key, owner, ttl)
	if h := s.hook.Load(); h != nil && err == nil {
		(*h)()
	}
	return l, err
}

// TestAwaitCancelledWhileAcquiringLeavesNoLease: an Await whose context
// ends while the round is acquiring its lease (a reload removing the
// trigger cancels it) either gets the ownership or leaves nothing held: an
// ownership delivered as it gave up is released, never left to no one
// with its lease renewed forever. The hook lines the two up: it cancels
// the Await and holds m.mu, so that the Await gives up while acquire is
// about to deliver.
func TestAwaitCancelledWhileAcquiringLeavesNoLease(t *testing.T) {
	st := &acquireHookStore{Store: newTestStore(t)}
	m := newManager(t, st, testConfig(t, "t"), "m0", newFakeClock())
	m.checkedPrevious = true
	bg := t.Context()
	for i := range 100 {
		ctx, cancel := context.WithCancel(bg)
		res := await(ctx, m, "t")
		waitRegistered(t, m, 1)
		hook := func() {
			m.mu.Lock()
			cancel()
			for range 50 {
				runtime.Gosched() // let the Await see its context end
			}
			m.mu.Unlock()
		}
		st.hook.Store(&hook)
		m.round(bg)
		st.hook.Store(nil)
		if o := <-res; o != nil {
			o.Release(bg)
		}
		m.mu.Lock()
		ks := m.keys["t"]
		m.mu.Unlock()
		if ks != nil {
			t.Fatalf("iteration %d: after the Await gave up, key t is still tracked (waiters %d, owned %v): its lease is held by no one", i, ks.waiters, ks.own != nil)
		}
		leases, err := st.ListLeases(bg)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range leases {
			if l.Owner != "" {
				t.Fatalf("iteration %d: lease %s still owned by %s after the Await gave up", i, l.Key, l.Owner)
			}
		}
	}
}

// TestMajority: the definition most live members hold wins; between
// equally many the smaller hash wins, and the answer says it was a tie
// (what the drift log and lease_wait then say instead of "the majority's").
func TestMajority(t *testing.T) {
	defs := func(hashes ...string) []store.Member {
		var live []store.Member
		for i, h := range hashes {
			m := store.Member{ID: fmt.Sprint("m", i), Triggers: map[string]string{}}
			if h != "" {
				m.Triggers["orders"] = h
			}
			live = append(live, m)
		}
		return live
	}
	tests := []struct {
		name string
		live []store.Member
		hash string
		tie  bool
	}{
		{"no member has it", defs("", ""), "", false},
		{"one member", defs("b"), "b", false},
		{"all agree", defs("b", "b"), "b", false},
		{"two against one", defs("b", "a", "b"), "b", false},
		{"one each", defs("b", "a"), "a", true},
		{"two each and one", defs("c", "b", "c", "b", "a"), "b", true},
		{"a member without it does not count", defs("b", "", "a", "b"), "b", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hash, tie := majority(tc.live, "orders")
			if hash != tc.hash || tie != tc.tie {
				t.Errorf("majority = %q, tie %v; want %q, %v", hash, tie, tc.hash, tc.tie)
			}
			if got := majorityHash(tc.live, "orders"); got != tc.hash {
				t.Errorf("majorityHash = %q, want %q", got, tc.hash)
			}
		})
	}
}

// TestDriftTieSaysSo: with two members on two definitions (a rolling update
// halfway), the one whose definition lost the tie does not call the other
// "the majority".
func TestDriftTieSaysSo(t *testing.T) {
	st := newTestStore(t)
	ctx := t.Context()
	clock := newFakeClock()
	changed := testConfig(t, "orders")
	changed.Triggers[0].Collection = "orders_v2"
	a := newManager(t, st, testConfig(t, "orders"), "a", clock)
	c := newManager(t, st, changed, "c", clock)
	for _, m := range []*Manager{a, c, a, c} {
		m.round(ctx)
	}
	var drifted []string
	for _, m := range []*Manager{a, c} {
		s, err := m.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Drift) == 0 {
			continue
		}
		drifted = append(drifted, m.self.ID)
		_, _, reason := m.LeaseWait("orders")
		if want := "differs from the definition that won a tie between equally many members (the smaller hash wins)"; !strings.Contains(reason, want) {
			t.Errorf("member %s: reason %q, want it to contain %q", m.self.ID, reason, want)
		}
	}
	if len(drifted) != 1 {
		t.Fatalf("drifted members %v, want exactly one", drifted)
	}
}
