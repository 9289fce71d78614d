package faults

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/hostinfo"
)

var (
	longFlag   = flag.Bool("long", false, "run every scenario at full size (also CHANGEHOOK_LONG=1)")
	updateFlag = flag.Bool("update-reliability", false, "rewrite the results table in ../../RELIABILITY.md")
	seedFlag   = flag.Uint64("seed", 20261121, "seed of the random kill points, writes and failures")
)

// db is the database every scenario writes to.
const db = "faults"

// suite is what every scenario gets.
type suite struct {
	t    *testing.T
	bin  string
	long bool
	seed uint64
}

// pick returns short or, at full size, long.
func pick[T any](s *suite, short, long T) T {
	if s.long {
		return long
	}
	return short
}

// trig is one trigger of a scenario's configuration.
type trig struct {
	name     string
	coll     string // "" = database-wide
	ordering string
	ops      string // YAML flow list
	// partitions > 1 splits the trigger (cluster scenarios).
	partitions int
	// batch, when not "", is the trigger's batch section (YAML flow).
	batch string
}

// writeConfig writes a triggers.yaml for trigs against uri, delivering to ep.
// Retries are quick and never give up (dead_letter: false), so that any
// event the receiver does not get is really lost, not dead-lettered. The
// runner has a stable instance_id, as under a supervisor: a restart after
// a SIGKILL takes the dead process's leases at once instead of waiting
// them out, so it delivers until the next kill.
func writeConfig(t *testing.T, name, uri string, ep *endpoint, trigs []trig) string {
	t.Helper()
	return writeFile(t, t.TempDir(), name+".yaml", configText(uri, ep, trigs, "cluster:\n  instance_id: faults-"+name+"\n"))
}

// configText is writeConfig's file content; extra (YAML, may be "") is
// added at the top level.
func configText(uri string, ep *endpoint, trigs []trig, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "mongodb:\n  uri: %q\nstate:\n  database: changehook\nlog:\n  level: warn\n", uri)
	b.WriteString(extra)
	b.WriteString("defaults:\n  retry: { max_attempts: 10, initial_backoff: 20ms, max_backoff: 300ms }\n  dead_letter: false\n  concurrency: 16\n")
	b.WriteString("triggers:\n")
	for _, tr := range trigs {
		fmt.Fprintf(&b, "  - name: %s\n    database: %s\n", tr.name, db)
		if tr.coll != "" {
			fmt.Fprintf(&b, "    collection: %s\n", tr.coll)
		}
		ops := tr.ops
		if ops == "" {
			ops = "[insert, update]"
		}
		fmt.Fprintf(&b, "    operations: %s\n    ordering: %s\n", ops, tr.ordering)
		if tr.partitions > 1 {
			fmt.Fprintf(&b, "    partitions: %d\n", tr.partitions)
		}
		if tr.batch != "" {
			fmt.Fprintf(&b, "    batch: %s\n", tr.batch)
		}
		fmt.Fprintf(&b, "    webhook:\n      url: %q\n      timeout: 5s\n      secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", ep.url(tr.name))
	}
	return b.String()
}

// tallies verifies every trigger of trigs against what ep received; it
// fails t if a delivery could not be identified.
func tallies(t *testing.T, scenario string, w *workload, ep *endpoint, trigs []trig) []tally {
	t.Helper()
	ep.rec.mu.Lock()
	if len(ep.rec.bad) > 0 {
		t.Errorf("unidentifiable deliveries: %q", ep.rec.bad)
	}
	ep.rec.mu.Unlock()
	out := make([]tally, 0, len(trigs))
	for _, tr := range trigs {
		counts, first := ep.rec.snapshot(tr.name)
		tl := verify(w.exp[tr.name], counts, first, tr.ordering)
		tl.Scenario, tl.Trigger, tl.Writes = scenario, tr.name, w.writes[tr.name]
		out = append(out, tl)
	}
	return out
}

// scenarioCtx bounds a scenario's writes.
func scenarioCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// threeTriggers returns a trigger per ordering, each on its own
// collection, and a fourth, batched per_document trigger (requests of up to
// 50 events, acknowledged and redelivered whole), with the collections they
// watch.
func threeTriggers() ([]trig, map[string][]string) {
	trigs := []trig{
		{name: "strict", coll: "a", ordering: "strict"},
		{name: "perdoc", coll: "b", ordering: "per_document"},
		{name: "none", coll: "c", ordering: "none"},
		{name: "batched", coll: "d", ordering: "per_document", batch: "{ max_events: 50, max_wait: 20ms }"},
	}
	return trigs, map[string][]string{"a": {"strict"}, "b": {"perdoc"}, "c": {"none"}, "d": {"batched"}}
}

// waitAll waits for every expected event or fails with the runner's output.
func waitAll(t *testing.T, w *workload, ep *endpoint, r *runnerProc, timeout time.Duration) {
	t.Helper()
	if !waitDelivered(ep.rec, w.exp, timeout) {
		t.Errorf("not every event arrived within %v; runner output:\n%s", timeout, r.out)
	}
}

// threeRun is a scenario on threeTriggers with devdb, the endpoint, the
// runner and the workload started.
type threeRun struct {
	t     *testing.T
	dbp   *devdbProc
	ep    *endpoint
	trigs []trig
	r     *runnerProc
	w     *workload
}

// startThree starts devdb, an endpoint answering with failRate and delay
// (see endpoint.set), the runner on threeTriggers with the configuration
// named cfg (and waits until it is ready) and a workload writing to the
// triggers' collections.
func startThree(s *suite, cfg string, failRate float64, delay time.Duration) *threeRun {
	t := s.t
	t.Helper()
	dbp := startDevdb(t, s.bin)
	ep := newEndpoint(t, s.seed)
	ep.set(failRate, delay)
	trigs, watch := threeTriggers()
	r := newRunner(t, s.bin, writeConfig(t, cfg, dbp.uri, ep, trigs))
	r.start(true)
	w := newWorkload(t, dbp.uri, db, s.seed, 50, watch)
	return &threeRun{t: t, dbp: dbp, ep: ep, trigs: trigs, r: r, w: w}
}

// writePaced makes n random writes (workload.writeOne) at rate per second,
// calling before(i), when not nil, ahead of the i-th; any error fails the
// test at once.
func (x *threeRun) writePaced(n, rate int, before func(i int)) {
	x.t.Helper()
	ctx := scenarioCtx(x.t)
	p := newPacer(rate)
	for i := range n {
		if before != nil {
			before(i)
		}
		if err := p.wait(ctx); err != nil {
			x.t.Fatal(err)
		}
		if err := x.w.writeOne(ctx); err != nil {
			x.t.Fatal(err)
		}
	}
}

// waitAll waits up to timeout for every expected event (see waitAll).
func (x *threeRun) waitAll(timeout time.Duration) {
	x.t.Helper()
	waitAll(x.t, x.w, x.ep, x.r, timeout)
}

// tallies verifies the three triggers (see tallies) and gives every tally
// the scenario name and note.
func (x *threeRun) tallies(scenario, note string) []tally {
	x.t.Helper()
	ts := tallies(x.t, scenario, x.w, x.ep, x.trigs)
	for i := range ts {
		ts[i].Note = note
	}
	return ts
}

// killPoints returns kills distinct write numbers in [from, from+span),
// drawn from a generator seeded with seed and stream.
func killPoints(seed, stream uint64, kills, from, span int) map[int]bool {
	rng := rand.New(rand.NewPCG(seed, stream))
	points := map[int]bool{}
	for len(points) < kills {
		points[from+rng.IntN(span)] = true
	}
	return points
}

// (a) The runner SIGKILLed at random points during writes, restarted.
func scenarioRunnerKill(s *suite) []tally {
	writes, kills, rate := pick(s, 1500, 10000), pick(s, 4, 20), pick(s, 1000, 500)
	x := startThree(s, "a", 0, 0)
	points := killPoints(s.seed, 2, kills, writes/20, writes-writes/20)
	var atKill []int // 2xx deliveries received by each kill
	x.writePaced(writes, rate, func(i int) {
		if points[i] {
			atKill = append(atKill, x.ep.rec.delivered())
			x.r.kill()
			x.r.start(true)
		}
	})
	x.waitAll(pick(s, time.Minute, 5*time.Minute))
	x.r.stop()
	// The kills must land in delivery: most restarts that were killed
	// again delivered something in between.
	delivering := 0
	for k := 1; k < len(atKill); k++ {
		if atKill[k] > atKill[k-1] {
			delivering++
		}
	}
	if 2*delivering < len(atKill)-1 {
		s.t.Errorf("%d of the %d restarts killed again delivered anything (deliveries at each kill: %v): the kills did not land in delivery", delivering, len(atKill)-1, atKill)
	}
	return x.tallies("a: runner SIGKILL", fmt.Sprintf("%d kills, %d of %d killed restarts delivering", kills, delivering, len(atKill)-1))
}

// (b) devdb SIGKILLed and restarted on its data directory mid-stream.
func scenarioDevdbKill(s *suite) []tally {
	writes, kills, rate := pick(s, 1000, 5000), pick(s, 2, 5), pick(s, 1000, 500)
	x := startThree(s, "b", 0, 0)
	points := killPoints(s.seed, 3, kills, writes/10, writes-writes/5)
	x.writePaced(writes, rate, func(i int) {
		if points[i] {
			x.dbp.kill()
			x.dbp.start()
		}
	})
	x.waitAll(pick(s, time.Minute, 5*time.Minute))
	x.r.stop()
	return x.tallies("b: devdb SIGKILL", fmt.Sprintf("%d devdb kills", kills))
}

// (c) The endpoint down (connection refused) for a third of the writes.
func scenarioEndpointDown(s *suite) []tally {
	t := s.t
	writes, rate := pick(s, 600, 3000), pick(s, 400, 100)
	x := startThree(s, "c", 0, 0)
	var downFor time.Duration
	var downAt time.Time
	x.writePaced(writes, rate, func(i int) {
		switch i {
		case writes / 3:
			x.ep.down()
			downAt = time.Now()
		case 2 * writes / 3:
			downFor = time.Since(downAt)
			if err := x.ep.up(); err != nil {
				t.Fatal(err)
			}
		}
	})
	x.waitAll(pick(s, time.Minute, 5*time.Minute))
	failed, err := x.r.failedAttempts()
	if err != nil {
		t.Fatal(err)
	}
	if failed == 0 {
		t.Error("no delivery attempt failed: the endpoint was not down while events flowed")
	}
	x.r.stop()
	return x.tallies("c: endpoint down", fmt.Sprintf("down %.1f s; %d failed attempts (all triggers)", downFor.Seconds(), failed))
}

// (d) The endpoint failing 50% of requests with 500.
func scenarioEndpoint500(s *suite) []tally {
	writes, rate := pick(s, 600, 3000), pick(s, 500, 500)
	x := startThree(s, "d", 0.5, 0)
	x.writePaced(writes, rate, nil)
	x.waitAll(pick(s, 2*time.Minute, 10*time.Minute))
	x.r.stop()
	x.ep.rec.mu.Lock()
	rejected := x.ep.rec.rejected
	x.ep.rec.mu.Unlock()
	ts := x.tallies("d: 50% HTTP 500", fmt.Sprintf("%d requests answered 500 (all triggers)", rejected))
	if rejected == 0 {
		s.t.Error("no request was answered 500: the fault was not injected")
	}
	return ts
}

// (e) A slow endpoint.
func scenarioSlowEndpoint(s *suite) []tally {
	writes, rate, delay := pick(s, 300, 1000), pick(s, 200, 50), pick(s, 20*time.Millisecond, 200*time.Millisecond)
	x := startThree(s, "e", 0, delay)
	x.writePaced(writes, rate, nil)
	x.waitAll(pick(s, 2*time.Minute, 10*time.Minute))
	x.r.stop()
	return x.tallies("e: slow endpoint", fmt.Sprintf("%v per request", delay))
}

// (f) The runner down longer than the oplog retention.
func scenarioHistoryLost(s *suite) []tally {
	t := s.t
	before, after := pick(s, 100, 1000), pick(s, 100, 1000)
	const oplogBytes = 256 << 10
	dbp := startDevdb(t, s.bin, "--oplog-max-bytes", fmt.Sprint(oplogBytes))
	ep := newEndpoint(t, s.seed)
	victim := trig{name: "victim", coll: "f", ordering: "per_document"}
	bystander := trig{name: "bystander", coll: "g", ordering: "strict"}
	w := newWorkload(t, dbp.uri, db, s.seed, 50, map[string][]string{"f": {"victim"}, "g": {"bystander"}})
	ctx := scenarioCtx(t)

	// 1. The victim delivers, and its checkpoint is saved on shutdown.
	cfg1 := writeConfig(t, "f1", dbp.uri, ep, []trig{victim})
	r := newRunner(t, s.bin, cfg1)
	r.start(true)
	for range before {
		if err := w.writeTo(ctx, "f"); err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, w, ep, r, time.Minute)
	r.stop()

	// 2. While it is down, other writes roll the oplog past its checkpoint.
	filler := w.client.Database(db).Collection("filler")
	pad := strings.Repeat("x", 4<<10)
	docs := make([]any, 0, 100)
	for i := range 4 * oplogBytes / len(pad) {
		docs = append(docs, bson.D{{Key: "i", Value: int32(i)}, {Key: "pad", Value: pad}})
		if len(docs) == cap(docs) {
			if _, err := filler.InsertMany(ctx, docs); err != nil {
				t.Fatal(err)
			}
			docs = docs[:0]
		}
	}

	// 3. Restarted, the victim fails visibly; a trigger without a stale
	// checkpoint delivers meanwhile.
	cfg2 := writeConfig(t, "f2", dbp.uri, ep, []trig{victim, bystander})
	r.cfg = cfg2
	r.start(false)
	var failed triggerStatus
	r.waitFor("victim failed with history lost", func() bool {
		st, err := r.status("victim")
		failed = st
		return err == nil && st.State == "failed"
	})
	lastErr := strings.ToLower(failed.LastError)
	if !strings.Contains(lastErr, "history") && !strings.Contains(lastErr, "286") {
		t.Errorf("victim failed, but its last error does not say history lost: %q", failed.LastError)
	}
	if !strings.Contains(failed.LastError, "checkpoints reset") {
		t.Errorf("victim's last error does not tell how to recover (checkpoints reset): %q", failed.LastError)
	}
	r.waitFor("bystander stream open", func() bool {
		st, err := r.status("bystander")
		return err == nil && st.StreamOpen
	})
	for range after / 2 {
		if err := w.writeTo(ctx, "g"); err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, w, ep, r, time.Minute)
	r.stop()

	// 4. `checkpoints reset` recovers the victim.
	out := checkpointsReset(t, s.bin, cfg2, "victim")
	t.Logf("checkpoints reset: %s", strings.TrimSpace(out))
	r.start(true)
	for range after {
		if err := w.writeTo(ctx, "f"); err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, w, ep, r, time.Minute)
	if st, err := r.status("victim"); err != nil || st.State != "running" {
		t.Errorf("victim after reset: state %q (err %v), want running", st.State, err)
	}
	r.stop()
	ts := tallies(t, "f: history lost", w, ep, []trig{victim, bystander})
	ts[0].Note = "failed visibly (history lost), recovered by checkpoints reset"
	ts[1].Note = "kept delivering while the victim was failed"
	return ts
}

// (g) The watched collections dropped and renamed.
func scenarioDropRename(s *suite) []tally {
	t := s.t
	writes := pick(s, 200, 2000)
	dbp := startDevdb(t, s.bin)
	ep := newEndpoint(t, s.seed)
	trigs := []trig{
		{name: "dropped", coll: "gd", ordering: "per_document", ops: "[insert, update, drop]"},
		{name: "renamed", coll: "gr", ordering: "strict", ops: "[insert, update, rename]"},
		{name: "dbwide", ordering: "per_document", ops: "[insert, update, drop, rename]"},
	}
	r := newRunner(t, s.bin, writeConfig(t, "g", dbp.uri, ep, trigs))
	r.start(true)
	w := newWorkload(t, dbp.uri, db, s.seed, 50, map[string][]string{"gd": {"dropped", "dbwide"}, "gr": {"renamed", "dbwide"}})
	ctx := scenarioCtx(t)
	for range writes {
		if err := w.writeOne(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.client.Database(db).Collection("gd").Drop(ctx); err != nil {
		t.Fatal(err)
	}
	w.expectCollectionEvent("gd", "drop")
	rename := bson.D{{Key: "renameCollection", Value: db + ".gr"}, {Key: "to", Value: db + ".gr2"}}
	if err := w.client.Database("admin").RunCommand(ctx, rename).Err(); err != nil {
		t.Fatal(err)
	}
	w.expectCollectionEvent("gr", "rename")
	// Afterwards only the database-wide trigger sees the collections.
	w.recreated("gd", 10000, []string{"dbwide"})
	w.renamed("gr", "gr2", []string{"dbwide"})
	for range writes / 2 {
		if err := w.writeOne(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, w, ep, r, time.Minute)
	for _, name := range []string{"dropped", "renamed"} {
		r.waitFor(name+" failed (invalidated)", func() bool {
			st, err := r.status(name)
			return err == nil && st.State == "failed"
		})
	}
	if st, err := r.status("dbwide"); err != nil || st.State != "running" {
		t.Errorf("dbwide: state %q (err %v), want running", st.State, err)
	}
	r.stop()
	ts := tallies(t, "g: drop and rename", w, ep, trigs)
	ts[0].Note = "drop delivered, then failed visibly (invalidate)"
	ts[1].Note = "rename delivered, then failed visibly (invalidate)"
	ts[2].Note = "kept delivering after drop and rename"
	return ts
}

// clusterScenario is scenario (h), set where the platform can attribute
// deliveries to members (Linux: see cluster_test.go).
var clusterScenario func(*suite) []tally

// TestFaults runs scenarios (a)–(i) in order and, with -update-reliability,
// writes their table into RELIABILITY.md.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection runs child processes; skipped with -short")
	}
	long := *longFlag || os.Getenv("CHANGEHOOK_LONG") == "1"
	bin := buildChangehook(t)
	scenarios := []struct {
		name string
		run  func(*suite) []tally
	}{
		{"a_runner_sigkill", scenarioRunnerKill},
		{"b_devdb_sigkill", scenarioDevdbKill},
		{"c_endpoint_down", scenarioEndpointDown},
		{"d_endpoint_500", scenarioEndpoint500},
		{"e_slow_endpoint", scenarioSlowEndpoint},
		{"f_history_lost", scenarioHistoryLost},
		{"g_drop_rename", scenarioDropRename},
		{"i_damaged_data_dir", scenarioDamagedDataDir},
	}
	if clusterScenario != nil {
		scenarios = append(scenarios, struct {
			name string
			run  func(*suite) []tally
		}{"h_cluster_members", clusterScenario})
	}
	var all []tally
	var durations []time.Duration
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			start := time.Now()
			ts := sc.run(&suite{t: t, bin: bin, long: long, seed: *seedFlag})
			if ts == nil {
				return // the scenario already failed fatally
			}
			checkTallies(t, ts)
			all = append(all, ts...)
			durations = append(durations, time.Since(start))
			t.Logf("%s: %v", sc.name, time.Since(start).Round(time.Millisecond))
		})
	}
	if *updateFlag {
		if t.Failed() {
			t.Fatal("not updating RELIABILITY.md: a scenario failed")
		}
		size := "reduced"
		if long {
			size = "full"
		}
		var total time.Duration
		for _, d := range durations {
			total += d
		}
		if err := updateReliability("../../RELIABILITY.md", all, size, *seedFlag, total); err != nil {
			t.Fatal(err)
		}
	}
}

// checkTallies fails t for every tally that lost events, got events nobody
// wrote or broke the order its mode promises.
func checkTallies(t *testing.T, ts []tally) {
	t.Helper()
	for _, tl := range ts {
		t.Logf("%-8s %-12s writes=%d matching=%d delivered=%d duplicates=%d lost=%d unexpected=%d order_violations=%d (%s)",
			tl.Trigger, tl.Ordering, tl.Writes, tl.Matching, tl.Delivered, tl.Duplicates, tl.Lost, tl.Unexpected, tl.OrderViolations, tl.Note)
		if tl.Matching == 0 {
			t.Errorf("%s: no event expected: the scenario checked nothing", tl.Trigger)
		}
		if tl.Lost != 0 {
			t.Errorf("%s: %d of %d events lost", tl.Trigger, tl.Lost, tl.Matching)
		}
		if tl.Unexpected != 0 {
			t.Errorf("%s: %d events arrived that were never written", tl.Trigger, tl.Unexpected)
		}
		if tl.OrderViolations > 0 {
			t.Errorf("%s (%s): %d order violations", tl.Trigger, tl.Ordering, tl.OrderViolations)
		}
	}
}

// Markers around the generated part of RELIABILITY.md.
const (
	beginMarker = "<!-- BEGIN fault-injection results (generated by go test ./test/faults/ -update-reliability) -->"
	endMarker   = "<!-- END fault-injection results -->"
)

// updateReliability replaces the text between the markers of path with the
// results table.
func updateReliability(path string, ts []tally, size string, seed uint64, total time.Duration) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("update reliability: %w", err)
	}
	text := string(old)
	i, j := strings.Index(text, beginMarker), strings.Index(text, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("update reliability: %s lacks the markers %q … %q", path, beginMarker, endMarker)
	}
	var b strings.Builder
	b.WriteString(beginMarker + "\n\n")
	cmd := "go test ./test/faults/ -update-reliability -v -timeout 60m"
	if size == "full" {
		cmd = "go test ./test/faults/ -long -update-reliability -v -timeout 60m"
	}
	fmt.Fprintf(&b, "Command: `%s` (seed %d, %s size, %v in total)  \n", cmd, seed, size, total.Round(time.Second))
	fmt.Fprintf(&b, "Machine: %s  \nDate: %s\n\n", machineDescription(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("| scenario | trigger | ordering | writes | matching events | delivered | duplicates | lost | order violations | notes |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, tl := range ts {
		ov := "n/a"
		if tl.OrderViolations >= 0 {
			ov = fmt.Sprint(tl.OrderViolations)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %d | %d | %d | **%d** | %s | %s |\n",
			tl.Scenario, tl.Trigger, tl.Ordering, tl.Writes, tl.Matching, tl.Delivered, tl.Duplicates, tl.Lost, ov, tl.Note)
	}
	b.WriteString("\n")
	text = text[:i] + b.String() + text[j:]
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return fmt.Errorf("update reliability: %w", err)
	}
	return nil
}

// machineDescription names the CPU, core count and Go version.
func machineDescription() string {
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "MemTotal:" {
				mem = ", " + f[1] + " kB RAM"
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s %s/%s", runtime.NumCPU(), hostinfo.CPUModel(), mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
