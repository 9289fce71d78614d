package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/childproc"
)

// The many-triggers benchmark (-triggers 1,50,200): the cost of many idle
// triggers. For each trigger count N it starts devdb and the runner as two
// child processes of the changehook binary under test (`changehook devdb`,
// `changehook run`), so that both are the code of that binary and each
// one's CPU time is its own (/proc/PID/stat). N triggers watch N
// collections of one database; the state database is on the same devdb, as
// in `changehook dev`. It measures:
//
//   - idle CPU: the CPU seconds of the runner and of devdb over a window of
//     -idle-window in which nothing is written (after -idle-settle), as a
//     percentage of one CPU;
//   - checkpoint writes per second in that window: writes to the state
//     database's checkpoints collection, counted with a change stream on
//     the state database (served by the same devdb, so its small cost is in
//     devdb's figure);
//   - write-to-delivery latency: -many-writes inserts, round robin over the
//     N collections (one write per collection in turn), at -many-rate per
//     second; write acknowledgement → first receipt at the receiver.

// manyResult is one trigger count's numbers.
type manyResult struct {
	Triggers            int
	Load                string        // /proc/loadavg at the start of the idle window
	Window              time.Duration // wall time of the idle window
	RunnerCPU, DevdbCPU time.Duration // CPU time of each over the window
	CheckpointWrites    int64         // writes to the checkpoints collection in the window
	LeaseWrites         int64         // writes to the leases and members collections (cluster leases, heartbeats)
	OtherStateWrites    int64         // other writes to the state database in the window
	Latency             []time.Duration
	Writes              int    // inserts of the latency run
	LoadAfter           string // /proc/loadavg at the end of the latency run
	RunnerRSS, DevdbRSS int64  // at the end of the idle window
	InProcess           bool   // -cpuprofile: devdb and runner in this process
	NotReady            string // why the runner was not ready (then no latency run)
	ProcessCPU          time.Duration
}

// cpuPct is d over window as a percentage of one CPU.
func cpuPct(d, window time.Duration) float64 {
	if window <= 0 {
		return 0
	}
	return 100 * d.Seconds() / window.Seconds()
}

// devdbProc is a `changehook devdb` child process.
type devdbProc struct {
	*childproc.Proc
	uri    string
	stderr *childproc.TailBuffer
}

// startDevdbProc starts `changehook devdb` on a free loopback port with its
// data in dir and returns once it printed its URI.
func startDevdbProc(ctx context.Context, bin, dir string) (*devdbProc, error) {
	p := &devdbProc{stderr: &childproc.TailBuffer{Max: 64 << 10}}
	cmd := exec.Command(bin, "devdb", "--addr", "127.0.0.1:0", "--data", dir)
	cmd.Stderr = p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start devdb: %w", err)
	}
	proc, err := childproc.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("start devdb: %w", err)
	}
	p.Proc = proc
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case l, ok := <-line:
		if ok && strings.HasPrefix(l, "mongodb://") {
			p.uri = l
			return p, nil
		}
		p.Kill()
		return nil, fmt.Errorf("start devdb: unexpected output %q:\n%s", l, p.stderr)
	case <-t.C:
	case <-ctx.Done():
	}
	p.Kill()
	return nil, fmt.Errorf("start devdb: no URI within 30s:\n%s", p.stderr)
}

// readyTimeout bounds the wait for every trigger's stream to open.
const readyTimeout = 2 * time.Minute

// manyColl is the collection of trigger i.
func manyColl(i int) string { return fmt.Sprintf("idle_%03d", i) }

// writeManyConfig writes a triggers.yaml with n triggers, trigger i on
// collection manyColl(i), all delivering to url.
func writeManyConfig(dir, uri, stateDB string, n, concurrency int, url string) (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("write runner config: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "mongodb:\n  uri: %q\nstate:\n  database: %q\nlog:\n  level: warn\ntriggers:\n", uri, stateDB)
	for i := range n {
		fmt.Fprintf(&b, `  - name: t%03d
    database: %q
    collection: %q
    operations: [insert]
    ordering: per_document
    concurrency: %d
    start_at: now
    webhook:
      url: %q
      secret: %q
      timeout: 10s
    retry: { max_attempts: 5, initial_backoff: 100ms, max_backoff: 2s }
`, i, benchDB, manyColl(i), concurrency, url, "whsec_"+base64.StdEncoding.EncodeToString(key))
	}
	path := filepath.Join(dir, fmt.Sprintf("many-%d.yaml", n))
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return "", fmt.Errorf("write runner config: %w", err)
	}
	return path, nil
}

// countStateWrites counts writes to the state database with a change
// stream until ctx ends: checkpoint writes and all others. It returns once
// the stream is open.
func countStateWrites(ctx context.Context, client *mongo.Client, db string, cps, leases, other *atomic.Int64) error {
	cs, err := client.Database(db).Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetMaxAwaitTime(time.Second))
	if err != nil {
		return fmt.Errorf("count state writes: %w", err)
	}
	go func() {
		defer func() { _ = cs.Close(context.Background()) }()
		for cs.Next(ctx) {
			coll, _ := cs.Current.Lookup("ns", "coll").StringValueOK()
			switch coll {
			case "checkpoints":
				cps.Add(1)
			case "leases", "members":
				leases.Add(1)
			default:
				other.Add(1)
			}
		}
	}()
	return nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// manyAll runs the many-triggers benchmark for every count in -triggers.
func (c config) manyAll(ctx context.Context, dir string, log io.Writer) ([]manyResult, error) {
	var out []manyResult
	for _, n := range c.triggers {
		r, err := c.manyRun(ctx, dir, log, n)
		if err != nil {
			return out, fmt.Errorf("%d triggers: %w", n, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// manyRun measures one trigger count with fresh processes and a fresh data
// directory.
func (c config) manyRun(ctx context.Context, dir string, log io.Writer, n int) (res manyResult, err error) {
	logf := func(format string, args ...any) {
		fmt.Fprintf(log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	res.Triggers, res.Writes = n, c.manyWrites
	runDir, err := os.MkdirTemp(dir, fmt.Sprintf("many-%d-", n))
	if err != nil {
		return res, fmt.Errorf("create work directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(runDir) }()

	// devdb: a child process of the binary under test, or (with -cpuprofile)
	// in this process.
	var (
		uri      string
		devdbPid int
	)
	if c.cpuprofile != "" {
		res.InProcess = true
		srv, err := devdb.Start(ctx, devdb.Options{Data: filepath.Join(runDir, "data")})
		if err != nil {
			return res, fmt.Errorf("start devdb: %w", err)
		}
		defer func() { _ = srv.Close() }()
		uri = srv.URI()
	} else {
		dp, err := startDevdbProc(ctx, c.bin, filepath.Join(runDir, "data"))
		if err != nil {
			return res, err
		}
		defer func() {
			if !dp.Stop(stopGrace) && err == nil {
				err = fmt.Errorf("stop devdb: no clean exit within %v", stopGrace)
			}
		}()
		uri, devdbPid = dp.uri, dp.Cmd.Process.Pid
	}
	client, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return res, fmt.Errorf("connect to devdb: %w", err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	for i := range n {
		if err := client.Database(benchDB).CreateCollection(ctx, manyColl(i)); err != nil {
			return res, fmt.Errorf("create collection: %w", err)
		}
	}
	clk := newClock()
	rec, err := startReceiver(clk, c.manyWrites, 0)
	if err != nil {
		return res, err
	}
	defer rec.close()
	cfgPath, err := writeManyConfig(runDir, uri, stateDB, n, c.concurrency, rec.url())
	if err != nil {
		return res, err
	}
	admin, err := childproc.FreeAddr()
	if err != nil {
		return res, err
	}

	// The runner: a child process, or (with -cpuprofile) in this process.
	var (
		p         *runnerProc
		inProc    *inProcessRunner
		runnerPid int
	)
	if res.InProcess {
		inProc = startInProcessRunner(cfgPath, admin)
		p = &runnerProc{admin: admin, stderr: inProc.out}
		defer func() {
			if stopErr := inProc.stop(stopGrace); stopErr != nil && err == nil {
				err = stopErr
			}
		}()
	} else {
		if p, err = startRunner(c.bin, cfgPath, admin); err != nil {
			return res, err
		}
		defer func() {
			if _, _, stopErr := p.stop(stopGrace); stopErr != nil && err == nil {
				err = stopErr
			}
		}()
		runnerPid = p.Cmd.Process.Pid
	}
	logf("%d triggers: waiting for the runner to be ready", n)
	if err := p.waitReadyAny(ctx, readyTimeout, inProc); err != nil {
		// Measured anyway: a runner that cannot get its triggers ready is
		// the worst case of idle cost. The latency run is skipped.
		if ctx.Err() != nil {
			return res, err
		}
		res.NotReady = fmt.Sprintf("not ready within %v", readyTimeout)
		logf("%d triggers: %s; measuring the idle window anyway, no latency run", n, res.NotReady)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var cps, leases, other atomic.Int64
	if err := countStateWrites(cctx, client, stateDB, &cps, &leases, &other); err != nil {
		return res, err
	}
	logf("%d triggers: ready; settling for %v, then an idle window of %v", n, c.idleSettle, c.idleWindow)
	if err := sleepCtx(ctx, c.idleSettle); err != nil {
		return res, err
	}

	var prof *os.File
	if res.InProcess {
		if prof, err = os.Create(fmt.Sprintf("%s.%d", c.cpuprofile, n)); err != nil {
			return res, fmt.Errorf("cpu profile: %w", err)
		}
		defer func() { _ = prof.Close() }()
		if err := pprof.StartCPUProfile(prof); err != nil {
			return res, fmt.Errorf("cpu profile: %w", err)
		}
	}
	res.Load = loadavg()
	r0, d0, h0, err := sampleBoth(runnerPid, devdbPid)
	if err != nil {
		return res, err
	}
	cps0, leases0, other0 := cps.Load(), leases.Load(), other.Load()
	w0 := time.Now()
	if err := sleepCtx(ctx, c.idleWindow); err != nil {
		return res, err
	}
	r1, d1, h1, err := sampleBoth(runnerPid, devdbPid)
	if err != nil {
		return res, err
	}
	res.Window = time.Since(w0)
	if res.InProcess {
		pprof.StopCPUProfile()
		logf("%d triggers: CPU profile of the idle window written to %s", n, prof.Name())
	}
	res.CheckpointWrites, res.LeaseWrites, res.OtherStateWrites = cps.Load()-cps0, leases.Load()-leases0, other.Load()-other0
	res.RunnerCPU, res.DevdbCPU = r1.CPU-r0.CPU, d1.CPU-d0.CPU
	res.RunnerRSS, res.DevdbRSS = r1.RSS, d1.RSS
	res.ProcessCPU = h1.CPU - h0.CPU
	logf("%d triggers: idle runner %.1f%%, devdb %.1f%% of a CPU; %d checkpoint writes in %v",
		n, cpuPct(res.RunnerCPU, res.Window), cpuPct(res.DevdbCPU, res.Window), res.CheckpointWrites, res.Window.Round(time.Millisecond))

	if res.NotReady != "" {
		res.LoadAfter = loadavg()
		return res, nil
	}
	logf("%d triggers: %d writes round robin over the collections at %d/s", n, c.manyWrites, c.manyRate)
	colls := make([]*mongo.Collection, n)
	for i := range colls {
		colls[i] = client.Database(benchDB).Collection(manyColl(i))
	}
	acks, err := writeRoundRobin(ctx, colls, c.manyWrites, c.manyRate, clk)
	if err == nil {
		if inProc != nil {
			err = rec.wait(ctx, c.timeout)
		} else {
			err = p.waitDelivered(ctx, rec, c.timeout)
		}
	}
	if err != nil {
		return res, fmt.Errorf("latency run: %w\nrunner output:\n%s", err, p.stderr)
	}
	res.Latency = latencies(acks, rec.receipts())
	res.LoadAfter = loadavg()
	return res, nil
}

// sampleBoth reads the runner's and devdb's /proc (pid 0: not a child
// process, zero sample) and this process's.
func sampleBoth(runnerPid, devdbPid int) (r, d, self procSample, err error) {
	if runnerPid != 0 {
		if r, err = readProc(runnerPid); err != nil {
			return
		}
	}
	if devdbPid != 0 {
		if d, err = readProc(devdbPid); err != nil {
			return
		}
	}
	self, err = readProc(os.Getpid())
	return
}

// waitReadyAny is waitReady for a child runner, or for an in-process one
// (whose exit is reported by inProc.done).
func (p *runnerProc) waitReadyAny(ctx context.Context, timeout time.Duration, inProc *inProcessRunner) error {
	if inProc == nil {
		return p.waitReady(ctx, timeout)
	}
	// An in-process runner has no Proc; poll /readyz the same way.
	child := &runnerProc{admin: p.admin, stderr: p.stderr, Proc: neverExits()}
	return child.waitReady(ctx, timeout)
}

// neverExits is a Proc handle whose Exited channel never closes (for an
// in-process runner polled by waitReady).
func neverExits() *childproc.Proc { return &childproc.Proc{} }

// writeRoundRobin inserts documents [0, n): document seq goes to
// colls[seq % len(colls)], one insertOne at a time at rate per second
// (paced against the schedule), and returns each write's acknowledgement
// offset.
func writeRoundRobin(ctx context.Context, colls []*mongo.Collection, n, rate int, c *clock) ([]time.Duration, error) {
	acks := make([]time.Duration, n)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for seq := range n {
		if wait := time.Until(start.Add(time.Duration(seq) * interval)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return nil, fmt.Errorf("write round robin: %w", ctx.Err())
			}
		}
		if _, err := colls[seq%len(colls)].InsertOne(ctx, benchDoc(seq)); err != nil {
			return nil, fmt.Errorf("write round robin: %w", err)
		}
		acks[seq] = c.now()
	}
	return acks, nil
}

// printMany writes the many-triggers results as a Markdown table.
func printMany(w io.Writer, rs []manyResult, c config) {
	fmt.Fprintf(w, "changehook many-triggers benchmark, %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %s\n", machine())
	if c.cpuprofile != "" {
		fmt.Fprintf(w, "PROFILE RUN: devdb and the runner ran inside the benchmark process (-cpuprofile); CPU below is the whole process (devdb, runner, receiver, writer)\n")
	} else {
		fmt.Fprintf(w, "binary: %s — devdb (`changehook devdb`) and the runner (`changehook run`) are two child processes of it; CPU is each one's utime+stime from /proc/PID/stat\n", c.bin)
	}
	fmt.Fprintf(w, "idle: no writes for %v after %v of settling; checkpoint writes counted with a change stream on the state database (same devdb)\n", c.idleWindow, c.idleSettle)
	fmt.Fprintf(w, "latency: %d insertOne round robin over the trigger collections at %d/s; write acknowledgement → first receipt\n\n", c.manyWrites, c.manyRate)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| triggers\t load avg (1/5/15) at idle start\t load avg at end\t idle CPU runner %\t idle CPU devdb %\t idle CPU total %\t checkpoint writes/s\t lease+member writes/s\t other state writes/s\t p50 ms\t p90 ms\t p99 ms\t max ms\t runner RSS MB\t devdb RSS MB\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, r := range rs {
		runner, db := fmt.Sprintf("%.1f", cpuPct(r.RunnerCPU, r.Window)), fmt.Sprintf("%.1f", cpuPct(r.DevdbCPU, r.Window))
		total := cpuPct(r.RunnerCPU+r.DevdbCPU, r.Window)
		if r.InProcess {
			runner, db, total = "in process", "in process", cpuPct(r.ProcessCPU, r.Window)
		}
		fmt.Fprintf(tw, "| %d\t %s\t %s\t %s\t %s\t %.1f\t %.2f\t %.2f\t %.2f\t %s\t %s\t %s\t %s\t %.1f\t %.1f\t\n",
			r.Triggers, r.Load, r.LoadAfter, runner, db, total,
			float64(r.CheckpointWrites)/r.Window.Seconds(), float64(r.LeaseWrites)/r.Window.Seconds(), float64(r.OtherStateWrites)/r.Window.Seconds(),
			msOrDash(r.Latency, 50), msOrDash(r.Latency, 90), msOrDash(r.Latency, 99), msOrDash(r.Latency, 100),
			mb(r.RunnerRSS), mb(r.DevdbRSS))
	}
	_ = tw.Flush()
	for _, r := range rs {
		if r.NotReady != "" {
			fmt.Fprintf(w, "\n%d triggers: the runner was %s (its /readyz never answered 200); the idle window was measured anyway and the latency run skipped\n", r.Triggers, r.NotReady)
		}
	}
	fmt.Fprintln(w)
	for _, r := range rs {
		if r.Triggers != 200 {
			continue
		}
		total := cpuPct(r.RunnerCPU+r.DevdbCPU, r.Window)
		if r.InProcess {
			total = cpuPct(r.ProcessCPU, r.Window)
		}
		fmt.Fprintf(w, "Goals (200 triggers): idle CPU runner+devdb < 5%% of a CPU: %.1f%% %s; p99 write-to-delivery < 100 ms: %s ms %s\n",
			total, verdict(total < 5), msOrDash(r.Latency, 99), verdict(len(r.Latency) > 0 && percentile(r.Latency, 99) < 100*time.Millisecond))
	}
}

// errNoTriggers reports an empty -triggers list.
var errNoTriggers = errors.New("no trigger counts")

// parseTriggerCounts parses "1,50,200".
func parseTriggerCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(f, "%d", &n); err != nil || n < 1 || n > 1000 || fmt.Sprint(n) != f {
			return nil, fmt.Errorf("trigger count %q is not a number from 1 to 1000", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errNoTriggers
	}
	return out, nil
}
