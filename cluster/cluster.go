// Package cluster lets several changehook instances share one configuration
// and one state database without delivering a trigger twice: each instance
// registers in <state>.members and heartbeats, and runs a trigger only while
// it holds the trigger's lease in <state>.leases.
//
// Leases expire by the state database's clock ($$NOW), so clock skew between
// hosts cannot give a lease two owners. An owner renews at the start of
// every round, and rounds start RenewEvery apart (a round takes at most
// RenewEvery), so that after one lost renewal the next comes 2 × RenewEvery
// after the last that succeeded, within the local deadline below
// (triggers.MaxRenewEvery bounds RenewEvery for that); when it cannot
// renew, it fences itself: its Ownership's local deadline (the
// instant the renewal request was sent plus the TTL, minus a margin)
// passes before the lease can expire at the server, and from then on
// Ownership.Valid is false (no delivery may start, no checkpoint may be
// written) and Ownership.Context is canceled (stop reading). Checkpoint
// writes are also fenced in the database by the lease epoch (see
// store.SaveFencedCheckpoint).
//
// The local deadline is kept on two clocks, and it holds only while
// neither says it has passed: the process's monotonic clock, which a
// stepped wall clock cannot move, and the wall clock, which keeps counting
// while the host is suspended (a closed laptop, a virtual machine paused
// by its hypervisor), when the monotonic clock stops (CLOCK_MONOTONIC on
// Linux) while the lease goes on expiring by the state database's clock.
// A member resumed after a suspend longer than the time its deadline had
// left is invalid at once, and its Context is canceled within RenewEvery
// (the watchdog sleeps on the monotonic clock); a wall clock stepped
// backwards cannot extend a lease (the monotonic clock still bounds it),
// and one stepped forward only fences early.
//
// Triggers are spread over the live members by rendezvous hashing; a member
// whose definition of a trigger differs from the majority of members does
// not run it. When the preferred owner of a trigger changes (a member
// joined), the current owner's Ownership.Context is canceled while the lease
// is still renewed: the runner stops reading, drains, checkpoints and calls
// Release, and the new owner acquires the lease at its next round.
package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is the part of *store.Store the Manager uses.
type Store interface {
	Heartbeat(ctx context.Context, m store.Member, ttl time.Duration) error
	LiveMembers(ctx context.Context) ([]store.Member, error)
	RemoveMember(ctx context.Context, id string) error
	PruneMembers(ctx context.Context, olderThan time.Duration) error
	AcquireLease(ctx context.Context, key, owner string, ttl time.Duration) (store.Lease, error)
	RenewLease(ctx context.Context, key string, f store.Fence, ttl time.Duration) (store.Lease, error)
	ReleaseLease(ctx context.Context, key string, f store.Fence) error
	ListLeases(ctx context.Context) ([]store.Lease, error)
	// DefinitionHashKey returns the key of the definition hashes members
	// publish, the same for every member (see store.Store.DefinitionHashKey).
	DefinitionHashKey(ctx context.Context) ([]byte, error)
	// ReadDefinitionHashKey returns that key without creating it; its
	// error wraps store.ErrNoDefinitionHashKey when there is none.
	ReadDefinitionHashKey(ctx context.Context) ([]byte, error)
}

// batchRenewer is implemented by a Store (such as *store.Store) that can
// renew many leases in one write; see store.Store.RenewLeases.
type batchRenewer interface {
	RenewLeases(ctx context.Context, refs []store.LeaseRef, ttl time.Duration) (int, error)
}

// currentLeaseReader is implemented by a Store (such as *store.Store) that
// can read only the leases an overview shows and count the others; see
// store.Store.ListCurrentLeases and CountOtherLeases.
type currentLeaseReader interface {
	ListCurrentLeases(ctx context.Context, keys []string) ([]store.Lease, error)
	CountOtherLeases(ctx context.Context, keys []string, limit int64) (int64, error)
}

// releaseWatcher is implemented by a Store (such as *store.Store) that can
// report lease releases and member departures as they happen; see
// store.Store.WatchReleases.
type releaseWatcher interface {
	WatchReleases(ctx context.Context, notify func()) error
}

// Options configure a Manager; zero values take defaults.
type Options struct {
	// InstanceID names this instance (default: NewInstanceID()).
	InstanceID string
	// LeaseTTL is the lease and heartbeat lifetime (default
	// triggers.DefaultLeaseTTL).
	LeaseTTL time.Duration
	// RenewEvery is the period of heartbeats, renewals and acquisition
	// rounds, from the start of one to the start of the next (default
	// LeaseTTL/3, also taken instead of a value above
	// triggers.MaxRenewEvery(LeaseTTL)).
	RenewEvery time.Duration
	// Version is recorded in the member document.
	Version string
	// Clock is the process's clock for self-fencing: with
	// dispatcher.SystemClock (the default), Go's monotonic clock, which a
	// stepped wall clock does not move but which stops while the host is
	// suspended.
	Clock dispatcher.Clock
	// Wall is the clock that keeps counting while the host is suspended
	// (default: the wall reading of Clock.Now(), so that one reading
	// serves both). A lease's local deadline passes when either Clock or
	// Wall says it has.
	Wall func() time.Time
	// Logger receives membership and lease changes (default slog.Default()).
	Logger *slog.Logger
	// Registry receives the cluster metrics (nil: not registered).
	Registry prometheus.Registerer
}

// Manager keeps this instance's membership and leases. Its methods are safe
// for concurrent use.
type Manager struct {
	st     Store
	opts   Options
	log    *slog.Logger
	clock  dispatcher.Clock
	margin time.Duration
	self   store.Member
	met    *clusterMetrics
	// defs are the enabled triggers whose hashes self announces, by
	// name; hashKey is the cluster's definition hash key once a round
	// read it (nil before): self.Triggers and self.ConfigHash are empty
	// until then. Both guarded by mu.
	defs    map[string]*triggers.Trigger
	hashKey []byte

	mu      sync.Mutex
	keys    map[string]*keyState // every key a runner awaits or owns
	members []store.Member       // live members as last read
	// gen counts SetTriggers calls: the generation of self's definitions.
	gen uint64
	// decided is the newest generation a round heartbeated and then
	// decided the handoffs on (see awaitDecided); decidedCh is closed and
	// replaced whenever it moves.
	decided   uint64
	decidedCh chan struct{}
	// undecided says why the last round that decided nothing did not.
	undecided string
	drift     map[string]bool // triggers this instance does not run because its definition is in the minority
	// layoutWait: keys not acquired because another member holds a lease
	// of their trigger under another partitioning (layoutsFree), with
	// that lease's key and owner, so that the wait is logged once.
	layoutWait map[string]string
	// fencedWhy: why this member last fenced its ownership of a key,
	// until it acquires the key again, so that the wait for its own lease
	// to lapse says why (see heldWaitLocked).
	fencedWhy map[string]string
	// parts is the number of partitions (1: not partitioned) of every
	// configured trigger, enabled or not: the units whose lease series
	// are exported.
	parts   map[string]int
	wake    chan struct{}
	stopped bool
	// checkedPrevious: the previous process with this instance id was
	// looked at (see releasePrevious); only the first rounds do.
	checkedPrevious bool
	// deadNoted: the live members already logged as certainly dead (see
	// noteDeadMembers), rebuilt each round from those still registered.
	deadNoted map[string]bool
	// leaving: Leave was called; heartbeats list no trigger from then on
	// and rounds decide nothing.
	leaving bool

	// hbMu orders this member's heartbeats (a round's, Leave's) and the
	// removal of its registration, so that none of them reaches the state
	// database after one that was decided later: a round's heartbeat
	// carrying the triggers must not land after Leave's, nor any after
	// shutdown removed the registration.
	hbMu sync.Mutex
	// heartbeated: a heartbeat succeeded (guarded by hbMu).
	heartbeated bool
	leaveOnce   sync.Once
}

// keyState is one lease key this instance wants (a runner is in Await) or
// holds.
type keyState struct {
	trigger   string
	partition int
	waiters   int
	deliver   chan *Ownership // buffered (1): the acquired ownership for Await
	own       *Ownership      // held lease, nil when none
	wait      leaseWait       // why the last round did not acquire it (see LeaseWait)
}

// leaseWait is why a round that tried to acquire a key did not: the member
// holding its lease or one of its trigger's (by member and until, by this
// instance's clock; "" and zero when not known) and a sentence.
type leaseWait struct {
	member string
	until  time.Time
	reason string
}

// NewInstanceID returns hostname-pid-random, the default instance id.
func NewInstanceID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "host"
	}
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// DefinitionHash returns a hash of the definition of t that members
// compare (triggers.WriteClusterDefinition: the trigger as shown, secret
// values included; not its position, the partition a copy reads, the
// network or state sections, or the process's time zone), for telling
// within one process whether a reload changed a trigger as the cluster
// sees it: it changes exactly when the hash a member publishes for t does,
// and a partition's copy hashes as its trigger. It is not keyed, so a
// secret with few possible values could be guessed from it: it is never
// published, logged or shown. What members publish is memberHash, keyed
// by the cluster's definition hash key.
func DefinitionHash(t *triggers.Trigger) string {
	h := sha256.New()
	writeDefinition(h, t)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// keyedHashPrefix starts every hash memberHash returns, telling it from
// the unkeyed hash of the redacted definition (16 hex digits) that
// members of earlier versions publish.
const keyedHashPrefix = "k:"

// memberHash is the hash of t's definition a member publishes: HMAC-SHA256
// under the cluster's definition hash key of what
// triggers.WriteClusterDefinition writes (secret values included, so a
// webhook URL, header value or signing key that differs between members
// is drift), cut to 8 bytes, in hex after keyedHashPrefix. Without the
// key it tells nothing about a secret, however few values it could take.
func memberHash(key []byte, t *triggers.Trigger) string {
	mac := hmac.New(sha256.New, key)
	writeDefinition(mac, t)
	return keyedHashPrefix + hex.EncodeToString(mac.Sum(nil)[:8])
}

// writeDefinition writes t's triggers.WriteClusterDefinition to h; a
// definition it cannot write (which a parsed trigger never is) is hashed
// by its name alone.
func writeDefinition(h hash.Hash, t *triggers.Trigger) {
	if err := triggers.WriteClusterDefinition(h, t); err != nil {
		h.Reset()
		_, _ = io.WriteString(h, t.Name)
	}
}

// ConfigHash hashes the definitions of every trigger of cfg.
func ConfigHash(hashes map[string]string) string {
	names := make([]string, 0, len(hashes))
	for n := range hashes {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s=%s\n", n, hashes[n])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// New returns a Manager for the enabled triggers of cfg; it does no I/O.
func New(st Store, cfg *triggers.Config, opts Options) (*Manager, error) {
	if st == nil || cfg == nil {
		return nil, errors.New("new cluster manager: nil store or config")
	}
	opts = settings(cfg, opts)
	if opts.InstanceID == "" {
		opts.InstanceID = NewInstanceID()
	}
	if opts.Clock == nil {
		opts.Clock = dispatcher.SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	host, _ := os.Hostname()
	m := &Manager{
		st:    st,
		opts:  opts,
		log:   opts.Logger.With("instance", opts.InstanceID),
		clock: opts.Clock,
		// The local deadline stays a safety margin short of the server's
		// expiry: clock rate differences and the time between the server
		// reading $$NOW and our next check.
		margin: opts.LeaseTTL / 5,
		self: store.Member{ID: opts.InstanceID, Host: host, PID: os.Getpid(), Version: opts.Version,
			Triggers: map[string]string{}, Started: opts.Clock.Now(),
			Incarnation: incarnation(os.Getpid())},
		met:       newMetrics(opts.Registry),
		keys:      map[string]*keyState{},
		drift:     map[string]bool{},
		parts:     partitionCounts(cfg),
		defs:      enabledTriggers(cfg),
		wake:      make(chan struct{}, 1),
		decidedCh: make(chan struct{}),
	}
	return m, nil
}

// settings returns opts with the instance id, lease TTL and renewal period
// it leaves unset taken from cfg's cluster section, then from the
// defaults; the instance id stays "" when cfg names none either (each
// process then generates its own).
func settings(cfg *triggers.Config, opts Options) Options {
	if opts.InstanceID == "" {
		opts.InstanceID = cfg.Cluster.InstanceID
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = cfg.Cluster.LeaseTTL
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = triggers.DefaultLeaseTTL
	}
	if opts.RenewEvery <= 0 {
		opts.RenewEvery = cfg.Cluster.RenewEvery
	}
	if opts.RenewEvery <= 0 || opts.RenewEvery > triggers.MaxRenewEvery(opts.LeaseTTL) {
		opts.RenewEvery = opts.LeaseTTL / 3
	}
	return opts
}

// PublishedHash returns the hash this member publishes for the definition
// t (store.Member.Triggers), keyed by the cluster's definition hash key;
// "" until its first round read the key.
func (m *Manager) PublishedHash(t *triggers.Trigger) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hashKey == nil {
		return ""
	}
	return memberHash(m.hashKey, t)
}

// enabledTriggers maps each enabled trigger of cfg to its definition.
func enabledTriggers(cfg *triggers.Config) map[string]*triggers.Trigger {
	defs := map[string]*triggers.Trigger{}
	for _, t := range cfg.Triggers {
		if t.Enabled {
			defs[t.Name] = t
		}
	}
	return defs
}

// definitionHashes maps each trigger of defs to its memberHash under key:
// what a member running them publishes (store.Member.Triggers).
func definitionHashes(key []byte, defs map[string]*triggers.Trigger) map[string]string {
	hashes := make(map[string]string, len(defs))
	for name, t := range defs {
		hashes[name] = memberHash(key, t)
	}
	return hashes
}

// rehashLocked sets self's trigger hashes and configuration hash from
// defs, once the definition hash key is known. m.mu is held.
func (m *Manager) rehashLocked() {
	if m.hashKey == nil {
		return
	}
	hashes := definitionHashes(m.hashKey, m.defs)
	m.self.Triggers, m.self.ConfigHash = hashes, ConfigHash(hashes)
}

// InstanceID returns this instance's id.
func (m *Manager) InstanceID() string { return m.opts.InstanceID }

// LeaseTTL returns the lease lifetime in use.
func (m *Manager) LeaseTTL() time.Duration { return m.opts.LeaseTTL }

// Key returns the lease (and checkpoint) key of partition p of n of trigger:
// the trigger name when n is 1, else "NAME/p<p>of<n>".
func Key(trigger string, p, n int) string { return triggers.PartitionKey(trigger, p, n) }

// Ownership is this instance's hold of one lease, handed out by Await.
type Ownership struct {
	m       *Manager
	key     string
	trigger string
	part    int
	fence   store.Fence
	ctx     context.Context
	cancel  context.CancelCauseFunc
	mu      sync.Mutex
	expires instant // local deadline, on both clocks
	lost    bool
	stopped bool // graceful handoff asked
	done    bool // released
}

// Errors given as the cause of an Ownership's context.
var (
	// ErrHandoff: another member is now the trigger's preferred owner; stop,
	// drain, checkpoint and Release.
	ErrHandoff = errors.New("lease handed off to another member")
	// ErrFenced: the lease could not be renewed in time or was lost; stop at
	// once, without a checkpoint.
	ErrFenced = errors.New("lease lost: self-fenced")
)

// Key returns the lease key.
func (o *Ownership) Key() string { return o.key }

// triggerOf returns the name of the trigger whose unit has lease key (a
// trigger's name, or a partition's key made by Key), for the trigger
// attribute of a log line about the lease; the key itself when Key cannot
// have made it.
func triggerOf(key string) string {
	if name, _, _, ok := triggers.ParsePartitionKey(key); ok {
		return name
	}
	return key
}

// Fence returns the owner and epoch for fenced checkpoint writes.
func (o *Ownership) Fence() store.Fence { return o.fence }

// Context is canceled when the trigger must stop: at handoff (cause
// ErrHandoff; the lease is still renewed until Release), when the lease is
// lost or its local deadline passes (cause ErrFenced), or when the context
// given to Await ends.
func (o *Ownership) Context() context.Context { return o.ctx }

// Deadline returns the instant, on the Manager's Clock, after which this
// instance may no longer deliver or checkpoint under this lease: the local
// deadline by whichever of Clock and the wall clock (Options.Wall) has the
// less of it left now. It moves on each renewal, and comes nearer at once
// when the wall clock leaps ahead of Clock (the host was suspended); zero
// when the lease is lost or released.
func (o *Ownership) Deadline() time.Time {
	o.mu.Lock()
	exp, held := o.expires, !o.lost && !o.done
	o.mu.Unlock()
	if !held {
		return time.Time{}
	}
	now := o.m.now()
	if mono, wall := now.until(exp); wall < mono {
		return now.mono.Add(wall)
	}
	return exp.mono
}

// Valid reports whether a delivery may start or a checkpoint be written
// now: the lease is held and neither Clock nor the wall clock says its
// local deadline has passed. With the default wall clock it reads the
// clock once.
func (o *Ownership) Valid() bool {
	o.mu.Lock()
	exp, held := o.expires, !o.lost && !o.done
	o.mu.Unlock()
	return held && o.m.now().before(exp)
}

// instant is one reading of the Manager's clocks, or a deadline on them:
// mono on Options.Clock, wall on the wall clock, without a monotonic
// reading (so that comparing two walls compares wall times).
type instant struct{ mono, wall time.Time }

// now reads the Manager's clocks: with the default wall clock, one reading
// of Clock carries both (Round(0) strips its monotonic reading).
func (m *Manager) now() instant {
	t := m.clock.Now()
	if m.opts.Wall != nil {
		return instant{mono: t, wall: m.opts.Wall().Round(0)}
	}
	return instant{mono: t, wall: t.Round(0)}
}

// add returns i moved by d on both clocks.
func (i instant) add(d time.Duration) instant {
	return instant{mono: i.mono.Add(d), wall: i.wall.Add(d)}
}

// before reports whether i comes before d on both clocks.
func (i instant) before(d instant) bool {
	return i.mono.Before(d.mono) && i.wall.Before(d.wall)
}

// until returns how long from i to d on each clock.
func (i instant) until(d instant) (mono, wall time.Duration) {
	return d.mono.Sub(i.mono), d.wall.Sub(i.wall)
}

// abandon forgets the ownership without releasing the lease (the trigger
// did not stop in time): the lease expires by itself.
func (o *Ownership) abandon() {
	o.mu.Lock()
	o.lost = true
	o.mu.Unlock()
	o.Release(context.Background())
}

// Release gives the lease up after the final checkpoint, so that the next
// owner starts at once. It is called once the runner stopped the trigger;
// further calls do nothing.
func (o *Ownership) Release(ctx context.Context) {
	o.mu.Lock()
	if o.done {
		o.mu.Unlock()
		return
	}
	o.done = true
	lost := o.lost
	o.mu.Unlock()
	o.cancel(context.Canceled)
	m := o.m
	m.mu.Lock()
	if ks := m.keys[o.key]; ks != nil && ks.own == o {
		ks.own = nil
		if ks.waiters == 0 {
			delete(m.keys, o.key)
		}
	}
	m.leaseOwned(o, false)
	m.mu.Unlock()
	if lost {
		return
	}
	if err := m.st.ReleaseLease(context.WithoutCancel(ctx), o.key, o.fence); err != nil {
		m.log.Warn("cannot release lease; it will expire", "trigger", o.trigger, "key", o.key, "error", err)
		return
	}
	m.mu.Lock()
	m.leaseTransition(o, "released")
	m.mu.Unlock()
	m.log.Info("lease released", "trigger", o.trigger, "key", o.key, "epoch", o.fence.Epoch)
	m.poke()
}

// Await blocks until this instance holds the lease of partition p of n of
// trigger, then returns the Ownership; the caller runs the trigger under
// Ownership.Context and calls Release when done. It returns ctx's error when
// ctx ends first.
func (m *Manager) Await(ctx context.Context, trigger string, p, n int) (*Ownership, error) {
	key := Key(trigger, p, n)
	m.mu.Lock()
	ks := m.keys[key]
	if ks == nil {
		ks = &keyState{trigger: trigger, partition: p, deliver: make(chan *Ownership, 1)}
		m.keys[key] = ks
	}
	ks.waiters++
	m.mu.Unlock()
	m.poke()
	select {
	case o := <-ks.deliver:
		m.mu.Lock()
		ks.waiters--
		m.mu.Unlock()
		return o, nil
	case <-ctx.Done():
		// acquire delivers under m.mu to a key with waiters: leaving and
		// looking for a delivery in the same critical section, an
		// ownership delivered before is released here and none is
		// delivered after (acquire then releases the lease itself).
		// Looked for outside it, a delivery in between was left to no
		// one, its lease renewed forever.
		m.mu.Lock()
		ks.waiters--
		var stray *Ownership
		if ks.waiters == 0 {
			select {
			case stray = <-ks.deliver:
			default:
			}
			if ks.own == nil {
				delete(m.keys, key)
			}
		}
		m.mu.Unlock()
		if stray != nil {
			stray.Release(ctx)
		}
		return nil, ctx.Err()
	}
}

func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Run heartbeats and manages leases in rounds starting every RenewEvery
// (or earlier, when a lease is released) until ctx ends; then it releases
// what is still held and removes this member. Runners should
// have stopped (and released) first: a lease released here may be taken by
// another member at once.
func (m *Manager) Run(ctx context.Context) error {
	m.log.Info("cluster member started", "lease_ttl", m.opts.LeaseTTL, "renew_every", m.opts.RenewEvery)
	if w, ok := m.st.(releaseWatcher); ok {
		wctx, stopWatch := context.WithCancel(ctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			m.watchReleases(wctx, w)
		}()
		defer func() {
			stopWatch()
			<-watched
		}()
	}
	for {
		started := m.clock.Now()
		m.round(ctx)
		roundCtx, cancel := context.WithCancel(ctx)
		select {
		case <-ctx.Done():
			cancel()
			m.shutdown()
			return nil
		case <-m.wake:
		case <-m.after(roundCtx, m.untilNextRound(started)):
		}
		cancel()
	}
}

// untilNextRound is how long Run waits, now, before the round after the
// one that started at started: RenewEvery from that start, never less than
// nothing. Counted from the round's end instead, a round whose renewal
// timed out (it takes up to RenewEvery) would put the next renewal
// 3 × RenewEvery after the last successful one, past the owner's local
// deadline with the default RenewEvery: one lost renewal would fence a
// healthy owner.
func (m *Manager) untilNextRound(started time.Time) time.Duration {
	return max(0, m.opts.RenewEvery-m.clock.Now().Sub(started))
}

// watchReleases brings a round forward whenever a lease is released or a
// member leaves, so that a planned handoff (a rolling restart, a member
// joining or stopping) pauses the trigger for about one round trip to the
// state database instead of up to RenewEvery. The periodic rounds remain
// the mechanism; the watch only wakes them early. When the watch fails it
// is opened again after RenewEvery; each distinct failure is logged once.
func (m *Manager) watchReleases(ctx context.Context, w releaseWatcher) {
	var last string
	for {
		err := w.WatchReleases(ctx, m.poke)
		if ctx.Err() != nil {
			return
		}
		if err != nil && err.Error() != last {
			last = err.Error()
			m.log.Info("cannot watch for released leases; they are taken at the next round", "error", err)
		}
		if m.clock.Sleep(ctx, m.opts.RenewEvery) != nil {
			return
		}
	}
}

// after returns a channel closed after d on the Manager's clock.
func (m *Manager) after(ctx context.Context, d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		_ = m.clock.Sleep(ctx, d)
		close(ch)
	}()
	return ch
}

func (m *Manager) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.LeaseTTL)
	defer cancel()
	m.hbMu.Lock()
	defer m.hbMu.Unlock()
	m.mu.Lock()
	m.stopped = true
	var owns []*Ownership
	for _, ks := range m.keys {
		if ks.own != nil {
			owns = append(owns, ks.own)
		}
	}
	m.mu.Unlock()
	for _, o := range owns {
		o.Release(ctx)
	}
	if err := m.st.RemoveMember(ctx, m.self.ID); err != nil {
		m.log.Warn("cannot remove member registration; it will expire", "error", err)
	}
	m.met.members.Set(0)
	m.log.Info("cluster member stopped")
}

// round is one heartbeat, renewal and acquisition pass.
//
// Its writes are not cancelled with ctx, only bounded by RenewEvery: a
// heartbeat cancelled in flight may still be applied by the server after
// shutdown removed the registration, which would bring this member back
// as live (and preferred) for a lease TTL and hold up its successors.
func (m *Manager) round(ctx context.Context) {
	opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.RenewEvery)
	defer cancel()
	// Renew first: it is what keeps the leases.
	m.renewAll(opCtx)
	if !m.checkedPrevious {
		// Before the first heartbeat overwrites the previous process's
		// registration under this id.
		if err := m.releasePrevious(opCtx); err != nil {
			m.log.Warn("cannot check for leases left by a previous process with this instance id", "error", err)
			m.setUndecided("cannot check for leases left by a previous process with this instance id: " + err.Error())
			return
		}
		m.checkedPrevious = true
	}
	m.mu.Lock()
	known := m.hashKey != nil
	m.mu.Unlock()
	if !known {
		// Before the first heartbeat: it publishes the definitions' hashes.
		key, err := m.st.DefinitionHashKey(opCtx)
		if err != nil {
			m.log.Warn("cannot read the cluster's definition hash key", "error", err)
			m.setUndecided("cannot read the cluster's definition hash key: " + err.Error())
			return
		}
		m.mu.Lock()
		m.hashKey = key
		m.rehashLocked()
		configHash := m.self.ConfigHash
		m.mu.Unlock()
		m.log.Info("read the cluster's definition hash key", "config_hash", configHash)
	}
	m.hbMu.Lock()
	m.mu.Lock()
	self, gen, leaving := m.announcedLocked(), m.gen, m.leaving // SetTriggers replaces Triggers and ConfigHash under mu
	m.mu.Unlock()
	err := m.st.Heartbeat(opCtx, self, m.opts.LeaseTTL)
	if err == nil {
		m.heartbeated = true
	}
	m.hbMu.Unlock()
	if err != nil {
		m.log.Warn("heartbeat failed", "error", err)
		m.setUndecided("heartbeat failed: " + err.Error())
		return
	}
	if leaving {
		// Renewed and announced as running nothing: the triggers still
		// draining keep their leases, and nothing is handed off or
		// acquired any more.
		return
	}
	live, err := m.st.LiveMembers(opCtx)
	if err != nil {
		m.log.Warn("cannot read members", "error", err)
		m.setUndecided("cannot read members: " + err.Error())
		return
	}
	m.noteDeadMembers(live)
	if !slices.ContainsFunc(live, func(x store.Member) bool { return x.ID == m.self.ID }) {
		// Our own heartbeat is not visible yet: decide nothing.
		m.setUndecided("this member's heartbeat is not among the live members it read")
		return
	}
	m.met.members.Set(float64(len(live)))
	m.mu.Lock()
	if m.gen != gen {
		// SetTriggers replaced the definitions since the heartbeat: live
		// shows this member's old ones, and a decision taken on them could
		// start a trigger's new definition under a lease this member would
		// not get with it (it may be in the minority now). The next round,
		// at once, publishes the new ones and decides.
		m.mu.Unlock()
		m.poke()
		return
	}
	m.members = live
	m.mu.Unlock()
	m.reportDrift(live)

	m.mu.Lock()
	if m.gen != gen { // as above
		m.mu.Unlock()
		m.poke()
		return
	}
	var acquire []string
	var handoff []*Ownership
	var standby map[string]string // awaited keys another member is to run: that member
	for key, ks := range m.keys {
		pref := m.preferred(live, ks.trigger, key)
		switch {
		case ks.own != nil && pref != m.self.ID:
			handoff = append(handoff, ks.own)
		case ks.own == nil && ks.waiters > 0 && pref == m.self.ID && len(ks.deliver) == 0:
			acquire = append(acquire, key)
		}
		if pref != m.self.ID {
			ks.wait = leaseWait{} // another member is to run it: LeaseWait says which
			if ks.own == nil && ks.waiters > 0 && pref != "" {
				if standby == nil {
					standby = map[string]string{}
				}
				standby[key] = pref
			}
		}
	}
	m.mu.Unlock()
	for _, o := range handoff {
		o.handoff()
	}
	m.mu.Lock()
	if gen > m.decided {
		m.decided = gen
		close(m.decidedCh)
		m.decidedCh = make(chan struct{})
	}
	m.mu.Unlock()
	sort.Strings(acquire)
	var leases []store.Lease
	var read time.Time // when leases were read, about
	if len(acquire) > 0 {
		var err error
		read = m.clock.Now()
		if acquire, leases, err = m.layoutsFree(opCtx, acquire); err != nil {
			m.log.Warn("cannot read the leases: acquiring nothing this round", "error", err)
			acquire = nil
		}
	}
	for _, key := range acquire {
		m.acquire(ctx, opCtx, key, leases, read)
	}
	m.noteStandbyLeases(opCtx, standby, leases, read)
	_ = m.st.PruneMembers(opCtx, 24*time.Hour)
}

// announcedLocked is the registration this member's heartbeats write:
// self, or, once it is leaving, self listing no trigger. m.mu is held.
func (m *Manager) announcedLocked() store.Member {
	self := m.self
	if m.leaving {
		self.Triggers = map[string]string{}
	}
	return self
}

// Leave announces that this member is leaving (it is shutting down): from
// then on its registration lists no trigger, so that no member takes it
// for the preferred owner of any — members of versions that do not know
// of Leave included, as for a member that has every trigger disabled —
// and each lease it releases while its other triggers still drain is
// taken at once by the member preferred without it. The leases it still
// holds stay renewed and keep protecting the triggers still draining until
// they are released; this member hands off and acquires nothing more.
//
// Leave writes the heartbeat before it returns (bounded by RenewEvery;
// a failure is logged, and the other members then take the released
// leases once this member's registration is removed or expires). Call it
// before releasing the first lease at shutdown; later calls wait for the
// first one and do nothing else. A Driver calls it once its context ended.
func (m *Manager) Leave(ctx context.Context) {
	m.leaveOnce.Do(func() {
		m.hbMu.Lock()
		defer m.hbMu.Unlock()
		m.mu.Lock()
		m.leaving = true
		self, stopped := m.announcedLocked(), m.stopped
		m.mu.Unlock()
		if stopped || !m.heartbeated {
			// Not registered (yet, or any more): nothing to announce.
			return
		}
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.RenewEvery)
		defer cancel()
		if err := m.st.Heartbeat(hctx, self, m.opts.LeaseTTL); err != nil {
			m.log.Warn("cannot announce that this member is leaving; the others take its released leases once its registration is gone",
				"error", err)
			return
		}
		m.log.Info("leaving the cluster: announced as running no trigger, so that the leases released from now on are taken over at once")
	})
}

// noteStandbyLeases records, for each key of standby (a unit a runner here
// awaits and the member standby names is to run), when that member's lease
// of the unit lapses unless renewed, as leases (read at read; nil: not
// read this round, so they are read now) have it: LeaseWait shows it. A
// unit whose lease that member does not hold keeps no time.
func (m *Manager) noteStandbyLeases(ctx context.Context, standby map[string]string, leases []store.Lease, read time.Time) {
	if len(standby) == 0 {
		return
	}
	if leases == nil {
		var err error
		read = m.clock.Now()
		if leases, err = m.currentLeases(ctx); err != nil {
			m.log.Debug("cannot read the leases: the standby units' lease_wait has no time this round", "error", err)
			return
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, member := range standby {
		ks := m.keys[key]
		if ks == nil || ks.own != nil {
			continue
		}
		i := slices.IndexFunc(leases, func(l store.Lease) bool { return l.Key == key && l.Owner == member && l.RemainingMS > 0 })
		if i >= 0 {
			ks.wait = leaseWait{member: member, until: read.Add(time.Duration(leases[i].RemainingMS) * time.Millisecond)}
		}
	}
}

// Unrun reports whether no member runs trigger now, as the state
// database has it: no live member lists the trigger enabled (whatever its
// definition) and no lease of any unit of it, under any number of
// partitions, is held unexpired. A member that has the trigger disabled
// acknowledges control requests for it only then
// (runner.Options.Unrun): otherwise the unit's lease holder, which has
// applied them, does.
func (m *Manager) Unrun(ctx context.Context, trigger string) (bool, error) {
	live, err := m.st.LiveMembers(ctx)
	if err != nil {
		return false, fmt.Errorf("tell whether a member runs the trigger: %w", err)
	}
	for _, mem := range live {
		if _, ok := mem.Triggers[trigger]; ok {
			return false, nil
		}
	}
	leases, err := m.currentLeases(ctx)
	if err != nil {
		return false, fmt.Errorf("tell whether a member runs the trigger: %w", err)
	}
	for _, l := range leases {
		if name, _, _, ok := triggers.ParsePartitionKey(l.Key); ok && name == trigger && l.Owner != "" && l.RemainingMS > 0 {
			return false, nil
		}
	}
	return true, nil
}

// currentLeases reads the leases held unexpired (at least; every lease
// when the store cannot tell them apart).
func (m *Manager) currentLeases(ctx context.Context) ([]store.Lease, error) {
	if cr, ok := m.st.(currentLeaseReader); ok {
		// The held leases only, not every lease document ever kept.
		return cr.ListCurrentLeases(ctx, nil)
	}
	return m.st.ListLeases(ctx)
}

// layoutsFree returns the keys of acquire whose trigger no other member
// runs under another partitioning: one whose lease of a unit of the
// trigger with another number of partitions (NAME, or NAME/p<i>of<M> with
// M not this member's) is held, unexpired, by another member waits until
// that lease is released or expires. The two partitionings' units have
// leases of their own, so without this a member taking the trigger over
// with another number of partitions (a rolling update or a rollback that
// changes partitions; the majority's definition changing as members come
// and go) would run it while the previous member still does, until that
// member's next round hands its units off: both would deliver the same
// events at once.
//
// It also returns the leases it read (each held lease, at least).
func (m *Manager) layoutsFree(ctx context.Context, acquire []string) ([]string, []store.Lease, error) {
	leases, err := m.currentLeases(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := m.clock.Now()
	free := acquire[:0:0]
	for _, key := range acquire {
		name, _, n, ok := triggers.ParsePartitionKey(key)
		if !ok {
			free = append(free, key)
			continue
		}
		i := slices.IndexFunc(leases, func(l store.Lease) bool {
			on, _, ln, ok := triggers.ParsePartitionKey(l.Key)
			return ok && on == name && ln != n && l.Owner != "" && l.Owner != m.self.ID && l.RemainingMS > 0
		})
		if i < 0 {
			free = append(free, key)
			continue
		}
		m.mu.Lock()
		logged := m.layoutWait[key] == leases[i].Key+"\x00"+leases[i].Owner
		if m.layoutWait == nil {
			m.layoutWait = map[string]string{}
		}
		m.layoutWait[key] = leases[i].Key + "\x00" + leases[i].Owner
		m.setWaitLocked(key, leaseWait{member: leases[i].Owner, until: now.Add(time.Duration(leases[i].RemainingMS) * time.Millisecond),
			reason: fmt.Sprintf("member %s runs the trigger with another number of partitions (lease %s): this member takes the unit once that lease is released or expires",
				leases[i].Owner, leases[i].Key)})
		m.mu.Unlock()
		if !logged {
			m.log.Info("not acquiring yet: another member runs the trigger with another number of partitions",
				"trigger", triggerOf(key), "key", key, "held", leases[i].Key, "owner", leases[i].Owner, "expires_in", time.Duration(leases[i].RemainingMS)*time.Millisecond)
		}
	}
	m.mu.Lock()
	for _, key := range free {
		delete(m.layoutWait, key)
	}
	m.mu.Unlock()
	return free, leases, nil
}

// setWaitLocked records why key was not acquired (when a runner still
// awaits it). m.mu is held.
func (m *Manager) setWaitLocked(key string, w leaseWait) {
	if ks := m.keys[key]; ks != nil {
		ks.wait = w
	}
}

// LeaseWait says why this instance does not run the unit key (a trigger's
// name, or a partition's key) now, as of its last round: the member that
// runs it or holds its lease ("" when not known), when that lease lapses
// unless renewed, by this instance's clock (zero: not known — for a unit
// another member is meant to run, while that member did not hold its
// lease when the round read the leases), and a sentence. reason is ""
// when this instance holds the lease, or when no runner here awaits the
// unit and another member is not meant to run it.
func (m *Manager) LeaseWait(key string) (member string, until time.Time, reason string) {
	trigger, _, _, ok := triggers.ParsePartitionKey(key)
	if !ok {
		return "", time.Time{}, ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ks := m.keys[key]
	if ks != nil && ks.own != nil {
		return "", time.Time{}, ""
	}
	if m.members == nil {
		reason = "waiting for this member's first cluster round"
		if m.undecided != "" {
			reason += ": " + m.undecided
		}
		return "", time.Time{}, reason
	}
	switch p := m.preferred(m.members, trigger, key); {
	case p != "" && p != m.self.ID:
		member, reason = p, fmt.Sprintf("member %s runs it: the live members share the triggers out, and this one stands by", p)
		if ks != nil && ks.wait.member == p {
			until = ks.wait.until // p's lease, as the last round read it
		}
		if m.drift[trigger] {
			_, tie := majority(m.members, trigger)
			reason = fmt.Sprintf("member %s runs it: this member's definition of the trigger differs from %s", p, driftWords(tie))
		}
		if m.deadNoted[p] {
			// p still counts until its registration expires, though it
			// certainly runs nothing: say so, or the wait looks like a
			// healthy standby for up to lease_ttl.
			reason = fmt.Sprintf("member %s was to run it (that member is registered on this host and no longer running): "+
				"this member stands by until that registration expires, then takes the unit once its lease is released or expires", p)
		}
	case ks == nil:
		return "", time.Time{}, ""
	case ks.wait.reason != "":
		member, until, reason = ks.wait.member, ks.wait.until, ks.wait.reason
	default:
		reason = "this member is to run it and acquires its lease at its next cluster round"
	}
	if m.decided < m.gen && m.undecided != "" {
		reason += "; the last cluster round decided nothing: " + m.undecided
	}
	return member, until, reason
}

// awaitDecided waits until a round has heartbeated this member's
// definitions of generation gen (SetTriggers calls) or newer and, on the
// live members it then read, handed off the leases this member may no
// longer hold: a lease still held afterwards, not handed off or lost, is
// one this member is the preferred owner of with those definitions. It
// returns ctx's error when ctx ends first.
func (m *Manager) awaitDecided(ctx context.Context, gen uint64) error {
	for {
		m.mu.Lock()
		done, ch := m.decided >= gen, m.decidedCh
		m.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// setUndecided records why a round decided nothing.
func (m *Manager) setUndecided(why string) {
	m.mu.Lock()
	m.undecided = why
	m.mu.Unlock()
}

// whyUndecided says why the last round that decided nothing did not (""
// when none did).
func (m *Manager) whyUndecided() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.undecided
}

// generation returns the number of SetTriggers calls so far.
func (m *Manager) generation() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gen
}

// releasePrevious releases the unexpired leases that a previous process
// with this instance id left behind (it was SIGKILLed or crashed), when
// that process is certainly dead: its registration names a process on this
// kernel, in this pid namespace, whose pid is free or now belongs to a
// process with another start time (see incarnationDead). Releasing them is
// then as safe as their expiry: the dead process can neither deliver nor
// write a checkpoint, and the next acquisition increments the epoch, which
// fences its checkpoint writes still in flight at the state database. In
// every other case (another host, a container restarted into a new pid
// namespace, the previous process only paused, a second live process
// misconfigured with the same id) nothing is released and the leases are
// taken once they expire, as without this. It runs before this process's
// first heartbeat and before it acquires anything, so the leases its id
// holds are the previous process's.
func (m *Manager) releasePrevious(ctx context.Context) error {
	live, err := m.st.LiveMembers(ctx)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(live, func(x store.Member) bool { return x.ID == m.self.ID })
	if i < 0 {
		return nil
	}
	prev := live[i]
	if prev.Incarnation == "" || prev.Incarnation == m.self.Incarnation {
		return nil
	}
	if !incarnationDead(prev.Incarnation) {
		m.log.Warn("a previous process with this instance id may still be running (or runs elsewhere); its leases are taken when they expire",
			"previous_host", prev.Host, "previous_pid", prev.PID)
		return nil
	}
	leases, err := m.st.ListLeases(ctx)
	if err != nil {
		return err
	}
	for _, l := range leases {
		if l.Owner != m.self.ID || l.RemainingMS <= 0 {
			continue
		}
		if err := m.st.ReleaseLease(ctx, l.Key, store.Fence{Owner: m.self.ID, Epoch: l.Epoch}); err != nil {
			return err
		}
		m.log.Info("released a lease left by this instance's previous process, which is no longer running",
			"trigger", triggerOf(l.Key), "key", l.Key, "epoch", l.Epoch, "previous_pid", prev.PID)
	}
	return nil
}

// noteDeadMembers logs, once per member, each other live member whose
// process is certainly gone (incarnationDead). Its registration still
// counts until it expires, so the units it was preferred for stand by and
// the leases it held are taken only once they expire, up to lease_ttl:
// nothing else says why a trigger does not run meanwhile. The usual cause
// is a process restarted after a crash under a new instance id (the
// default), which a stable cluster.instance_id avoids: the restarted
// process then releases its predecessor's leases at once
// (releasePrevious). Only members on this kernel and in this pid
// namespace can be proved dead; the others are not looked up in /proc.
func (m *Manager) noteDeadMembers(live []store.Member) {
	here := kernelOf(m.self.Incarnation)
	var dead []store.Member
	m.mu.Lock()
	noted := make(map[string]bool, len(m.deadNoted)) // rebuilt: only members still registered
	for _, x := range live {
		switch {
		case m.deadNoted[x.ID]:
			noted[x.ID] = true
		case x.ID != m.self.ID && here != "" && kernelOf(x.Incarnation) == here && incarnationDead(x.Incarnation):
			noted[x.ID] = true
			dead = append(dead, x)
		}
	}
	m.deadNoted = noted
	m.mu.Unlock()
	for _, x := range dead {
		m.log.Warn("a member registered on this host is no longer running: the triggers it ran resume once its registration and leases expire "+
			"(within lease_ttl); with a stable cluster.instance_id a process restarted after a crash takes its predecessor's leases at once",
			"member", x.ID, "pid", x.PID, "expires_in", time.Duration(x.RemainingMS)*time.Millisecond, "lease_ttl", m.opts.LeaseTTL)
	}
}

// kernelOf returns the "boot/pidns" part of an incarnation (see
// incarnation): equal for two processes only when they run on the same
// kernel in the same pid namespace. "" when inc has no such part.
func kernelOf(inc string) string {
	i := strings.IndexByte(inc, '/')
	if i < 0 {
		return ""
	}
	j := strings.IndexByte(inc[i+1:], '/')
	if j < 0 {
		return ""
	}
	return inc[:i+1+j]
}

// preferred returns the member that should own key of trigger: the highest
// rendezvous score among live members whose definition of trigger is the
// majority's. "" when no live member has the trigger.
func (m *Manager) preferred(live []store.Member, trigger, key string) string {
	maj := majorityHash(live, trigger)
	var ids []string
	for _, mem := range live {
		if h, ok := mem.Triggers[trigger]; ok && h == maj {
			ids = append(ids, mem.ID)
		}
	}
	return PreferredMember(ids, key)
}

// majorityHash is the definition hash of trigger held by most live members
// (ties: the smallest hash, so every member decides the same).
func majorityHash(live []store.Member, trigger string) string {
	h, _ := majority(live, trigger)
	return h
}

// majority is majorityHash's answer and whether another definition is held
// by as many live members (the smallest hash then won the tie).
func majority(live []store.Member, trigger string) (hash string, tie bool) {
	counts := map[string]int{}
	for _, mem := range live {
		if h, ok := mem.Triggers[trigger]; ok {
			counts[h]++
		}
	}
	n := 0
	for h, c := range counts {
		if c > n || c == n && h < hash {
			hash, n = h, c
		}
	}
	for h, c := range counts {
		if c == n && h != hash {
			tie = true
		}
	}
	return hash, tie
}

// driftWords says how the definition a member drifted from was chosen:
// by most live members, or, between equally many, by the smaller hash.
func driftWords(tie bool) string {
	if tie {
		return "the definition that won a tie between equally many members (the smaller hash wins)"
	}
	return "the majority's"
}

// PreferredMember returns the member of ids that rendezvous hashing makes
// the owner of key (a trigger's name or a partition's key), when every
// member of ids is live and has the same definition of the trigger; "" for
// no ids. Every member computes the same answer.
func PreferredMember(ids []string, key string) string {
	best, bestScore := "", uint64(0)
	for _, id := range ids {
		if s := score(id, key); best == "" || s > bestScore || s == bestScore && id < best {
			best, bestScore = id, s
		}
	}
	return best
}

// score is the rendezvous hash of member and key.
func score(member, key string) uint64 {
	sum := sha256.Sum256([]byte(member + "\x00" + key))
	return binary.BigEndian.Uint64(sum[:8])
}

func (m *Manager) reportDrift(live []store.Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, mine := range m.self.Triggers {
		maj, tie := majority(live, name)
		drift := maj != "" && maj != mine
		if drift != m.drift[name] {
			if drift {
				m.log.Warn("trigger definition differs from "+driftWords(tie)+"; this member does not run it",
					"trigger", name, "hash", mine, "majority_hash", maj)
			} else {
				m.log.Info("trigger definition agrees with the majority again", "trigger", name)
			}
		}
		m.drift[name] = drift
		m.met.setDrift(name, drift)
	}
}

func (m *Manager) acquire(ctx, opCtx context.Context, key string, leases []store.Lease, read time.Time) {
	sent := m.now()
	l, err := m.st.AcquireLease(opCtx, key, m.self.ID, m.opts.LeaseTTL)
	if errors.Is(err, store.ErrLeaseHeld) {
		m.mu.Lock()
		m.setWaitLocked(key, m.heldWaitLocked(key, leases, read))
		m.mu.Unlock()
		return
	}
	if err != nil {
		m.log.Warn("cannot acquire lease", "trigger", triggerOf(key), "key", key, "error", err)
		m.mu.Lock()
		m.setWaitLocked(key, leaseWait{reason: "cannot acquire its lease: " + err.Error()})
		m.mu.Unlock()
		return
	}
	m.mu.Lock()
	ks := m.keys[key]
	if ks == nil || ks.waiters == 0 || m.stopped {
		m.mu.Unlock()
		_ = m.st.ReleaseLease(opCtx, key, store.Fence{Owner: m.self.ID, Epoch: l.Epoch})
		return
	}
	octx, cancel := context.WithCancelCause(ctx)
	o := &Ownership{m: m, key: key, trigger: ks.trigger, part: ks.partition, fence: store.Fence{Owner: m.self.ID, Epoch: l.Epoch},
		ctx: octx, cancel: cancel, expires: sent.add(m.opts.LeaseTTL - m.margin)}
	ks.own = o
	ks.deliver <- o
	delete(m.fencedWhy, key)
	m.leaseOwned(o, true)
	m.leaseTransition(o, "acquired")
	m.mu.Unlock()
	m.log.Info("lease acquired", "trigger", o.trigger, "key", key, "epoch", l.Epoch)
	go o.watchdog()
}

// heldWaitLocked is the wait of key, whose lease another member holds:
// that member and expiry as the leases read this round (at about now)
// have them. m.mu is held.
func (m *Manager) heldWaitLocked(key string, leases []store.Lease, now time.Time) leaseWait {
	if i := slices.IndexFunc(leases, func(l store.Lease) bool {
		return l.Key == key && l.Owner == m.self.ID && l.RemainingMS > 0
	}); i >= 0 {
		// A lease under this member's id that it does not hold: from an
		// ownership it fenced (no longer renewed), or a previous process
		// with the same id; it lapses by itself.
		l := leases[i]
		w := leaseWait{member: l.Owner, until: now.Add(time.Duration(l.RemainingMS) * time.Millisecond)}
		if why := m.fencedWhy[key]; why != "" {
			w.reason = fmt.Sprintf("this member stopped running it and fenced its lease (epoch %d; %s), which it no longer renews: "+
				"it takes the lease again, at a higher epoch, once that one lapses", l.Epoch, why)
		} else {
			w.reason = fmt.Sprintf("its lease (epoch %d) names this member's instance id but this process does not hold it "+
				"(a previous process with the same instance_id): this member takes it once it lapses", l.Epoch)
		}
		return w
	}
	i := slices.IndexFunc(leases, func(l store.Lease) bool {
		return l.Key == key && l.Owner != "" && l.Owner != m.self.ID && l.RemainingMS > 0
	})
	if i < 0 {
		return leaseWait{reason: "its lease is held by another member: this member takes it once that lease is released or expires"}
	}
	l := leases[i]
	w := leaseWait{member: l.Owner, until: now.Add(time.Duration(l.RemainingMS) * time.Millisecond),
		reason: fmt.Sprintf("its lease is held by member %s: this member takes it once that lease is released or expires", l.Owner)}
	if m.deadNoted[l.Owner] {
		w.reason += " (that member is registered on this host and no longer running)"
	}
	return w
}

// leaseOwned sets o's changehook_lease_owned series while o's unit is one
// of the configured triggers' units: SetTriggers deletes the series of the
// others, and an ownership that is released or lost only after the reload
// (its lease loop stopped late) must not create them again. m.mu must be
// held: SetTriggers deletes under it, so a write comes either before the
// deletion or after the unit is gone.
func (m *Manager) leaseOwned(o *Ownership, on bool) {
	if m.configured(o) {
		m.met.owned(o.trigger, o.part, on)
	}
}

// leaseTransition counts o's lease transition of kind, on the terms of
// leaseOwned. m.mu must be held.
func (m *Manager) leaseTransition(o *Ownership, kind string) {
	if m.configured(o) {
		m.met.transition(o.trigger, o.part, kind)
	}
}

// configured reports whether o's unit is a unit of the configured
// triggers, in their current partitioning. m.mu must be held.
func (m *Manager) configured(o *Ownership) bool {
	n, ok := m.parts[o.trigger]
	return ok && Key(o.trigger, o.part, n) == o.key
}

// renewAll renews every held lease; a lease that is lost fences its owner.
// An ownership that fenced itself is not renewed, though its runner has not
// released it yet: the lease then lapses at the state database within
// lease_ttl of its last renewal, so another member can take the unit
// instead of waiting for a Release that, the lease being lost, writes
// nothing.
func (m *Manager) renewAll(ctx context.Context) {
	m.mu.Lock()
	var owns []*Ownership
	for _, ks := range m.keys {
		if ks.own != nil {
			owns = append(owns, ks.own)
		}
	}
	m.mu.Unlock()
	owns = slices.DeleteFunc(owns, (*Ownership).isLost)
	if b, ok := m.st.(batchRenewer); ok && len(owns) > 1 {
		// One write renews them all: per-lease round trips grow with the
		// number of triggers until a round no longer fits in RenewEvery.
		sent := m.now()
		refs := make([]store.LeaseRef, len(owns))
		for i, o := range owns {
			refs[i] = store.LeaseRef{Key: o.key, Fence: o.fence}
		}
		if n, err := b.RenewLeases(ctx, refs, m.opts.LeaseTTL); err == nil && n == len(owns) {
			for _, o := range owns {
				o.extend(sent.add(m.opts.LeaseTTL - m.margin))
			}
			return
		}
		// A lease lost, or an error: one by one, to know which.
	}
	for _, o := range owns {
		sent := m.now()
		_, err := m.st.RenewLease(ctx, o.key, o.fence, m.opts.LeaseTTL)
		switch {
		case err == nil:
			o.extend(sent.add(m.opts.LeaseTTL - m.margin))
		case errors.Is(err, store.ErrLeaseLost):
			o.fenced("lease lost at renewal")
		default:
			// Keep the old deadline: the watchdog fences at it.
			m.log.Warn("cannot renew lease; will fence itself at the deadline unless a renewal succeeds",
				"trigger", o.trigger, "key", o.key, "error", err, "deadline_in", o.Deadline().Sub(m.clock.Now()))
		}
	}
}

// isLost reports whether o fenced itself (or was abandoned).
func (o *Ownership) isLost() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lost
}

// extend moves o's local deadline to d after a successful renewal, unless
// o is lost or its deadline already passed on either clock (see below).
func (o *Ownership) extend(d instant) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lost || !o.m.now().before(o.expires) {
		// A deadline that passed is final, even before the watchdog
		// fences: Valid has been false, so a delivery may have been
		// withheld, and the trigger must stop rather than go on past it.
		// The same after a suspend: the lease may have another owner.
		return
	}
	// Renewals are ordered by Clock, which a stepped wall clock does not
	// move: d replaces the deadline on both clocks, so that after the wall
	// clock was stepped back the wall deadline follows it instead of
	// staying ahead (where it would not catch a suspend).
	if d.mono.After(o.expires.mono) {
		o.expires = d
	}
}

// fenced marks the lease lost and cancels the trigger at once.
func (o *Ownership) fenced(why string) {
	o.mu.Lock()
	if o.lost || o.done {
		o.mu.Unlock()
		return
	}
	o.lost = true
	o.mu.Unlock()
	o.m.mu.Lock()
	o.m.leaseOwned(o, false)
	o.m.leaseTransition(o, "lost")
	if o.m.fencedWhy == nil {
		o.m.fencedWhy = map[string]string{}
	}
	o.m.fencedWhy[o.key] = why
	o.m.mu.Unlock()
	o.m.log.Warn("self-fenced: stopped reading and delivering; no checkpoint will be written", "trigger", o.trigger, "key", o.key,
		"epoch", o.fence.Epoch, "reason", why)
	o.cancel(ErrFenced)
}

// Lost fences the ownership at once when the runner found the lease lost
// at the checkpoint (runner.Lease): the state database refused a fenced
// claim or save of the unit's checkpoint (err wraps store.ErrLeaseLost)
// because a higher epoch than this lease's is there (or, there being no
// checkpoint, the lease document names another holder). That is a newer
// holder's, or, after the state database lost its documents (restored
// from a backup, or started empty), a former holder's while this lease's
// epoch was numbered anew from the missing documents: then the lease
// document still names this member, its renewals would go on succeeding,
// and without this it would deliver for good without ever checkpointing.
// Like any fenced ownership it is neither renewed nor released any more:
// it lapses at the state database within lease_ttl, and the next
// acquisition, by this member or another, numbers its epoch above the
// checkpoint's (store.AcquireLease), which clears the refusal. A
// re-acquisition refused again is fenced again and waits for its own lease
// to lapse: one attempt per lease_ttl at most, never a tight loop.
func (o *Ownership) Lost(err error) {
	o.fenced(fmt.Sprintf("lease lost at the checkpoint: the state database refused a checkpoint write under epoch %d (%v)", o.fence.Epoch, err))
}

// handoff asks the runner to stop the trigger gracefully; the lease stays
// renewed until Release.
func (o *Ownership) handoff() {
	o.mu.Lock()
	if o.stopped || o.lost || o.done {
		o.mu.Unlock()
		return
	}
	o.stopped = true
	o.mu.Unlock()
	o.m.mu.Lock()
	o.m.leaseTransition(o, "handoff")
	o.m.mu.Unlock()
	o.m.log.Info("handing lease off to the preferred member: draining", "trigger", o.trigger, "key", o.key)
	o.cancel(ErrHandoff)
}

// watchdog fences the ownership when its local deadline passes, on either
// clock, without a renewal. It sleeps on Clock, which stops while the host
// is suspended: after a resume it notices within RenewEvery, and Valid,
// which reads both clocks, is false meanwhile.
func (o *Ownership) watchdog() {
	for {
		o.mu.Lock()
		exp, over := o.expires, o.lost || o.done
		o.mu.Unlock()
		if over {
			return
		}
		mono, wall := o.m.now().until(exp)
		switch {
		case mono <= 0:
			o.fenced("lease not renewed before its local deadline")
			return
		case wall <= 0:
			o.fenced("the wall clock passed the lease's local deadline while the process's clock did not: " +
				"the host was suspended or its clock was stepped forward")
			return
		}
		// Sleep on a context that ends only at release or fencing, not at
		// handoff: a draining owner still needs its deadline watched.
		if o.m.clock.Sleep(context.Background(), min(mono, wall, o.m.opts.RenewEvery)) != nil {
			return
		}
	}
}

// Standby reports whether, as of the last round, another live member is
// the preferred owner of key — a trigger's name, or a partition's key
// "NAME/p<i>of<N>": this instance then stands by. It is false before the
// first round, so an instance is not reported ready before it knows its
// share.
func (m *Manager) Standby(key string) bool {
	trigger, _, _, ok := triggers.ParsePartitionKey(key)
	if !ok {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.members == nil {
		return false
	}
	p := m.preferred(m.members, trigger, key)
	return p != "" && p != m.self.ID
}

// Status is what /api/cluster and `changehook cluster status` show.
//
// The fields before Members describe the instance whose view it is: the
// member answering GET /api/cluster (Manager.Status), or, for `changehook
// cluster status`, which is no member, a member run with the configuration
// it read (ReadConfigStatus).
type Status struct {
	// InstanceID is this instance; left out when it is a configuration's
	// view and the configuration names none (each process run with it
	// generates its own).
	InstanceID string `json:"instance_id,omitempty"`
	// LeaseTTL and RenewEvery are this instance's settings.
	LeaseTTL   string `json:"lease_ttl"`
	RenewEvery string `json:"renew_every"`
	// ConfigHash is this instance's configuration hash: a member's
	// store.Member.ConfigHash.
	ConfigHash string `json:"config_hash"`
	// Members are the live members (state database's view).
	Members []store.Member `json:"members"`
	// Leases are every lease document.
	Leases []store.Lease `json:"leases"`
	// Drift lists triggers this instance does not run because its
	// definition differs from the majority's.
	Drift []string `json:"drift"`
	// Note says why ConfigHash and Drift are missing from a
	// configuration's view (ReadConfigStatus): the state database holds
	// no definition hash key to hash the configuration with. Empty in a
	// member's view.
	Note string `json:"note,omitempty"`
}

// Status reads the members and leases from the state database.
func (m *Manager) Status(ctx context.Context) (Status, error) {
	return ReadStatus(ctx, m.st, m)
}

// Overview is the cluster as this member's web console shows it: Status,
// except that Leases holds only the leases of this instance's configured
// triggers and partitions and those a member holds unexpired, so that it
// stays as small as what the members run. The lease documents of other
// keys — triggers removed from the configuration, old partitionings — are
// kept in the state database for their epochs (a trigger added back must
// not be fenced out by its own checkpoint) and grow with every trigger
// ever run: they are only counted, in OtherLeases. GET /api/cluster
// (Status) still lists every one.
type Overview struct {
	Status
	// OtherLeases counts the lease documents left out of Leases: those of
	// keys not in this configuration that no member holds. The count stops
	// at OverviewCountLimit.
	OtherLeases int64
}

// OverviewCountLimit is where Overview stops counting the leases it leaves
// out, so that a console refresh costs the state database a bounded read.
const OverviewCountLimit = 1000

// Overview reads the members, the leases of this instance's configured
// triggers (under its current configuration: SetTriggers) and the leases
// held by any member, and counts the rest (see Overview).
func (m *Manager) Overview(ctx context.Context) (Overview, error) {
	keys := m.configuredKeys()
	var other int64
	read := func(ctx context.Context) ([]store.Lease, error) {
		if r, ok := m.st.(currentLeaseReader); ok {
			leases, err := r.ListCurrentLeases(ctx, keys)
			if err != nil {
				return nil, err
			}
			if other, err = r.CountOtherLeases(ctx, keys, OverviewCountLimit); err != nil {
				return nil, err
			}
			return leases, nil
		}
		all, err := m.st.ListLeases(ctx)
		if err != nil {
			return nil, err
		}
		configured := make(map[string]bool, len(keys))
		for _, k := range keys {
			configured[k] = true
		}
		var leases []store.Lease
		for _, l := range all {
			if configured[l.Key] || l.Owner != "" && l.RemainingMS > 0 {
				leases = append(leases, l)
			} else if other < OverviewCountLimit {
				other++
			}
		}
		return leases, nil
	}
	s, err := readStatus(ctx, m.st, m, read)
	return Overview{Status: s, OtherLeases: other}, err
}

// configuredKeys returns the lease keys of the configured triggers: each
// trigger's name, or its partitions' keys.
func (m *Manager) configuredKeys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for name, n := range m.parts {
		for i := range n {
			keys = append(keys, triggers.PartitionKey(name, i, n))
		}
	}
	sort.Strings(keys)
	return keys
}

// ReadConfigStatus reads the cluster's members and leases as ReadStatus
// does, seen by a member that would run cfg: its settings (cfg's cluster
// section, defaults applied), the hash of cfg's trigger definitions, and
// as drift the triggers of cfg whose definition differs from the one most
// live members run. It is the view of a process that is no member, such as
// `changehook cluster status`, and it only reads: when the state database
// holds no definition hash key (no member has run yet, or the key was
// deleted since the members read it), ConfigHash and Drift stay empty and
// Note says why, rather than creating a key the running members do not
// hash with (every trigger would then look drifted).
func ReadConfigStatus(ctx context.Context, st Store, cfg *triggers.Config) (Status, error) {
	s, err := ReadStatus(ctx, st, nil)
	if err != nil {
		return s, err
	}
	opts := settings(cfg, Options{})
	s.InstanceID = opts.InstanceID
	s.LeaseTTL, s.RenewEvery = opts.LeaseTTL.String(), opts.RenewEvery.String()
	key, err := st.ReadDefinitionHashKey(ctx)
	if errors.Is(err, store.ErrNoDefinitionHashKey) {
		s.Note = "the state database holds no definition hash key (" + store.ClusterCollection + " collection)"
		if len(s.Members) > 0 {
			s.Note += " although members are running: it was deleted after they read it, and members " +
				"started from now on create a new one and disagree with them on every trigger until all have restarted"
		} else {
			s.Note += ", so this file's trigger definitions cannot be compared with the members': " +
				"the first member to start creates it"
		}
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read cluster status: %w", err)
	}
	hashes := definitionHashes(key, enabledTriggers(cfg))
	s.ConfigHash = ConfigHash(hashes)
	for name, h := range hashes {
		if maj := majorityHash(s.Members, name); maj != "" && maj != h {
			s.Drift = append(s.Drift, name)
		}
	}
	sort.Strings(s.Drift)
	return s, nil
}

// ReadStatus reads the cluster's members and leases; m (may be nil) adds
// this instance's own view. Without m the fields describing the instance
// are empty: see ReadConfigStatus for a process that is no member.
func ReadStatus(ctx context.Context, st Store, m *Manager) (Status, error) {
	return readStatus(ctx, st, m, st.ListLeases)
}

// readStatus is ReadStatus with the leases read by leases.
func readStatus(ctx context.Context, st Store, m *Manager, leases func(context.Context) ([]store.Lease, error)) (Status, error) {
	var s Status
	live, err := st.LiveMembers(ctx)
	if err != nil {
		return s, fmt.Errorf("read cluster status: %w", err)
	}
	ls, err := leases(ctx)
	if err != nil {
		return s, fmt.Errorf("read cluster status: %w", err)
	}
	sortLeases(ls)
	s.Members, s.Leases, s.Drift = live, ls, []string{}
	if s.Members == nil {
		s.Members = []store.Member{}
	}
	if s.Leases == nil {
		s.Leases = []store.Lease{}
	}
	if m != nil {
		s.LeaseTTL, s.RenewEvery = m.opts.LeaseTTL.String(), m.opts.RenewEvery.String()
		m.mu.Lock()
		s.InstanceID, s.ConfigHash = m.self.ID, m.self.ConfigHash
		for name, d := range m.drift {
			if d {
				s.Drift = append(s.Drift, name)
			}
		}
		m.mu.Unlock()
		sort.Strings(s.Drift)
	}
	return s, nil
}

// sortLeases orders leases by trigger, then by partition number (p2of12
// before p10of12, which the keys' text order reverses); keys that are not
// a trigger's or partition's key keep their text order.
func sortLeases(leases []store.Lease) {
	sort.SliceStable(leases, func(a, b int) bool {
		na, ia, _, oka := triggers.ParsePartitionKey(leases[a].Key)
		nb, ib, _, okb := triggers.ParsePartitionKey(leases[b].Key)
		if !oka || !okb || na != nb {
			return leases[a].Key < leases[b].Key
		}
		if ia != ib {
			return ia < ib
		}
		return leases[a].Key < leases[b].Key
	})
}

// Supervisor starts and stops single triggers (*runner.Runner implements
// it; see runner.Runner.StartLeased and Stop).
type Supervisor interface {
	// StartLeased starts the trigger under the lease: fenced checkpoints,
	// no delivery once the lease is invalid. It does not wait.
	StartLeased(name string, l runner.Lease) error
	// Stop stops the trigger: stop reading, drain within the grace period
	// (never beyond the lease's deadline), save the final checkpoint. It
	// waits until the trigger stopped or ctx ends.
	Stop(ctx context.Context, name string) error
}

// Drive runs every enabled trigger of cfg on sup whenever m holds its
// lease, until ctx ends: it awaits the lease, starts the trigger under it,
// and when the lease is handed off or lost (or ctx ends) stops the trigger
// — waiting at most grace plus the lease TTL for its final checkpoint — and
// releases the lease, then awaits it again. A partitioned trigger is driven
// as one unit per partition, each under its own lease (key
// "NAME/p<i>of<N>"), so the members share its partitions. Drive returns
// once every unit stopped and released its lease; m.Run must keep running
// until then. A Driver does the same for a set of triggers that a reload
// changes.
func Drive(ctx context.Context, m *Manager, sup Supervisor, cfg *triggers.Config, grace time.Duration) {
	d := NewDriver(ctx, m, sup, grace)
	d.Add(cfg)
	<-ctx.Done()
	d.Wait()
}
