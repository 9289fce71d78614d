package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// reloadSup is a Supervisor for several members of one trigger, which also
// models each member's runner across a configuration reload as
// runner.Runner does it: the reload gives the trigger its new definition
// and, when the trigger is running, restarts it with it at once under the
// lease it runs under.
type reloadSup struct {
	mu      sync.Mutex
	running string // member running the trigger ("" none)
	starts  []unitStart
	double  []string
}

// unitStart is one start of the trigger: by which member, with which
// definition, under which lease epoch.
type unitStart struct {
	member, def string
	epoch       int64
}

func (s *reloadSup) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("running %q, starts %v", s.running, s.starts)
}

// reloadMember is one member's runner of the trigger.
type reloadMember struct {
	s     *reloadSup
	id    string
	def   string       // the definition the runner has
	lease runner.Lease // the lease it runs under, nil when stopped
}

func (m *reloadMember) StartLeased(_ string, l runner.Lease) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if m.s.running != "" && m.s.running != m.id {
		m.s.double = append(m.s.double, m.s.running+" and "+m.id)
	}
	m.s.running, m.lease = m.id, l
	m.s.starts = append(m.s.starts, unitStart{m.id, m.def, l.Fence().Epoch})
	return nil
}

func (m *reloadMember) Stop(context.Context, string) error {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if m.s.running == m.id {
		m.s.running = ""
	}
	m.lease = nil
	return nil
}

// reload is runner.Runner.Reload for the trigger's new definition def.
func (m *reloadMember) reload(def string) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	m.def = def
	if m.lease != nil {
		m.s.starts = append(m.s.starts, unitStart{m.id, def, m.lease.Fence().Epoch})
	}
}

// reloadCluster is n members driving the trigger "orders", each with its
// Manager, Driver and runner model, reloaded as internal/cli does it.
type reloadCluster struct {
	t       *testing.T
	ids     []string
	mgrs    []*Manager
	drivers []*Driver
	members []*reloadMember
	sup     *reloadSup
	st      *store.Store
}

func startReloadCluster(t *testing.T, n int, cfg *triggers.Config) *reloadCluster {
	t.Helper()
	st := newTestStore(t)
	c := &reloadCluster{t: t, sup: &reloadSup{}, st: st}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	for i := range n {
		id := fmt.Sprintf("m%d", i)
		m, err := New(st, cfg, Options{InstanceID: id, LeaseTTL: 2 * time.Second, RenewEvery: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		mem := &reloadMember{s: c.sup, id: id, def: "D1"}
		d := NewDriver(ctx, m, mem, time.Second)
		c.ids, c.mgrs, c.drivers, c.members = append(c.ids, id), append(c.mgrs, m), append(c.drivers, d), append(c.members, mem)
		wg.Go(func() { _ = m.Run(ctx) })
		wg.Go(func() {
			d.Add(cfg)
			<-ctx.Done()
			d.Wait()
		})
	}
	return c
}

// reload applies cfg (the trigger's definition def) to member i.
func (c *reloadCluster) reload(i int, cfg *triggers.Config, def string) {
	c.t.Helper()
	if err := c.drivers[i].Retain(c.t.Context(), cfg); err != nil {
		c.t.Fatal(err)
	}
	c.members[i].reload(def)
	c.mgrs[i].SetTriggers(cfg)
	c.drivers[i].Add(cfg)
}

// settle waits until the trigger runs with def on the preferred member
// among the members of among (indexes), and returns that member's index.
func (c *reloadCluster) settle(def string, among ...int) int {
	c.t.Helper()
	var ids []string
	for _, i := range among {
		ids = append(ids, c.ids[i])
	}
	want := slices.Index(c.ids, PreferredMember(ids, "orders"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.sup.mu.Lock()
		ok := c.sup.running == c.ids[want] && c.members[want].def == def
		c.sup.mu.Unlock()
		if ok {
			return want
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the trigger does not run with %s on %s: %v", def, c.ids[want], c.sup)
		}
		time.Sleep(20 * time.Millisecond) // polling the model
	}
}

// check fails the test when two members ran the trigger at once, or when
// the trigger ran with D1 again after it ran with D2: D1 would resume from
// a checkpoint D2 wrote, past the events D2 leaves out.
func (c *reloadCluster) check() {
	c.t.Helper()
	c.sup.mu.Lock()
	defer c.sup.mu.Unlock()
	if len(c.sup.double) > 0 {
		c.t.Errorf("two members ran the trigger at once: %v", c.sup.double)
	}
	if i := slices.IndexFunc(c.sup.starts, func(s unitStart) bool { return s.def == "D2" }); i >= 0 {
		if slices.ContainsFunc(c.sup.starts[i:], func(s unitStart) bool { return s.def == "D1" }) {
			c.t.Errorf("the trigger ran with D1 after it ran with D2: %v", c.sup.starts)
		}
	}
}

// changedConfig returns cfg with the trigger reading another collection.
func changedConfig(t *testing.T) *triggers.Config {
	cfg := testConfig(t, "orders")
	cfg.Triggers[0].Collection = "orders_v2"
	return cfg
}

// TestReloadRollingDefinitionChange: three members run a trigger with
// definition D1 and reload D2 one after another, the lease holder first.
// Alone with D2, the holder is in the minority: it stops the trigger under
// D1 and hands the lease off without ever running D2 under it; the
// trigger keeps running with D1 until D2 is the majority's, then with D2
// only; never on two members at once.
func TestReloadRollingDefinitionChange(t *testing.T) {
	d1, d2 := testConfig(t, "orders"), changedConfig(t)
	c := startReloadCluster(t, 3, d1)
	holder := c.settle("D1", 0, 1, 2)
	rest := slices.DeleteFunc([]int{0, 1, 2}, func(i int) bool { return i == holder })

	c.reload(holder, d2, "D2")
	next := c.settle("D1", rest...)
	c.check()
	c.sup.mu.Lock()
	for _, s := range c.sup.starts {
		if s.def == "D2" {
			t.Errorf("%s ran D2 while D1 was the majority's definition: %v", s.member, c.sup.starts)
		}
	}
	c.sup.mu.Unlock()
	if s, _ := c.mgrs[holder].Status(t.Context()); !slices.Equal(s.Drift, []string{"orders"}) {
		t.Errorf("the reloaded holder reports drift %v, want [orders]", s.Drift)
	}

	// The member now running D1 reloads second: D2 is the majority's.
	c.reload(next, d2, "D2")
	c.settle("D2", holder, next)
	c.check()

	last := rest[0]
	if last == next {
		last = rest[1]
	}
	c.reload(last, d2, "D2")
	c.settle("D2", 0, 1, 2)
	c.check()
}

// TestReloadKeepsLeaseWhenStillPreferred: a single member (the majority
// by itself) that reloads a changed definition stops the trigger under the
// old one and runs the new one under the same lease, without releasing
// it.
func TestReloadKeepsLeaseWhenStillPreferred(t *testing.T) {
	d1, d2 := testConfig(t, "orders"), changedConfig(t)
	c := startReloadCluster(t, 1, d1)
	c.settle("D1", 0)
	c.reload(0, d2, "D2")
	c.settle("D2", 0)
	c.check()
	c.sup.mu.Lock()
	defer c.sup.mu.Unlock()
	want := []unitStart{{"m0", "D1", 1}, {"m0", "D2", 1}}
	if !slices.Equal(c.sup.starts, want) {
		t.Fatalf("starts = %v, want %v: the lease is kept across the reload", c.sup.starts, want)
	}
}

// TestReloadReleasesKeptLeaseAddDoesNotUse: a lease Retain kept for a changed
// definition is released by the Add that follows when Add does not run the
// unit (the reload left the trigger out), instead of being renewed, unused,
// for as long as the member lives.
func TestReloadReleasesKeptLeaseAddDoesNotUse(t *testing.T) {
	d1, d2 := testConfig(t, "orders"), changedConfig(t)
	c := startReloadCluster(t, 1, d1)
	c.settle("D1", 0)
	owner := func() string {
		t.Helper()
		leases, err := c.st.ListLeases(t.Context())
		if err != nil || len(leases) != 1 {
			t.Fatalf("leases = %+v, %v", leases, err)
		}
		return leases[0].Owner
	}
	if err := c.drivers[0].Retain(t.Context(), d2); err != nil {
		t.Fatal(err)
	}
	if o := owner(); o != "m0" {
		t.Fatalf("the lease Retain kept is owned by %q, want m0", o)
	}
	c.mgrs[0].SetTriggers(&triggers.Config{})
	c.drivers[0].Add(&triggers.Config{})
	if o := owner(); o != "" {
		t.Fatalf("after an Add without the unit its kept lease is owned by %q, want released", o)
	}
}

// heartbeatGate is a Store whose next Heartbeat, once armed, waits until
// the gate is opened.
type heartbeatGate struct {
	*store.Store
	mu      sync.Mutex
	armed   chan struct{} // closed when the armed Heartbeat arrived
	release chan struct{} // closed to let it through
}

func (g *heartbeatGate) arm() (arrived, open chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed, g.release = make(chan struct{}), make(chan struct{})
	return g.armed, g.release
}

func (g *heartbeatGate) Heartbeat(ctx context.Context, m store.Member, ttl time.Duration) error {
	g.mu.Lock()
	arrived, release := g.armed, g.release
	g.armed, g.release = nil, nil
	g.mu.Unlock()
	if arrived != nil {
		close(arrived)
		<-release
	}
	return g.Store.Heartbeat(ctx, m, ttl)
}

// TestRoundDoesNotDecideOnReplacedDefinitions: a round whose heartbeat
// published this member's definitions before SetTriggers replaced them
// does not acquire a lease on them: with its old definition it was the
// trigger's preferred owner, with its new one it is in the minority.
func TestRoundDoesNotDecideOnReplacedDefinitions(t *testing.T) {
	st := &heartbeatGate{Store: newTestStore(t)}
	ctx := t.Context()
	clock := newFakeClock()
	d1 := testConfig(t, "orders")
	ids := []string{"a", "b", "c"}
	pref := PreferredMember(ids, "orders")
	var mgrs []*Manager
	for _, id := range ids {
		m := newManager(t, st, d1, id, clock)
		m.round(ctx)
		mgrs = append(mgrs, m)
	}
	m := mgrs[slices.Index(ids, pref)]
	owns := await(ctx, m, "orders")
	waitRegistered(t, m, 1)

	arrived, open := st.arm()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.round(ctx) // heartbeats D1
	}()
	<-arrived
	m.SetTriggers(changedConfig(t))
	close(open)
	<-done
	m.round(ctx) // heartbeats D2: in the minority
	if o := acquired(t, m, "orders", owns); o != nil {
		t.Fatalf("%s acquired the lease (epoch %d) on the definitions SetTriggers replaced", pref, o.Fence().Epoch)
	}
	if leases, _ := st.ListLeases(ctx); slices.ContainsFunc(leases, func(l store.Lease) bool { return l.Owner == pref }) {
		t.Fatalf("leases = %+v; %s must not hold one", leases, pref)
	}
	if s, _ := m.Status(ctx); !slices.Equal(s.Drift, []string{"orders"}) {
		t.Fatalf("drift = %v, want [orders]", s.Drift)
	}
}

// heartbeatFaults is a Store whose heartbeats fail while fail is set (the
// renewals go through), and which reports every lease release on
// released.
type heartbeatFaults struct {
	*store.Store
	fail     atomic.Bool
	released chan string
}

func (f *heartbeatFaults) Heartbeat(ctx context.Context, m store.Member, ttl time.Duration) error {
	if f.fail.Load() {
		return errors.New("heartbeat: network unreachable")
	}
	return f.Store.Heartbeat(ctx, m, ttl)
}

func (f *heartbeatFaults) ReleaseLease(ctx context.Context, key string, fe store.Fence) error {
	err := f.Store.ReleaseLease(ctx, key, fe)
	f.released <- key
	return err
}

// leaseSup is a Supervisor that reports every start's lease on starts.
type leaseSup struct{ starts chan runner.Lease }

func (s leaseSup) StartLeased(_ string, l runner.Lease) error {
	s.starts <- l
	return nil
}

func (leaseSup) Stop(context.Context, string) error { return nil }

// TestReloadReleasesKeptLeaseWhenNoRoundDecides: a reload changes the definition
// of the trigger this member runs while its heartbeats fail (its renewals
// go through). No round can publish the new definition, so the trigger
// must not start under the lease Retain kept; but holding that lease
// longer than a lease TTL without running the trigger keeps every member
// from running it. So the lease is released with a warning that says
// why, and the trigger awaits its lease like any other: once the
// heartbeats go through again, the member acquires it and runs the
// trigger.
func TestReloadReleasesKeptLeaseWhenNoRoundDecides(t *testing.T) {
	st := &heartbeatFaults{Store: newTestStore(t), released: make(chan string, 8)}
	ctx := t.Context()
	clock := newFakeClock()
	var logs syncbuf.Buffer
	d1, d2 := testConfig(t, "orders"), changedConfig(t)
	m, err := New(st, d1, Options{InstanceID: "a", Clock: clock, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	sup := leaseSup{starts: make(chan runner.Lease, 8)}
	d := NewDriver(ctx, m, sup, time.Second)
	t.Cleanup(d.Wait)
	started := func() runner.Lease {
		t.Helper()
		select {
		case l := <-sup.starts:
			return l
		case <-time.After(30 * time.Second):
			t.Fatal("the trigger was not started")
			return nil
		}
	}
	d.Add(d1)
	waitRegistered(t, m, 1)
	m.round(ctx)
	if l := started(); l.Fence().Epoch != 1 {
		t.Fatalf("started under epoch %d, want 1", l.Fence().Epoch)
	}

	st.fail.Store(true)
	if err := d.Retain(ctx, d2); err != nil {
		t.Fatal(err)
	}
	m.SetTriggers(d2)
	d.Add(d2)
	ttl, every := m.opts.LeaseTTL, m.opts.RenewEvery
	for elapsed := time.Duration(0); elapsed <= 2*ttl; elapsed += every {
		m.round(ctx) // renews the lease; the heartbeat fails
		clock.Advance(every)
	}
	select {
	case key := <-st.released:
		if key != "orders" {
			t.Fatalf("released %q, want orders", key)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the lease kept for the changed definition is still held %s after the reload, with no round deciding", 2*ttl)
	}
	select {
	case l := <-sup.starts:
		t.Fatalf("the trigger started (epoch %d) although no round published its new definition", l.Fence().Epoch)
	default:
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "heartbeat: network unreachable") {
		t.Errorf("no warning naming the failed heartbeat; logs:\n%s", logs.String())
	}

	st.fail.Store(false)
	waitRegistered(t, m, 1)
	m.round(ctx)
	if l := started(); l.Fence().Epoch != 2 {
		t.Fatalf("started again under epoch %d, want 2", l.Fence().Epoch)
	}
}

// stopSup is a Supervisor that reports every start's lease on starts and
// every stop's key on stops.
type stopSup struct {
	starts chan runner.Lease
	stops  chan string
}

func (s stopSup) StartLeased(_ string, l runner.Lease) error {
	s.starts <- l
	return nil
}

func (s stopSup) Stop(_ context.Context, key string) error {
	s.stops <- key
	return nil
}

// TestShutdownDuringReloadReleasesKeptLease: the process is told to stop
// (the Driver's context ends) while a reload that changed the trigger's
// definition has stopped it and kept its lease, before Add. The trigger
// was stopped (its final checkpoint saved) by Retain; Add, if the reload
// still gets to it, starts nothing; Wait returns with the kept lease
// released, while the membership still runs (as serve keeps it until the
// other triggers drained), so that another member takes the trigger at
// once; then the member leaves.
func TestShutdownDuringReloadReleasesKeptLease(t *testing.T) {
	st := newTestStore(t)
	d1, d2 := testConfig(t, "orders"), changedConfig(t)
	m, err := New(st, d1, Options{InstanceID: "a", LeaseTTL: 2 * time.Second, RenewEvery: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stopMembership := context.WithCancel(t.Context())
	defer stopMembership()
	ran := make(chan error, 1)
	go func() { ran <- m.Run(mctx) }()
	dctx, shutdown := context.WithCancel(t.Context())
	defer shutdown()
	sup := stopSup{starts: make(chan runner.Lease, 8), stops: make(chan string, 8)}
	d := NewDriver(dctx, m, sup, time.Second)
	d.Add(d1)
	var l runner.Lease
	select {
	case l = <-sup.starts:
	case <-time.After(30 * time.Second):
		t.Fatal("the trigger was not started")
	}
	owner := func() string {
		t.Helper()
		leases, err := st.ListLeases(t.Context())
		if err != nil || len(leases) != 1 {
			t.Fatalf("leases = %+v, %v", leases, err)
		}
		return leases[0].Owner
	}

	if err := d.Retain(t.Context(), d2); err != nil {
		t.Fatal(err)
	}
	if key := <-sup.stops; key != "orders" {
		t.Fatalf("Retain stopped %q, want orders", key)
	}
	if o := owner(); o != "a" {
		t.Fatalf("the lease Retain kept is owned by %q, want a", o)
	}
	shutdown()
	m.SetTriggers(d2)
	d.Add(d2) // the reload goes on after the shutdown began
	waited := make(chan struct{})
	go func() {
		d.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return after the shutdown began")
	}
	if o := owner(); o != "" {
		t.Errorf("after Wait the lease kept by the reload is owned by %q, want released", o)
	}
	if l.(*Ownership).Context().Err() == nil {
		t.Error("the kept ownership is still live after Wait")
	}
	select {
	case l := <-sup.starts:
		t.Errorf("the trigger started (epoch %d) after the shutdown began", l.Fence().Epoch)
	default:
	}

	stopMembership()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if o := owner(); o != "" {
		t.Errorf("after the member left the lease is owned by %q", o)
	}
	if ms, _ := st.ListMembers(t.Context()); len(ms) != 0 {
		t.Errorf("members after shutdown = %+v", ms)
	}
}
