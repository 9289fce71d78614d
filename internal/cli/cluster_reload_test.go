package cli

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// clusterReloadYAML is a clustered configuration of two triggers, a and b
// (reading collection B), under a network section that denies the range
// denyA.
const clusterReloadYAML = `
mongodb: { uri: "mongodb://127.0.0.1:1/" }
state: { database: chstate }
cluster: { instance_id: m0, lease_ttl: 3s }
network: { deny: [` + denyA + `] }
triggers:
  - name: a
    database: shop
    collection: a
    webhook: { url: "http://127.0.0.1:1/a" }
  - name: b
    database: shop
    collection: B
    webhook: { url: "http://127.0.0.1:1/b" }
`

// Denied ranges of the network section. A change of the network section
// changes how the runner runs every trigger (it restarts them), but not
// their definition hashes: the lease loops keep running them, and the
// runner's reload stops and starts them under their leases.
const (
	denyA  = "192.0.2.0/24"
	denyA2 = "198.51.100.0/24"
)

// clusterReloadConfig returns clusterReloadYAML with the denied range deny
// and b's collection.
func clusterReloadConfig(deny, coll string) string {
	return strings.NewReplacer("deny: ["+denyA+"]", "deny: ["+deny+"]", "collection: B", "collection: "+coll).Replace(clusterReloadYAML)
}

// hookSup is the Supervisor a cluster.Driver drives: the runner, with every
// start reported on starts, and a stop of trigger a that can be held up
// (see holdStop).
type hookSup struct {
	rn     *runner.Runner
	starts chan string // the key of every StartLeased

	mu   sync.Mutex
	hold func() // called by a's watcher when it begins to stop, once
}

func (s *hookSup) StartLeased(key string, l runner.Lease) error {
	if key == "a" {
		l = &hookLease{Lease: l, s: s}
	}
	err := s.rn.StartLeased(key, l)
	s.starts <- key
	return err
}

func (s *hookSup) Stop(ctx context.Context, key string) error { return s.rn.Stop(ctx, key) }

// holdStop makes the next stop of a's watcher call f, in the watcher, as
// it begins to stop; the watcher goes on once f returns.
func (s *hookSup) holdStop(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold = f
}

// hookLease is the lease of trigger a. Its Deadline is read by a's watcher
// once, when it begins to stop (to bound its grace period): then it runs
// the hook holdStop set.
type hookLease struct {
	runner.Lease
	s *hookSup
}

func (l *hookLease) Deadline() time.Time {
	l.s.mu.Lock()
	f := l.s.hold
	l.s.hold = nil
	l.s.mu.Unlock()
	if f != nil {
		f()
	}
	return l.Lease.Deadline()
}

// clusterMember is one clustered changehook, as serve puts it together
// (runner, membership, lease driver, reloader), on its own devdb, running
// clusterReloadYAML's file with denied range denyA and collection B.
type clusterMember struct {
	t      *testing.T
	path   string
	client *mongo.Client
	st     *store.Store
	mgr    *cluster.Manager
	rn     *runner.Runner
	sup    *hookSup
	driver *cluster.Driver
	rl     *reloader
	// ctx is serve's context: cancel is SIGTERM.
	ctx            context.Context
	cancel         context.CancelFunc
	stopMembership context.CancelFunc
	ran, membered  chan error // rn.Run's and mgr.Run's results
	once           sync.Once
}

// startClusterMember starts the member and waits until it runs both
// triggers under their leases.
func startClusterMember(t *testing.T) *clusterMember {
	t.Helper()
	_, client := devdbtest.Start(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := &clusterMember{t: t, path: writeConfig(t, clusterReloadConfig(denyA, "B")), client: client,
		ran: make(chan error, 1), membered: make(chan error, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	cfg := c.load()
	c.st = store.New(client, "chstate")
	if err := c.st.EnsureIndexes(c.ctx); err != nil {
		t.Fatal(err)
	}
	var err error
	if c.mgr, err = cluster.New(c.st, cfg, cluster.Options{Logger: log}); err != nil {
		t.Fatal(err)
	}
	c.rn, err = runner.New(cfg, client, c.st, runner.Options{Logger: log, StartStopped: true, Clustered: true,
		Standby: c.mgr.Standby, ShutdownGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.sup = &hookSup{rn: c.rn, starts: make(chan string, 16)}
	c.driver = cluster.NewDriver(c.ctx, c.mgr, c.sup, time.Second)
	c.rl = newReloader(c.path, Env{}, log, cfg, c.rn, prometheus.NewRegistry())
	c.rl.mgr, c.rl.driver = c.mgr, c.driver
	var mctx context.Context
	mctx, c.stopMembership = context.WithCancel(context.Background())
	go func() { c.membered <- c.mgr.Run(mctx) }()
	go func() { c.ran <- c.rn.Run(c.ctx) }()
	t.Cleanup(func() { c.shutdown(nil) })
	c.driver.Add(cfg)
	for seen := map[string]bool{}; !seen["a"] || !seen["b"]; {
		select {
		case key := <-c.sup.starts:
			seen[key] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("started under their leases: %v; want a and b", seen)
		}
	}
	return c
}

// load reads the configuration file.
func (c *clusterMember) load() *triggers.Config {
	c.t.Helper()
	cfg, err := triggers.LoadWith(c.path, nil, triggers.Options{})
	if err != nil {
		c.t.Fatal(err)
	}
	return cfg
}

// write replaces the configuration file's denied range and b collection.
func (c *clusterMember) write(deny, coll string) {
	c.t.Helper()
	if err := os.WriteFile(c.path, []byte(clusterReloadConfig(deny, coll)), 0o600); err != nil {
		c.t.Fatal(err)
	}
}

// started waits until the driver starts want under its lease next.
func (c *clusterMember) started(want string) {
	c.t.Helper()
	for {
		select {
		case key := <-c.sup.starts:
			if key == want {
				return
			}
		case <-time.After(30 * time.Second):
			c.t.Fatalf("%s was not started under its lease", want)
		}
	}
}

// shutdown stops the member the way serve does once told to stop: the
// lease loops stop their triggers and release their leases (driverDone,
// when not nil, is called once they did), the runner stops, then the
// membership. Only the first call does anything.
func (c *clusterMember) shutdown(driverDone func()) {
	c.once.Do(func() {
		c.cancel()
		c.driver.Wait()
		if driverDone != nil {
			driverDone()
		}
		if err := <-c.ran; err != nil {
			c.t.Errorf("run triggers: %v", err)
		}
		c.stopMembership()
		if err := <-c.membered; err != nil {
			c.t.Errorf("membership: %v", err)
		}
	})
}

// runs returns the collection of b's definition that the runner has, and
// the definition hash of b this member publishes.
func (c *clusterMember) runs() (coll, published string) {
	c.t.Helper()
	s, err := c.rn.TriggerStatus("b")
	if err != nil {
		c.t.Fatal(err)
	}
	cs, err := c.mgr.Status(c.ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, m := range cs.Members {
		if m.ID == "m0" {
			published = m.Triggers["b"]
		}
	}
	return strings.TrimPrefix(s.Namespace, "shop."), published
}

// TestClusterReloadThatDoesNotFinish: a reload changes the network section
// (which the definition hashes leave out: a's lease loop goes on, and the
// runner's reload restarts a) and the collection of trigger b (its hash
// changes: its lease loop stops first); both run on this member under
// their leases. The runner's reload does not finish: the request goes
// away while a drains (its context ends), before the runner gave b its
// new definition. b must
// then go on with the definition the runner has, and announce its hash:
// were the new hash published while the runner ran the old definition, the
// other members would take that member for one with the new definition.
// The same file reloaded again then changes b as a first reload would: b
// stops, and runs the new definition once the new hash is published.
func TestClusterReloadThatDoesNotFinish(t *testing.T) {
	c := startClusterMember(t)
	oldB := c.load().Triggers[1]
	c.write(denyA2, "B2")
	newB := c.load().Triggers[1]
	hashOf := map[string]string{"B": c.mgr.PublishedHash(oldB), "B2": c.mgr.PublishedHash(newB)}

	release := make(chan struct{}) // lets a's held-up stop go on
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the shutdown
	rctx, gone := context.WithCancel(c.ctx)
	c.sup.holdStop(func() {
		gone() // the reload request goes away while a drains
		<-release
	})
	_, err := c.rl.Reload(rctx, "test")
	if err == nil {
		t.Fatal("the reload finished although its context ended while a drained")
	}
	if strings.Contains(err.Error(), "stop removed and changed triggers") {
		t.Fatalf("the reload ended while its lease loops stopped (%v), not in the runner's step: a's definition hash changed", err)
	}
	c.started("b") // under the lease the reload kept
	coll, published := c.runs()
	if published != hashOf[coll] {
		t.Errorf("after the reload that did not finish, b runs with collection %s (hash %s) but this member publishes hash %s",
			coll, hashOf[coll], published)
	}

	releaseOnce.Do(func() { close(release) })
	if _, err := c.rl.Reload(c.ctx, "test"); err != nil {
		t.Fatal(err)
	}
	c.started("b")
	if coll, published := c.runs(); coll != "B2" || published != hashOf["B2"] {
		t.Errorf("after the same file reloaded again, b runs with collection %s and this member publishes hash %s; want B2 and %s",
			coll, published, hashOf["B2"])
	}
}

// TestClusterShutdownDuringReload: the process is told to stop while a
// reload is in the runner's step: Retain has stopped b, whose definition
// hash the reload changes, and kept its lease, and the runner waits for a
// to drain. The reload then ends without starting b. b's final checkpoint
// was saved when it stopped, under its lease; its lease is released once
// the lease loops are waited for, before the runner and the membership
// stop (another member may take b at once); in the end no lease is held,
// the member is gone and no goroutine of the runner, the dispatchers or
// the cluster is left.
func TestClusterShutdownDuringReload(t *testing.T) {
	c := startClusterMember(t)
	deadline := time.Now().Add(30 * time.Second)
	for s, _ := c.rn.TriggerStatus("b"); !s.StreamOpen; s, _ = c.rn.TriggerStatus("b") {
		if time.Now().After(deadline) {
			t.Fatal("b's change stream did not open")
		}
		time.Sleep(10 * time.Millisecond) // polling the status
	}
	owners := func() map[string]string {
		t.Helper()
		leases, err := c.st.ListLeases(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, l := range leases {
			out[l.Key] = l.Owner
		}
		return out
	}

	c.write(denyA2, "B2")
	draining := make(chan struct{})
	release := make(chan struct{})
	c.sup.holdStop(func() {
		close(draining) // Retain kept b's lease; the runner waits for a
		<-release
	})
	reloaded := make(chan error, 1)
	go func() {
		_, err := c.rl.Reload(c.ctx, "SIGHUP")
		reloaded <- err
	}()
	<-draining
	if o := owners()["b"]; o != "m0" {
		t.Fatalf("during the reload b's lease is owned by %q, want m0 (kept)", o)
	}
	c.cancel() // SIGTERM
	if err := <-reloaded; err == nil {
		t.Error("the reload finished although the process was told to stop while a drained")
	}
	close(release)
	c.shutdown(func() {
		if o := owners()["b"]; o != "" {
			t.Errorf("once the lease loops ended b's lease is owned by %q, want released", o)
		}
	})
	for key, o := range owners() {
		if o != "" {
			t.Errorf("after shutdown the lease of %s is owned by %q", key, o)
		}
	}
	if ms, err := c.st.ListMembers(context.Background()); err != nil || len(ms) != 0 {
		t.Errorf("members after shutdown = %+v, %v", ms, err)
	}
	var cp struct {
		Token bson.Raw `bson:"token"`
		Owner string   `bson:"owner"`
		Epoch int64    `bson:"epoch"`
	}
	if err := c.client.Database("chstate").Collection(store.CheckpointsCollection).FindOne(context.Background(),
		bson.D{{Key: "_id", Value: "b"}}).Decode(&cp); err != nil {
		t.Fatalf("b's checkpoint: %v", err)
	}
	if cp.Token == nil || cp.Owner != "m0" || cp.Epoch != 1 {
		t.Errorf("b's checkpoint: token %v written by %q epoch %d; want one written under the lease its stop kept (m0, epoch 1)", cp.Token, cp.Owner, cp.Epoch)
	}
	select {
	case key := <-c.sup.starts:
		t.Errorf("%s started after the process was told to stop", key)
	default:
	}
	deadline = time.Now().Add(30 * time.Second)
	for left := ownGoroutines(); left != ""; left = ownGoroutines() {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines left after shutdown:\n%s", left)
		}
		time.Sleep(10 * time.Millisecond) // polling the goroutines
	}
}

// ownGoroutines returns the stacks of the goroutines running code of the
// runner, the dispatcher or the cluster package ("" when none is).
func ownGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		for _, pkg := range []string{"changehook/runner.", "changehook/dispatcher.", "changehook/cluster."} {
			if strings.Contains(g, pkg) {
				out = append(out, g)
				break
			}
		}
	}
	return strings.Join(out, "\n\n")
}

// TestClusterReloadStoppedByItsDeadlineIsLogged: clustered, a reload first
// stops the lease loops of the triggers whose definition hash changes.
// When its context ends while one of them still stops, the reload fails
// there, and says so in the log like any other failed reload: SIGHUP and
// --watch-config, which drop the error, have no other way to tell.
func TestClusterReloadStoppedByItsDeadlineIsLogged(t *testing.T) {
	c := startClusterMember(t)
	var logs syncbuf.Buffer
	c.rl.log = slog.New(slog.NewTextHandler(&logs, nil))
	// a's URL changes: its definition hash does, so the reload stops its
	// lease loop before the runner's reload.
	if err := os.WriteFile(c.path, []byte(strings.Replace(clusterReloadConfig(denyA, "B"), "127.0.0.1:1/a", "127.0.0.1:1/a2", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the shutdown
	rctx, gone := context.WithCancel(c.ctx)
	c.sup.holdStop(func() {
		gone() // the reload's deadline passes while a stops
		<-release
	})
	if _, err := c.rl.Reload(rctx, "SIGHUP"); err == nil {
		t.Fatal("the reload finished although its context ended while a stopped")
	}
	releaseOnce.Do(func() { close(release) })
	if got := logs.String(); !strings.Contains(got, "reload did not finish") || !strings.Contains(got, "by=SIGHUP") {
		t.Errorf("a reload that did not finish logged:\n%s\nwant its failure, by SIGHUP", got)
	}
}

// TestRunnerHas: after a clustered reload that did not finish, runnerHas
// gives each trigger the definition the runner has, the new file's or the
// one driven before, by the hash the lease loops compare; a partitioned
// trigger's units hash as the trigger, so one the reload did not change,
// or did not get to, is kept, not dropped (dropped, nobody would run it
// on a single member).
func TestRunnerHas(t *testing.T) {
	_, client := devdbtest.Start(t)
	const old = `
mongodb: { uri: "mongodb://127.0.0.1:1/" }
state: { database: chstate }
cluster: { instance_id: m0 }
triggers:
  - name: p
    database: shop
    collection: orders
    ordering: per_document
    partitions: 2
    webhook: { url: "http://127.0.0.1:1/p", headers: { X-Key: one } }
  - name: u
    database: shop
    collection: users
    webhook: { url: "http://127.0.0.1:1/u" }
`
	tests := []struct {
		name string
		cfg  string            // the file the reload did not finish applying
		want map[string]string // trigger → "new" (cfg's definition) or "old" (the driven one)
	}{
		{name: "unchanged", cfg: old, want: map[string]string{"p": "new", "u": "new"}},
		{name: "partitioned trigger's secret changed, not reached",
			cfg:  strings.Replace(old, "X-Key: one", "X-Key: two", 1),
			want: map[string]string{"p": "old", "u": "new"}},
		{name: "partitioned trigger's collection changed, not reached",
			cfg:  strings.Replace(old, "collection: orders", "collection: invoices", 1),
			want: map[string]string{"p": "old", "u": "new"}},
		{name: "other trigger changed, not reached",
			cfg:  strings.Replace(old, "collection: users", "collection: people", 1),
			want: map[string]string{"p": "new", "u": "old"}},
	}
	load := func(t *testing.T, src string) *triggers.Config {
		t.Helper()
		cfg, err := triggers.LoadWith(writeConfig(t, src), nil, triggers.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			driven, cfg := load(t, old), load(t, tc.cfg)
			rn, err := runner.New(driven, client, store.New(client, "chstate"), runner.Options{Logger: log, StartStopped: true, Clustered: true})
			if err != nil {
				t.Fatal(err)
			}
			rl := &reloader{log: log, cfg: driven, started: driven, driven: driven, rn: rn}
			got := map[string]string{}
			for _, tr := range rl.runnerHas(cfg, "test").Triggers {
				switch {
				case slices.Contains(cfg.Triggers, tr):
					got[tr.Name] = "new"
				case slices.Contains(driven.Triggers, tr):
					got[tr.Name] = "old"
				}
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("runnerHas gives %v, want %v", got, tc.want)
			}
		})
	}
}
