package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/childproc"
	"github.com/changehook/changehook/internal/hostinfo"
)

const (
	benchDB   = "bench"
	stateDB   = "changehook_bench_state"
	stopGrace = 30 * time.Second
)

// bench holds what every phase shares: devdb, a driver client, the clock.
type bench struct {
	cfg    config
	dir    string
	log    io.Writer
	clock  *clock
	db     *devdb.Server
	client *mongo.Client
	pki    *benchPKI // the HTTPS receiver's CA and certificate
}

func newBench(ctx context.Context, cfg config, dir string, log io.Writer) (*bench, error) {
	// Test commands: the history phase's slow writer is a failCommand
	// fail point. Every drain reads its backlog from the oplog, so the
	// oplog must hold one whole: devdb's default bound
	// (devdb.DefaultOplogMaxBytes) does not hold 1,000,000 of the
	// benchmark's inserts (the first read ends in
	// ChangeStreamHistoryLost), so a larger -n gets a bound of 1 KiB per
	// document (an insert's entry is the document, about 200 bytes, and
	// its metadata).
	opts := devdb.Options{EnableTestCommands: true}
	if b := int64(cfg.n) << 10; b > devdb.DefaultOplogMaxBytes {
		opts.OplogMaxBytes = b
	}
	srv, err := devdb.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start devdb: %w", err)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	if err != nil {
		_ = srv.Close()
		return nil, fmt.Errorf("connect to devdb: %w", err)
	}
	b := &bench{cfg: cfg, dir: dir, log: log, clock: newClock(), db: srv, client: client}
	if cfg.https {
		if b.pki, err = newBenchPKI(dir); err != nil {
			b.close()
			return nil, err
		}
	}
	if err := b.seedOplog(ctx); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// dropBenchDatabases drops the benchmark's database and every state
// database of its runners, so that a run starts as the first did.
func (b *bench) dropBenchDatabases(ctx context.Context) error {
	names, err := b.client.ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	for _, name := range names {
		if name == benchDB || strings.HasPrefix(name, stateDB) {
			if err := b.client.Database(name).Drop(ctx); err != nil {
				return fmt.Errorf("drop database %s: %w", name, err)
			}
		}
	}
	return b.seedOplog(ctx)
}

// seedOplog writes one entry to the fresh oplog and waits for the next
// wall-clock second, so that every backlogStart time that follows is newer
// than the oldest oplog entry (start_at has a resolution of one second).
func (b *bench) seedOplog(ctx context.Context) error {
	if _, err := b.client.Database(benchDB).Collection("seed").InsertOne(ctx, benchDoc(0)); err != nil {
		return fmt.Errorf("seed the oplog: %w", err)
	}
	next := time.Now().Truncate(time.Second).Add(time.Second + 10*time.Millisecond)
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("seed the oplog: %w", ctx.Err())
	}
}

func (b *bench) close() {
	_ = b.client.Disconnect(context.Background())
	_ = b.db.Close()
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// modeResult is one ordering mode's numbers.
type modeResult struct {
	Mode     string
	Events   int
	Requests int64 // requests the receiver got (duplicates included)
	Rate     float64
	CPU      time.Duration // runner process, start to last receipt
	Sys      time.Duration // of CPU, the runner's time in the kernel
	HostCPU  time.Duration // this process (devdb + receiver) over the same span
	PeakRSS  int64         // runner process VmHWM at the last receipt
	Switches int64         // runner process's context switches, start to last receipt (all threads)
	Faults   int64         // runner process's minor page faults, start to last receipt
	GCs      int64         // runner's garbage collections, start to last receipt (its /metrics)
	Alloc    int64         // bytes the runner allocated, start to last receipt (its /metrics)
	// WaitStream and WaitDelivery are the shares of the time from the
	// first receipt to the last that the runner's watch loop waited for
	// the change stream and for delivery (changehook_watch_wait_seconds_total);
	// both 0 when not measured.
	WaitStream, WaitDelivery float64
	// Busy is how many CPUs the runner and this process (devdb and the
	// receiver) kept busy together from the first receipt to the last
	// (their CPU time over the span, from /proc); 0 when not measured.
	Busy float64
	// MachineBusy is how many of the machine's CPUs were busy over the
	// same span (/proc/stat): Busy plus any other process, interrupts,
	// softirqs and steal; 0 when not measured.
	MachineBusy float64
	HostSwitch  int64 // this process's context switches over the same span
	Conns       int64 // connections the receiver accepted
	HTTPS       bool  // drained to the HTTPS receiver
	Batch       int   // batch.max_events (0: unbatched)
	Steady      []time.Duration
	SteadyN     int
	SteadyCPU   time.Duration
	SteadyPeak  int64
}

// report is everything one run measured.
type report struct {
	Machine string
	CPUs    int // runtime.NumCPU(): the CPUs every process of the run shares
	// HaltsAtOnce: the machine's idle vCPUs halt without polling first
	// (hostinfo.IdlePolicy), so every cross-process wake-up is a round
	// trip through the hypervisor — what bounds strict.
	HaltsAtOnce bool
	Date        time.Time
	N           int

	// Baseline rates, events/s.
	StreamA, PostB1, PostB16, NodeC float64
	NodeNote                        string // why (c) did not run, if it did not
	// Every read's rate of (a) and (a′), whose figures are the medians of
	// their reads (see streamReads).
	StreamAReads, StreamASepReads []float64
	// This process's page faults per event while (a) reads (the median of
	// its reads), and a second read of (a)'s last backlog: its events/s
	// and page faults per event. The re-read is not a baseline (no drain
	// reads a backlog twice); it is shown beside (a) for comparison.
	StreamAFaults, StreamAReread, StreamARereadFaults float64

	// CPU per event of baselines (a) and (b) in this process, which runs all
	// their parties: a machine-time cost that contention from other
	// processes distorts far less than it distorts rates.
	StreamACPU, PostB16CPU time.Duration

	// Same-topology baselines (a′) and (b′) (-same-topology): the client
	// in a child process. Rates, events/s; CPU per event of all parties
	// (client process + this process) and of the client process alone.
	StreamASep, PostB1Sep, PostB16Sep        float64
	StreamASepCPU, PostB16SepCPU             time.Duration
	StreamASepClientCPU, PostB16SepClientCPU time.Duration
	PostB1SepClientCPU                       time.Duration // (b′) 1 in flight: the client process per request

	Modes []modeResult
	HTTPS []modeResult // HTTPS drains, one per mode (-https)
	// Batched is the batched drains (-batch), one per mode but strict.
	Batched []modeResult
	Rate    *rateResult // real-time rate-limit check (-rate-limit)
	BP      *bpResult
	BPErr   string // why the backpressure run failed, if it did
	// History is the history phase (nil: not run).
	History *historyResult

	LoadFrom, LoadTo string // /proc/loadavg when the run started and ended
}

func (b *bench) all(ctx context.Context) (*report, error) {
	idle, halts := hostinfo.IdlePolicy()
	rep := &report{Machine: machineIdle(idle), CPUs: runtime.NumCPU(), HaltsAtOnce: halts, Date: time.Now().UTC(), N: b.cfg.n, LoadFrom: loadavg()}
	defer func() { rep.LoadTo = loadavg() }()
	b.logf("baseline (a): Go driver change stream, backlogs of %d", b.cfg.n)
	a, err := b.baselineA(ctx)
	if err != nil {
		return nil, err
	}
	rep.StreamA, rep.StreamACPU, rep.StreamAReads = a.Rate, a.CPU, a.Reads
	rep.StreamAFaults, rep.StreamAReread, rep.StreamARereadFaults = a.Faults, a.Reread, a.RereadFaults
	b.logf("baseline (b): Go client POSTs, %d requests", b.cfg.n)
	if rep.PostB1, rep.PostB16, rep.PostB16CPU, err = b.baselineB(ctx); err != nil {
		return nil, err
	}
	if b.cfg.sameTopology {
		b.logf("baseline (a′): (a) with the client in a child process, backlogs of %d", b.cfg.n)
		var client, host time.Duration
		if rep.StreamASep, client, host, rep.StreamASepReads, err = b.baselineASep(ctx); err != nil {
			return nil, err
		}
		rep.StreamASepCPU, rep.StreamASepClientCPU = client+host, client
		b.logf("baseline (b′): (b) with the client in a child process, %d requests", b.cfg.n)
		if rep.PostB1Sep, rep.PostB16Sep, rep.PostB1SepClientCPU, client, host, err = b.baselineBSep(ctx); err != nil {
			return nil, err
		}
		rep.PostB16SepCPU, rep.PostB16SepClientCPU = client+host, client
	}
	if b.cfg.node {
		b.logf("baseline (c): Node.js watch() + fetch, backlog of %d", b.cfg.n)
		rep.NodeC, err = b.baselineC(ctx)
		if err != nil {
			rep.NodeNote = err.Error()
			b.logf("baseline (c) skipped: %v", err)
		}
	} else {
		rep.NodeNote = "skipped (-node=false)"
	}
	for _, m := range b.cfg.modes {
		b.logf("runner %s: drain a backlog of %d", m, b.cfg.n)
		r, err := b.drain(ctx, m, false, 0)
		if err != nil {
			return nil, err
		}
		if b.cfg.https {
			b.logf("runner %s: drain a backlog of %d to an HTTPS receiver", m, b.cfg.n)
			h, err := b.drain(ctx, m, true, 0)
			if err != nil {
				return nil, err
			}
			rep.HTTPS = append(rep.HTTPS, h)
		}
		if b.cfg.steady > 0 {
			b.logf("runner %s: %d inserts/s for %v", m, b.cfg.steadyRate, b.cfg.steady)
			if err := b.steadyRun(ctx, m, &r); err != nil {
				return nil, err
			}
		}
		rep.Modes = append(rep.Modes, r)
	}
	if err := b.batchedDrains(ctx, rep); err != nil {
		return nil, err
	}
	if b.cfg.rateLimit > 0 {
		b.logf("rate limit: webhook.rate_limit %g/s, backlog of %d", b.cfg.rateLimit, int(b.cfg.rateLimit*b.cfg.rateDuration.Seconds())+1)
		if rep.Rate, err = b.rateRun(ctx); err != nil {
			return nil, err
		}
	}
	if b.cfg.history {
		if rep.History, err = b.historyPhase(ctx); err != nil {
			return nil, err
		}
	}
	if b.cfg.backpressure {
		b.logf("backpressure: backlog of %d, endpoint %v per request, sampling for %v", b.cfg.bpEvents, b.cfg.bpDelay, b.cfg.bpDuration)
		if rep.BP, err = b.backpressureRun(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			rep.BPErr = err.Error()
			b.logf("backpressure run failed: %v", err)
		}
	}
	return rep, nil
}

// streamReads is how many times baselines (a) and (a′) read a backlog, each
// read a new change stream over a backlog written just before it, as every
// drain reads one; each baseline reports the median read. One read of a
// 100,000-event backlog lasts 0.3–0.5 s, and single reads varied by half:
// one read made a noisy denominator for the goals against (a). No backlog
// is read twice: a first read takes 0.2–0.35 page faults per event in the
// benchmark process (devdb's heap and mapped storage file, the driver's
// buffers), a second read of the same backlog 0.02–0.07, and ran two to
// three times as fast (BENCHMARKS.md, 2026-12-04), while a drain only ever
// reads its backlog once.
const streamReads = 3

// streamBaseline is what baselineA measures: (a)'s rate and this
// process's CPU time and page faults per event (devdb and the driver both
// run here), each the median of streamReads reads of freshly written
// backlogs, every read's rate, and the rate and page faults per event of
// one more read of the last backlog (a re-read, for comparison only).
type streamBaseline struct {
	Rate         float64
	CPU          time.Duration
	Faults       float64
	Reads        []float64
	Reread       float64
	RereadFaults float64
}

// baselineA measures baseline (a) (see streamBaseline).
func (b *bench) baselineA(ctx context.Context) (streamBaseline, error) {
	var out streamBaseline
	var cpus, faults []float64
	read := func(coll string, op bson.Timestamp) (rate float64, cpu time.Duration, faults float64, err error) {
		cpu, faults, err = costPerEvent(b.cfg.n, func() (err error) {
			rate, err = baselineStream(ctx, b.db.URI(), benchDB, coll, b.cfg.n, op, b.clock)
			return err
		})
		return rate, cpu, faults, err
	}
	var coll string
	var op bson.Timestamp
	for i := range streamReads {
		coll = fmt.Sprintf("base_a_%d", i)
		var err error
		if _, op, err = b.backlog(ctx, coll, b.cfg.n); err != nil {
			return out, err
		}
		r, c, f, err := read(coll, op)
		if err != nil {
			return out, err
		}
		out.Reads, cpus, faults = append(out.Reads, r), append(cpus, float64(c)), append(faults, f)
	}
	var err error
	if out.Reread, _, out.RereadFaults, err = read(coll, op); err != nil {
		return out, err
	}
	out.Rate, out.CPU, out.Faults = median(out.Reads), time.Duration(median(cpus)), median(faults)
	return out, nil
}

// baselineB returns baseline (b)'s rates with 1 and -concurrency requests
// in flight, and this process's CPU time per request for the latter
// (client and receiver both run here).
func (b *bench) baselineB(ctx context.Context) (seq, par float64, parCPU time.Duration, err error) {
	bodies, err := eventBodies(b.cfg.n)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, w := range []int{1, b.cfg.concurrency} {
		rec, err := startReceiver(b.clock, b.cfg.n, 0)
		if err != nil {
			return 0, 0, 0, err
		}
		var r float64
		cpu, err := cpuPerEvent(len(bodies), func() (err error) {
			r, err = baselinePost(ctx, rec.url(), bodies, w)
			return err
		})
		rec.close()
		if err != nil {
			return 0, 0, 0, err
		}
		if w == 1 {
			seq = r
		} else {
			par, parCPU = r, cpu
		}
	}
	return seq, par, parCPU, nil
}

// readsNote says that (a) and (a′) are medians of several reads, each of
// a fresh backlog, lists each read's rate, and compares (a)'s page faults
// with those of its re-read (a re-read of 0 events/s: not taken). It is ""
// when (a) was read once.
func readsNote(r *report) string {
	if len(r.StreamAReads) < 2 {
		return ""
	}
	list := func(rs []float64) string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = strconv.FormatFloat(r, 'f', 0, 64)
		}
		return strings.Join(out, ", ")
	}
	note := fmt.Sprintf("(a) is the median of %d reads, each of a freshly written backlog as every drain reads one (%s events/s)", len(r.StreamAReads), list(r.StreamAReads))
	if len(r.StreamASepReads) > 1 {
		note += fmt.Sprintf(", (a′) of %d (%s)", len(r.StreamASepReads), list(r.StreamASepReads))
	}
	note += "."
	if r.StreamAReread > 0 {
		note += fmt.Sprintf(" (a)'s reads took %.2f page faults per event in this process; a second read of its last backlog took %.2f and ran at %.0f events/s (not a baseline: no drain reads a backlog twice).",
			r.StreamAFaults, r.StreamARereadFaults, r.StreamAReread)
	}
	return note
}

// cpuPerEvent runs f and returns this process's CPU time during it divided
// by n.
func cpuPerEvent(n int, f func() error) (time.Duration, error) {
	cpu, _, err := costPerEvent(n, f)
	return cpu, err
}

// costPerEvent runs f and returns this process's CPU time and minor page
// faults during it, each divided by n.
func costPerEvent(n int, f func() error) (cpu time.Duration, faults float64, err error) {
	before, err := readProc(os.Getpid())
	if err != nil {
		return 0, 0, err
	}
	if err := f(); err != nil {
		return 0, 0, err
	}
	after, err := readProc(os.Getpid())
	if err != nil {
		return 0, 0, err
	}
	return (after.CPU - before.CPU) / time.Duration(n), float64(after.MinFlt-before.MinFlt) / float64(n), nil
}

func (b *bench) baselineC(ctx context.Context) (float64, error) {
	script, err := prepareNode(ctx, b.cfg.nodeCache)
	if err != nil {
		return 0, err
	}
	_, op, err := b.backlog(ctx, "base_c", b.cfg.n)
	if err != nil {
		return 0, err
	}
	rec, err := startReceiver(b.clock, b.cfg.n, 0)
	if err != nil {
		return 0, err
	}
	defer rec.close()
	return baselineNode(ctx, script, b.db.URI(), benchDB, "base_c", op, rec, b.cfg.timeout)
}

// startRunnerFor writes a configuration for spec and starts a runner on it.
func (b *bench) startRunnerFor(spec triggerSpec) (*runnerProc, error) {
	path, err := writeRunnerConfig(b.dir, b.db.URI(), stateDB, spec)
	if err != nil {
		return nil, err
	}
	admin, err := childproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	return startRunner(b.cfg.bin, path, admin)
}

// drain measures one mode's throughput on a backlog, to the HTTPS
// receiver when https, in batches of batch events when batch > 0.
func (b *bench) drain(ctx context.Context, mode string, https bool, batch int) (modeResult, error) {
	res := modeResult{Mode: mode, Events: b.cfg.n, HTTPS: https, Batch: batch}
	coll := "drain_" + mode
	if batch > 0 {
		coll = "drain_batched_" + mode
	}
	var serverTLS *tls.Config
	caFile := ""
	if https {
		coll = "drain_https_" + mode
		serverTLS, caFile = b.pki.server, b.pki.caFile
	}
	startAt, _, err := b.backlog(ctx, coll, b.cfg.n)
	if err != nil {
		return res, err
	}
	rec, err := startReceiverTLS(b.clock, b.cfg.n, 0, serverTLS)
	if err != nil {
		return res, err
	}
	defer rec.close()
	host0, err := readProc(os.Getpid())
	if err != nil {
		return res, err
	}
	hostSw0, err := readSwitches(os.Getpid())
	if err != nil {
		return res, err
	}
	p, err := b.startRunnerFor(triggerSpec{Mode: mode, Concurrency: b.cfg.concurrency, Database: benchDB,
		Collection: coll, URL: rec.url(), StartAt: startAt, CAFile: caFile, Batch: batch})
	if err != nil {
		return res, err
	}
	// Both processes' CPU time and the wait counters at the first
	// receipt, so that the drain's busy CPUs and share of waiting are
	// measured from there to the last (one scrape, about a millisecond of
	// the runner's CPU, counted in its drain).
	startWaits, drainOver := make(chan firstReceipt, 1), make(chan struct{})
	defer close(drainOver)
	go func() {
		var f firstReceipt
		select {
		case <-rec.started:
			f.at = b.clock.now()
			f.cpu = busySample(p.Cmd.Process.Pid)
			f.machine, _ = readMachine()
			f.waits, _ = p.waits(ctx, b.clock) // a failed scrape leaves At 0: no figure
		case <-drainOver:
		case <-ctx.Done():
		}
		startWaits <- f
	}()
	waitErr := p.waitDelivered(ctx, rec, b.cfg.timeout)
	lastAt := b.clock.now()
	s, sErr := p.sample(b.clock)
	sw, swErr := readSwitches(p.Cmd.Process.Pid)
	host1, hErr := readProc(os.Getpid())
	hostSw1, hswErr := readSwitches(os.Getpid())
	machine1, mErr := readMachine()
	sErr = errors.Join(sErr, swErr, hErr, hswErr)
	if waitErr == nil {
		f0 := <-startWaits
		if span := (lastAt - f0.at).Seconds(); f0.cpu > 0 && sErr == nil && span > 0 {
			res.Busy = (s.CPU + host1.CPU - f0.cpu).Seconds() / span
			if f0.machine.Total > 0 && mErr == nil {
				res.MachineBusy = (machine1.Busy - f0.machine.Busy).Seconds() / span
			}
		}
		// After the samples: the scrape is neither party's drain work.
		gcs, alloc, w1, gErr := p.gcStats(ctx, b.clock)
		res.GCs, res.Alloc, sErr = gcs, alloc, errors.Join(sErr, gErr)
		if w0 := f0.waits; w0.At > 0 && gErr == nil && w1.At > w0.At {
			span := (w1.At - w0.At).Seconds()
			res.WaitStream, res.WaitDelivery = (w1.Stream-w0.Stream)/span, (w1.Delivery-w0.Delivery)/span
		}
	}
	res.HostCPU = host1.CPU - host0.CPU
	res.Switches, res.HostSwitch = sw, hostSw1-hostSw0
	_, _, stopErr := p.stop(stopGrace)
	if waitErr != nil {
		return res, fmt.Errorf("runner %s: %w\nrunner output:\n%s", mode, waitErr, p.stderr)
	}
	if sErr != nil {
		return res, sErr
	}
	if stopErr != nil {
		return res, stopErr
	}
	first, last, err := rec.span()
	if err != nil {
		return res, err
	}
	res.Rate = rate(b.cfg.n, first, last)
	res.Requests = rec.requests.Load()
	res.Conns = rec.conns.Load()
	res.CPU, res.Sys, res.PeakRSS, res.Faults = s.CPU, s.Sys, s.HWM, s.MinFlt
	return res, nil
}

// steadyRun measures one mode's latency at a steady write rate (batched
// as res.Batch says).
func (b *bench) steadyRun(ctx context.Context, mode string, res *modeResult) error {
	n := int(b.cfg.steady.Seconds() * float64(b.cfg.steadyRate))
	coll := "steady_" + mode
	if res.Batch > 0 {
		coll = "steady_batched_" + mode
	}
	rec, err := startReceiver(b.clock, n, 0)
	if err != nil {
		return err
	}
	defer rec.close()
	p, err := b.startRunnerFor(triggerSpec{Mode: mode, Concurrency: b.cfg.concurrency, Database: benchDB,
		Collection: coll, URL: rec.url(), StartAt: "now", Batch: res.Batch})
	if err != nil {
		return err
	}
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		_, _, _ = p.stop(stopGrace)
		return err
	}
	acks, err := writeSteady(ctx, b.client.Database(benchDB).Collection(coll), n, b.cfg.steadyRate, b.clock)
	if err == nil {
		err = p.waitDelivered(ctx, rec, b.cfg.timeout)
	}
	s, sErr := p.sample(b.clock)
	_, _, stopErr := p.stop(stopGrace)
	if err != nil {
		return fmt.Errorf("runner %s steady: %w\nrunner output:\n%s", mode, err, p.stderr)
	}
	if sErr != nil {
		return sErr
	}
	if stopErr != nil {
		return stopErr
	}
	res.Steady = latencies(acks, rec.receipts())
	res.SteadyN = n
	res.SteadyCPU, res.SteadyPeak = s.CPU, s.HWM
	return nil
}

// bpResult is the backpressure run's outcome.
type bpResult struct {
	Backlog   int
	Delay     time.Duration
	Mode      string
	Batch     int // batch.max_events (0: unbatched)
	Samples   []procSample
	Delivered int64
}

// backpressureRun starts a runner on a large backlog with a slow endpoint
// and samples its RSS.
func (b *bench) backpressureRun(ctx context.Context) (*bpResult, error) {
	res := &bpResult{Backlog: b.cfg.bpEvents, Delay: b.cfg.bpDelay, Mode: "per_document", Batch: b.cfg.bpBatch}
	coll := "backpressure"
	startAt, _, err := b.backlog(ctx, coll, b.cfg.bpEvents)
	if err != nil {
		return nil, err
	}
	rec, err := startReceiver(b.clock, b.cfg.bpEvents, b.cfg.bpDelay)
	if err != nil {
		return nil, err
	}
	defer rec.close()
	p, err := b.startRunnerFor(triggerSpec{Mode: res.Mode, Concurrency: b.cfg.concurrency, Database: benchDB,
		Collection: coll, URL: rec.url(), StartAt: startAt, Batch: res.Batch})
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := p.failures(fctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := time.NewTimer(b.cfg.bpDuration)
	defer end.Stop()
sample:
	for {
		select {
		case <-ctx.Done():
			break sample
		case <-end.C:
			break sample
		case <-rec.done:
			break sample
		case <-p.Exited():
			return nil, fmt.Errorf("backpressure: runner exited (%v):\n%s", p.Err(), p.stderr)
		case err := <-failed:
			_, _, _ = p.stop(stopGrace)
			return nil, fmt.Errorf("backpressure: after %d of %d events: %w", rec.distinct.Load(), b.cfg.bpEvents, err)
		case <-tick.C:
			s, err := p.sample(b.clock)
			if err != nil {
				return nil, err
			}
			res.Samples = append(res.Samples, s)
		}
	}
	res.Delivered = rec.distinct.Load()
	if _, _, err := p.stop(stopGrace); err != nil {
		return nil, err
	}

	return res, ctx.Err()
}

// print writes the report as Markdown tables.
func (r *report) print(w io.Writer, cfg config) {
	fmt.Fprintf(w, "changehook end-to-end benchmark, %s\n", r.Date.Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %s\n", r.Machine)
	fmt.Fprintf(w, "load average (1, 5, 15 min) at start: %s; at end: %s — the end includes the benchmark's own load; a load at the start is other processes', which compete with it\n", r.LoadFrom, r.LoadTo)
	fmt.Fprintf(w, "devdb and the receiver run in the benchmark process; the runner is a child process (`changehook run`), whose CPU and RSS are its own (from /proc). All share the machine.\n\n")
	fmt.Fprintf(w, "Baselines (backlog of %d inserts; events/s from the first to the last event):\n\n", r.N)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| baseline\t events/s\t CPU µs/event (all parties)\t")
	fmt.Fprintln(tw, "|---\t---\t---\t")
	fmt.Fprintf(tw, "| (a) Go driver change stream, no delivery\t %.0f\t %.1f\t\n", r.StreamA, us(r.StreamACPU))
	fmt.Fprintf(tw, "| (b) Go client POST, 1 in flight\t %.0f\t\t\n", r.PostB1)
	fmt.Fprintf(tw, "| (b) Go client POST, %d in flight\t %.0f\t %.1f\t\n", cfg.concurrency, r.PostB16, us(r.PostB16CPU))
	if r.StreamASep > 0 {
		fmt.Fprintf(tw, "| (a′) = (a), the client in a child process\t %.0f\t %.1f (client process %.1f)\t\n", r.StreamASep, us(r.StreamASepCPU), us(r.StreamASepClientCPU))
		fmt.Fprintf(tw, "| (b′) = (b), 1 in flight, the client in a child process\t %.0f\t (client process %.1f)\t\n", r.PostB1Sep, us(r.PostB1SepClientCPU))
		fmt.Fprintf(tw, "| (b′) = (b), %d in flight, the client in a child process\t %.0f\t %.1f (client process %.1f)\t\n", cfg.concurrency, r.PostB16Sep, us(r.PostB16SepCPU), us(r.PostB16SepClientCPU))
	}
	if r.NodeNote == "" {
		fmt.Fprintf(tw, "| (c) Node.js %s watch() + await fetch\t %.0f\t\t\n", nodeDriverVersion, r.NodeC)
	} else {
		fmt.Fprintf(tw, "| (c) Node.js watch() + await fetch\t skipped: %s\t\t\n", r.NodeNote)
	}
	_ = tw.Flush()
	if note := readsNote(r); note != "" {
		fmt.Fprintf(w, "\n%s\n", note)
	}
	minAB := min(r.StreamA, r.PostB16)
	fmt.Fprintf(w, "\nmin(a, b) = %.0f events/s (b with %d in flight)", minAB, cfg.concurrency)
	if r.StreamASep > 0 {
		fmt.Fprintf(w, "; min(a′, b′) = %.0f events/s; (a)+(b) = %.1f µs/event, (a′)+(b′) = %.1f µs/event: the process boundary costs %.1f µs/event",
			min(r.StreamASep, r.PostB16Sep), us(r.StreamACPU+r.PostB16CPU), us(r.StreamASepCPU+r.PostB16SepCPU), us(r.StreamASepCPU+r.PostB16SepCPU-r.StreamACPU-r.PostB16CPU))
	}
	fmt.Fprintf(w, "\n\n")
	fmt.Fprintf(w, "changehook (drain: backlog of %d; latency: %d inserts/s for %v, write ack → first receipt):\n\n", r.N, cfg.steadyRate, cfg.steady)
	tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| mode\t events\t dup\t events/s\t vs (a)\t vs min(a,b)\t vs (c)\t runner CPU s\t runner µs/event\t devdb+receiver µs/event\t peak RSS MB\t p50 ms\t p99 ms\t max ms\t steady CPU s\t steady peak RSS MB\t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t---\t")
	for _, m := range r.Modes {
		vsC := "n/a"
		if r.NodeNote == "" && r.NodeC > 0 {
			vsC = fmt.Sprintf("%.2fx", m.Rate/r.NodeC)
		}
		fmt.Fprintf(tw, "| %s\t %d\t %d\t %.0f\t %.0f%%\t %.0f%%\t %s\t %.2f\t %.0f\t %.0f\t %.1f\t %s\t %s\t %s\t %s\t %s\t\n",
			m.Mode, m.Events, m.Requests-int64(m.Events), m.Rate, 100*m.Rate/r.StreamA, 100*m.Rate/minAB, vsC,
			m.CPU.Seconds(), float64(m.CPU.Microseconds())/float64(m.Events), float64(m.HostCPU.Microseconds())/float64(m.Events), mb(m.PeakRSS),
			msOrDash(m.Steady, 50), msOrDash(m.Steady, 99), msOrDash(m.Steady, 100), secOrDash(m.SteadyCPU, m.SteadyN), mbOrDash(m.SteadyPeak, m.SteadyN))
	}
	_ = tw.Flush()
	printSwitches(w, r.Modes)
	printKernel(w, r.Modes)
	printFaults(w, r.Modes)
	printGC(w, r.Modes)
	printWaits(w, r.Modes)
	printBusy(w, r.Modes, r.CPUs, 0)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Goals:")
	for _, m := range r.Modes {
		if m.Mode == "strict" && r.NodeNote == "" {
			fmt.Fprintf(w, "  strict ≥ Node script: %.0f vs %.0f events/s %s\n", m.Rate, r.NodeC, verdict(m.Rate >= r.NodeC))
		}
		if r.PostB16CPU > 0 && m.Events > 0 {
			pipe := (m.CPU + m.HostCPU) / time.Duration(m.Events)
			fmt.Fprintf(w, "  %s: the whole pipeline costs %.0f µs of CPU per event (runner %.0f + devdb/receiver %.0f) vs %.0f µs for (b); CPU-bound on an otherwise idle machine it could reach at most %.0f%% of (b)'s rate\n",
				m.Mode, us(pipe), us(m.CPU/time.Duration(m.Events)), us(m.HostCPU/time.Duration(m.Events)), us(r.PostB16CPU), 100*float64(r.PostB16CPU)/float64(pipe))
		}
		if len(m.Steady) > 0 {
			p99 := percentile(m.Steady, 99)
			fmt.Fprintf(w, "  %s p99 < 25 ms at %d/s: %s ms %s\n", m.Mode, cfg.steadyRate, ms(p99), verdict(p99 < 25*time.Millisecond))
		}
	}
	if r.Rate != nil {
		pct := 100 * r.Rate.Measured / r.Rate.Limit
		fmt.Fprintf(w, "  rate limit (webhook.rate_limit %g/s, burst 1, real time): %d events in %.2f s = %.1f/s, %.1f%% of the limit, within 10%%: %s\n",
			r.Rate.Limit, r.Rate.Events, r.Rate.Span.Seconds(), r.Rate.Measured, pct, verdict(pct >= 90 && pct <= 110))
	}
	if len(r.HTTPS) > 0 {
		plain := map[string]modeResult{}
		for _, m := range r.Modes {
			plain[m.Mode] = m
		}
		fmt.Fprintf(w, "\nHTTPS drains (same backlog of %d; receiver serves TLS with a certificate of a private CA the runner trusts through webhook.tls.ca_file; HTTP/1.1):\n\n", r.N)
		tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
		fmt.Fprintln(tw, "| mode\t scheme\t events/s\t connections opened\t in-flight limit\t runner µs/event\t devdb+receiver µs/event\t peak RSS MB\t")
		fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t---\t---\t---\t")
		for _, h := range r.HTTPS {
			limit := cfg.concurrency
			if h.Mode == "strict" {
				limit = 1
			}
			for _, m := range []modeResult{plain[h.Mode], h} {
				if m.Events == 0 {
					continue
				}
				scheme := "http"
				if m.HTTPS {
					scheme = "https"
				}
				fmt.Fprintf(tw, "| %s\t %s\t %.0f\t %d\t %d\t %.0f\t %.0f\t %.1f\t\n", m.Mode, scheme, m.Rate, m.Conns, limit,
					float64(m.CPU.Microseconds())/float64(m.Events), float64(m.HostCPU.Microseconds())/float64(m.Events), mb(m.PeakRSS))
			}
		}
		_ = tw.Flush()
		for _, h := range r.HTTPS {
			limit := int64(cfg.concurrency)
			if h.Mode == "strict" {
				limit = 1
			}
			fmt.Fprintf(w, "  %s over HTTPS: connections opened = in-flight limit (%d): %d %s\n", h.Mode, limit, h.Conns, verdict(h.Conns == limit))
		}
		fmt.Fprintln(w)
	}
	r.printBatched(w, cfg)
	r.printGoals(w)
	if r.History != nil {
		r.History.print(w)
		fmt.Fprintln(w)
	}
	if r.BPErr != "" {
		fmt.Fprintf(w, "  backpressure peak RSS < 150 MB: NOT MEASURED — the run failed: %s\n", r.BPErr)
	}
	if r.BP != nil {
		peak := int64(0)
		for _, s := range r.BP.Samples {
			peak = max(peak, s.HWM)
		}
		fmt.Fprintf(w, "  backpressure peak RSS < 150 MB: %.1f MB %s\n", mb(peak), verdict(peak < 150<<20))
		if n := len(r.BP.Samples); n >= 3 {
			early, late := maxRSS(r.BP.Samples[:n/3]), maxRSS(r.BP.Samples[n-n/3:])
			fmt.Fprintf(w, "  backpressure RSS flat: max %.1f MB in the first third of the run, %.1f MB in the last third (%+.1f MB) %s\n",
				mb(early), mb(late), mb(late-early), verdict(late-early < 10<<20))
		}
		batched := ""
		if r.BP.Batch > 0 {
			batched = fmt.Sprintf(", batch max_events %d", r.BP.Batch)
		}
		fmt.Fprintf(w, "\nBackpressure (%s%s, concurrency %d, backlog %d, endpoint %v per request): delivered %d during the run; runner RSS over time:\n\n",
			r.BP.Mode, batched, cfg.concurrency, r.BP.Backlog, r.BP.Delay, r.BP.Delivered)
		tw = tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
		fmt.Fprintln(tw, "| t s\t RSS MB\t peak MB\t CPU s\t")
		fmt.Fprintln(tw, "|---\t---\t---\t---\t")
		step := max(1, len(r.BP.Samples)/12)
		for i, s := range r.BP.Samples {
			if i%step != 0 && i != len(r.BP.Samples)-1 {
				continue
			}
			fmt.Fprintf(tw, "| %d\t %.1f\t %.1f\t %.2f\t\n", i+1, mb(s.RSS), mb(s.HWM), s.CPU.Seconds())
		}
		_ = tw.Flush()
	}
}

// loadavg returns the 1, 5 and 15 minute load averages, or "unknown".
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func maxRSS(samples []procSample) int64 {
	var m int64
	for _, s := range samples {
		m = max(m, s.RSS)
	}
	return m
}

func verdict(ok bool) string {
	if ok {
		return "— met"
	}
	return "— MISSED"
}

// msOrDash formats the p-th percentile of a steady run's latencies, or "-"
// when there was no steady run.
func msOrDash(lat []time.Duration, p float64) string {
	if len(lat) == 0 {
		return "-"
	}
	return ms(percentile(lat, p))
}

func secOrDash(d time.Duration, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}

func mbOrDash(b int64, n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", mb(b))
}

// label names the drain in the report's lines: its mode, "batched" after
// it when it was.
func (m modeResult) label() string {
	if m.Batch > 0 {
		return m.Mode + " batched"
	}
	return m.Mode
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }

// printFaults writes each drain's runner page faults: a new runner process
// per drain touches every page of its memory for the first time during the
// drain, and each first touch is a trap into the kernel. Their number
// follows the runner's peak memory, not its events, so over a short drain
// they are a start-up cost the CPU per event carries; on a virtual machine
// whose page faults are costly, a large share of it.
func printFaults(w io.Writer, modes []modeResult) {
	printDrains(w, "Runner page faults, start to last receipt (first touches of its memory, paid once by a new process)", modes,
		func(m modeResult) (string, bool) {
			return fmt.Sprintf("%d (%.2f per event)", m.Faults, float64(m.Faults)/float64(m.Events)), m.Faults > 0
		})
}

// printDrains writes head and, for each drain with events for which cell
// reports true, its label and cell, "; "-separated, on one line; nothing
// when there is no such drain.
func printDrains(w io.Writer, head string, modes []modeResult, cell func(m modeResult) (string, bool)) {
	var cells []string
	for _, m := range modes {
		if m.Events <= 0 {
			continue
		}
		if c, ok := cell(m); ok {
			cells = append(cells, m.label()+" "+c)
		}
	}
	if len(cells) > 0 {
		fmt.Fprintf(w, "%s: %s\n", head, strings.Join(cells, "; "))
	}
}

// printGC writes each drain's runner garbage collections and the bytes it
// allocated per event, both from the start of the process to the last
// receipt (its go_gc_duration_seconds_count and
// go_memstats_alloc_bytes_total): how often a drain's garbage makes the
// runner collect, a cost its CPU per event carries.
func printGC(w io.Writer, modes []modeResult) {
	printDrains(w, "Runner garbage collections, start to last receipt", modes, func(m modeResult) (string, bool) {
		return fmt.Sprintf("%d (%.0f B allocated per event)", m.GCs, float64(m.Alloc)/float64(m.Events)), m.Alloc > 0
	})
}

// printWaits writes, for each drain, the share of the time from its first
// receipt to its last that the runner's watch loop waited for the change
// stream (the server's replies did not come fast enough) and for delivery
// (its deliveries held as many events as they may): what limited the
// drain, as the runner itself sees it.
func printWaits(w io.Writer, modes []modeResult) {
	printDrains(w, "Runner's watch loop waiting, first to last receipt, for the stream · for delivery", modes, func(m modeResult) (string, bool) {
		return fmt.Sprintf("%.0f%% · %.0f%%", 100*m.WaitStream, 100*m.WaitDelivery), m.WaitStream > 0 || m.WaitDelivery > 0
	})
}

// firstReceipt is what a drain samples at its first receipt: both
// processes' CPU time (busySample; 0 if unread), the machine's (zero if
// unread) and when, and the runner's wait counters.
type firstReceipt struct {
	cpu     time.Duration
	machine machineSample
	at      time.Duration
	waits   waitStats
}

// busySample returns the CPU time the runner (pid) and this process have
// used so far; 0 when either cannot be read.
func busySample(pid int) time.Duration {
	r, err := readProc(pid)
	if err != nil {
		return 0
	}
	h, err := readProc(os.Getpid())
	if err != nil {
		return 0
	}
	return r.CPU + h.CPU
}

// printBusy writes, for each drain whose busy CPUs were measured, how many
// of the machine's cpus the runner and devdb with the receiver kept busy
// from its first receipt to its last, how many the whole machine had busy
// (softirqs, steal and other processes too), and the rate the drain would
// reach at the same use per event with all of them busy, against (a) when
// streamA > 0. A drain close to all is limited by the CPU spent per event;
// one well below it waits on something serial.
func printBusy(w io.Writer, modes []modeResult, cpus int, streamA float64) {
	printDrains(w, fmt.Sprintf("CPUs busy, first to last receipt: runner, devdb and receiver (the whole machine), and the rate with all %d busy", cpus), modes, func(m modeResult) (string, bool) {
		if m.Busy <= 0 || m.Rate <= 0 {
			return "", false
		}
		full := m.fullRate(cpus)
		c := fmt.Sprintf("%.2f", m.Busy)
		if m.MachineBusy > 0 {
			c += fmt.Sprintf(" (%.2f)", m.MachineBusy)
		}
		c += fmt.Sprintf(" of %d, %.0f/s", cpus, full)
		if streamA > 0 {
			c += fmt.Sprintf(" (%.0f%% of (a))", 100*full/streamA)
		}
		return c, true
	})
}

// fullRate is the rate the drain would reach at its use of the machine per
// event with all cpus busy: its rate scaled by cpus over the machine's busy
// CPUs when measured (what the drain's processes are not charged with —
// softirqs, steal — is then counted), else over Busy; Busy must be > 0.
func (m modeResult) fullRate(cpus int) float64 {
	return m.Rate * float64(cpus) / max(m.Busy, m.MachineBusy)
}

// printKernel writes each drain's runner CPU per event split into the part
// spent in the kernel and the part in user space. The kernel's part carries
// the system calls, the page faults and the cost of each sleep and wake-up
// of a thread: where one request in flight (strict) sleeps and wakes the
// runner per event and sixteen rarely do, the difference between the modes
// shows there. The user-space part is the runner's own code, which also runs
// slower after each sleep (on caches and TLB the wait left cold).
func printKernel(w io.Writer, modes []modeResult) {
	printDrains(w, "Runner CPU µs per event, in the kernel · in user space", modes, func(m modeResult) (string, bool) {
		n := time.Duration(m.Events)
		return fmt.Sprintf("%.1f · %.1f", us(m.Sys/n), us((m.CPU-m.Sys)/n)), m.CPU > 0
	})
}

// printSwitches writes each drain's context switches per event, of the
// runner and of this process (devdb and the receiver): every thread's
// voluntary and involuntary switches. A delivery that waits for its
// response puts a thread to sleep and wakes it; one in flight (strict) does
// that for every event, on both sides.
func printSwitches(w io.Writer, modes []modeResult) {
	var cells []string
	for _, m := range modes {
		if m.Events > 0 && m.Switches > 0 {
			cells = append(cells, fmt.Sprintf("%s runner %.2f · devdb+receiver %.2f", m.Mode,
				float64(m.Switches)/float64(m.Events), float64(m.HostSwitch)/float64(m.Events)))
		}
	}
	if len(cells) > 0 {
		fmt.Fprintf(w, "\nContext switches per event (every thread, voluntary and involuntary): %s\n", strings.Join(cells, "; "))
	}
}
