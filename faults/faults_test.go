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
)

var (
	longFlag   = flag.Bool("long", false, "run every scenario at full size (also CHANGEHOOK_LONG=1)")
	updateFlag = flag.Bool("update-reliability", false, "rewrite the results table in ../RELIABILITY.md")
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
}

// writeConfig writes a triggers.yaml for trigs against uri, delivering to ep.
// Retries are quick and never give up (dead_letter: false), so that any
// event the receiver does not get is really lost, not dead-lettered.
func writeConfig(t *testing.T, name, uri string, ep *endpoint, trigs []trig) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "mongodb:\n  uri: %q\nstate:\n  database: changehook\nlog:\n  level: warn\n", uri)
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
		fmt.Fprintf(&b, "    webhook:\n      url: %q\n      timeout: 5s\n      secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n", ep.url(tr.name))
	}
	return writeFile(t, t.TempDir(), name+".yaml", b.String())
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

func threeTriggers() ([]trig, map[string][]string) {
	trigs := []trig{
		{name: "strict", coll: "a", ordering: "strict"},
		{name: "perdoc", coll: "b", ordering: "per_document"},
		{name: "none", coll: "c", ordering: "none"},
	}
	return trigs, map[string][]string{"a": {"strict"}, "b": {"perdoc"}, "c": {"none"}}
}

// waitAll waits for every expected event or fails with the runner's output.
func waitAll(t *testing.T, w *workload, ep *endpoint, r *runnerProc, timeout time.Duration) {
	t.Helper()
	if !waitDelivered(ep.rec, w.exp, timeout) {
		t.Errorf("not every event arrived within %v; runner output:\n%s", timeout, r.out)
	}
}

// (a) The runner SIGKILLed at random points during writes, restarted.
func scenarioRunnerKill(s *suite) []tally {
	t := s.t
	writes, kills, rate := pick(s, 1500, 10000), pick(s, 4, 20), pick(s, 1000, 500)
	dbp := startDevdb(t, s.bin)
	ep := newEndpoint(t, s.seed)
	trigs, watch := threeTriggers()
	r := newRunner(t, s.bin, writeConfig(t, "a", dbp.uri, ep, trigs))
	r.start(true)
	w := newWorkload(t, dbp.uri, db, s.seed, 50, watch)
	rng := rand.New(rand.NewPCG(s.seed, 2))
	points := map[int]bool{}
	for len(points) < kills {
		points[writes/20+rng.IntN(writes-writes/20)] = true
	}
	ctx := scenarioCtx(t)
	p := newPacer(rate)
	for i := range writes {
		if points[i] {
			r.kill()
			r.start(true)
		}
		if err := p.wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.writeOne(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, w, ep, r, pick(s, time.Minute, 5*time.Minute))
	r.stop()
	ts := tallies(t, "a: runner SIGKILL", w, ep, trigs)
	for i := range ts {
		ts[i].Note = fmt.Sprintf("%d kills", kills)
	}
	return ts
}

// (b) devdb SIGKILLed and restarted on its data directory mid-stream.
func scenarioDevdbKill(s *suite) []tally {
	t := s.t
	writes, kills, rate := pick(s, 1000, 5000), pick(s, 2, 5), pick(s, 1000, 500)
	dbp := startDevdb(t, s.bin)
	ep := newEndpoint(t, s.seed)
	trigs, watch := threeTriggers()
	r := newRunner(t, s.bin, writeConfig(t, "b", dbp.uri, ep, trigs))
	r.start(true)
	w := newWorkload(t, dbp.uri, db, s.seed, 50, watch)
	rng := rand.New(rand.NewPCG(s.seed, 3))
	points := map[int]bool{}
	for len(points) < kills {
		points[writes/10+rng.IntN(writes-writes/5)] = true
	}
	ctx := scenarioCtx(t)
	p := newPacer(rate)
	for i := range writes {
		if points[i] {
			dbp.kill()
			dbp.start()
		}
		if err := p.wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.writeOne(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, w, ep, r, pick(s, time.Minute, 5*time.Minute))
	r.stop()
	ts := tallies(t, "b: devdb SIGKILL", w, ep, trigs)
	for i := range ts {
		ts[i].Note = fmt.Sprintf("%d devdb kills", kills)
	}
	return ts
}

// (c) The endpoint down (connection refused) for a third of the writes.
func scenarioEndpointDown(s *suite) []tally {
	t := s.t
	writes, rate := pick(s, 600, 3000), pick(s, 400, 100)
	dbp := startDevdb(t, s.bin)
	ep := newEndpoint(t, s.seed)
	trigs, watch := threeTriggers()
	r := newRunner(t, s.bin, writeConfig(t, "c", dbp.uri, ep, trigs))
	r.start(true)
	w := newWorkload(t, dbp.uri, db, s.seed, 50, watch)
	ctx := scenarioCtx(t)
	p := newPacer(rate)
	var downFor time.Duration
	var downAt time.Time
	for i := range writes {
		switch i {
		case writes / 3:
			ep.down()
			downAt = time.Now()
		case 2 * writes / 3:
			downFor = time.Since(downAt)
			if err := ep.up(); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.writeOne(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, w, ep, r, pick(s, time.Minute, 5*time.Minute))
	failed, err := r.failedAttempts()
	if err != nil {
		t.Fatal(err)
	}
	if failed == 0 {
		t.Error("no delivery attempt failed: the endpoint was not down while events flowed")
	}
	r.stop()
	ts := tallies(t, "c: endpoint down", w, ep, trigs)
	for i := range ts {
		ts[i].Note = fmt.Sprintf("down %.1f s; %d failed attempts (all triggers)", downFor.Seconds(), failed)
	}
	return ts
}

// (d) The endpoint failing 50% of requests with 500.
func scenarioEndpoint500(s *suite) []tally {
	t := s.t
	writes, rate := pick(s, 600, 3000), pick(s, 500, 500)
	dbp := startDevdb(t, s.bin)
	ep := newEndpoint(t, s.seed)
	ep.set(0.5, 0)
	trigs, watch := threeTriggers()
	r := newRunner(t, s.bin, writeConfig(t, "d", dbp.uri, ep, trigs))
	r.start(true)
	w := newWorkload(t, dbp.uri, db, s.seed, 50, watch)
	ctx := scenarioCtx(t)
	p := newPacer(rate)
	for range writes {
		if err := p.wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.writeOne(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, w, ep, r, pick(s, 2*time.Minute, 10*time.Minute))
	r.stop()
	ep.rec.mu.Lock()
	rejected := ep.rec.rejected
	ep.rec.mu.Unlock()
	ts := tallies(t, "d: 50% HTTP 500", w, ep, trigs)
	for i := range ts {
		ts[i].Note = fmt.Sprintf("%d requests answered 500 (all triggers)", rejected)
	}
	if rejected == 0 {
		t.Error("no request was answered 500: the fault was not injected")
	}
	return ts
}

// (e) A slow endpoint.
func scenarioSlowEndpoint(s *suite) []tally {
	t := s.t
	writes, rate, delay := pick(s, 300, 1000), pick(s, 200, 50), pick(s, 20*time.Millisecond, 200*time.Millisecond)
	dbp := startDevdb(t, s.bin)
	ep := newEndpoint(t, s.seed)
	ep.set(0, delay)
	trigs, watch := threeTriggers()
	r := newRunner(t, s.bin, writeConfig(t, "e", dbp.uri, ep, trigs))
	r.start(true)
	w := newWorkload(t, dbp.uri, db, s.seed, 50, watch)
	ctx := scenarioCtx(t)
	p := newPacer(rate)
	for range writes {
		if err := p.wait(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.writeOne(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitAll(t, w, ep, r, pick(s, 2*time.Minute, 10*time.Minute))
	r.stop()
	ts := tallies(t, "e: slow endpoint", w, ep, trigs)
	for i := range ts {
		ts[i].Note = fmt.Sprintf("%v per request", delay)
	}
	return ts
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

// TestFaults runs scenarios (a)–(g) in order and, with -update-reliability,
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
		if err := updateReliability("../RELIABILITY.md", all, size, *seedFlag, total); err != nil {
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
	beginMarker = "<!-- BEGIN fault-injection results (generated by go test ./faults/ -update-reliability) -->"
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
	cmd := "go test ./faults/ -update-reliability -v -timeout 60m"
	if size == "full" {
		cmd = "go test ./faults/ -long -update-reliability -v -timeout 60m"
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
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "MemTotal:" {
				mem = ", " + f[1] + " kB RAM"
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s)%s, %s %s/%s", runtime.NumCPU(), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
