// Command changehook-bench is changehook's end-to-end benchmark.
//
// It starts devdb (in this process), a local webhook receiver (in this
// process) and the runner as a child process (`changehook run`, built from
// this module), so that the runner's CPU time and peak RSS are its own and
// read from /proc and its rusage. For each ordering mode it measures:
//
//   - drain throughput: the runner starts on a backlog of -n inserts
//     (start_at before the writes) and delivers them; events/s from the first
//     to the last receipt at the receiver;
//   - latency at a steady rate: -steady-rate inserts/s for -steady, one
//     insertOne each; write acknowledgement → first receipt (p50, p99, max).
//
// With -batch N (default 100), per_document and none (those of -modes) are
// drained again with batch: {max_events: N}, their rate compared with (a):
// batched, the stream read rate is the limit. For every drain it also
// reports how many CPUs the runner, devdb and the receiver kept busy
// together and the rate at the same CPU per event with every CPU busy:
// where that is below the goal, only less CPU per event reaches it.
//
// Baselines in the same run: (a) one Go driver change stream reading a
// backlog of the same size with no delivery (three backlogs, each written
// just before its read, as a drain's is; the median read); (b) a Go client
// POSTing the same number of event-shaped bodies to the same receiver (1
// and 16 in flight); (a′) and (b′), the same with the client in a child
// process (this binary re-executed), the topology of the runner's drains;
// (c) a Node.js script on the official mongodb driver that watch()es and
// POSTs each change with fetch, awaiting each. Then the history phase (-history):
// drains with the delivery history off, on, and on with every history insert
// blocked by a devdb fail point, rounds rotated, medians compared (the
// history must cost < 5% of events/s; -history-only runs just this).
// Finally a backpressure run: a backlog of -bp-events, an endpoint taking
// -bp-delay per request, and the runner's RSS sampled over time.
//
// Usage (from the module root):
//
//	go run ./cmd/changehook-bench [-n 20000] [-modes strict,per_document,none] [-node=false]
//
// With -cpuprofile FILE it instead drains each mode with the runner inside
// this process and writes a CPU profile of the whole process (devdb,
// receiver and runner) for `go tool pprof`; -memprofile FILE adds the
// allocation profile of those drains.
//
// With -triggers 1,50,200 it runs only the many-triggers benchmark
// (many.go): for each count, devdb and the runner as two child processes of
// the changehook binary, N idle triggers on N collections; the idle CPU of
// each over -idle-window, checkpoint and lease writes per second to the
// state database, and write-to-delivery latency with writes round robin
// over the collections.
//
// Results and their interpretation are in BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/changehook/changehook/internal/hostinfo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && os.Args[1] == clientChildArg {
		err = runClientChild(ctx, os.Args[2:], os.Stdin, os.Stdout)
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "changehook-bench:", err)
		os.Exit(1)
	}
}

// errUsage reports a bad command line (already explained on stderr).
var errUsage = errors.New("usage")

// config is the parsed command line.
type config struct {
	n            int
	modes        []string
	concurrency  int
	node         bool
	sameTopology bool // baselines (a′) and (b′)
	steady       time.Duration
	steadyRate   int
	backpressure bool
	bpEvents     int
	bpDelay      time.Duration
	bpDuration   time.Duration
	bin          string
	timeout      time.Duration
	nodeCache    string
	cpuprofile   string
	profileBatch int    // batch.max_events of the -cpuprofile drains (0: unbatched)
	memprofile   string // with -cpuprofile: allocation profile of the drains
	https        bool
	rateLimit    float64
	rateDuration time.Duration
	batch        int // batch.max_events of the batched drains (0: none)
	bpBatch      int // batch.max_events of the backpressure run (0: unbatched)

	history       bool
	historyOnly   bool
	historyRounds int
	// historyVariants are the history phase's variants (-history-variants;
	// default all of them).
	historyVariants []historyVariant
	// perfCtl and perfAck are the control and acknowledgement FIFOs of a
	// `perf record -D -1 --control fifo:CTL,ACK` running this benchmark
	// (-perf-ctl): the history phase enables perf's events for each
	// counted drain only (runner start to last receipt), so that a profile
	// holds the drains and not the backlog writes between them.
	perfCtl, perfAck string
	// runs is how many times the benchmark runs (its summary reports
	// the medians).
	runs int

	// The many-triggers benchmark (many.go); it runs instead of the others
	// when triggers is set.
	triggers   []int
	idleSettle time.Duration
	idleWindow time.Duration
	manyWrites int
	manyRate   int
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	fs := flag.NewFlagSet("changehook-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.n, "n", 20000, "documents written per drain run")
	modes := fs.String("modes", "strict,per_document,none", "ordering modes to run, comma-separated")
	fs.IntVar(&c.concurrency, "concurrency", 16, "concurrency of per_document and none")
	fs.BoolVar(&c.sameTopology, "same-topology", true, "also run baselines (a′) and (b′): (a) and (b) with the client in a child process, as the runner is")
	fs.BoolVar(&c.node, "node", true, "run baseline (c), the Node.js script (needs node and npm; installs the mongodb package once)")
	fs.DurationVar(&c.steady, "steady", 10*time.Second, "length of each steady-rate latency run (0 skips them)")
	fs.IntVar(&c.steadyRate, "steady-rate", 1000, "inserts per second of the steady-rate runs")
	fs.BoolVar(&c.backpressure, "backpressure", true, "run the backpressure run")
	fs.IntVar(&c.bpEvents, "bp-events", 100000, "backlog of the backpressure run")
	fs.DurationVar(&c.bpDelay, "bp-delay", 50*time.Millisecond, "time the endpoint takes per request in the backpressure run")
	fs.DurationVar(&c.bpDuration, "bp-duration", 60*time.Second, "how long the backpressure run samples RSS")
	fs.StringVar(&c.bin, "changehook", "", "changehook binary to run (default: build ./cmd/changehook of this module)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "bound on each phase")
	fs.StringVar(&c.nodeCache, "node-cache", filepath.Join(cache, "changehook-bench", "node"), "where the Node baseline's npm packages are installed")
	fs.BoolVar(&c.https, "https", true, "after each mode's drain, drain the same backlog to an HTTPS receiver (self-signed CA passed through webhook.tls.ca_file) and count connections")
	fs.Float64Var(&c.rateLimit, "rate-limit", 200, "real-time rate-limit check: a trigger with webhook.rate_limit {per_second: this, burst: 1} drains a backlog; 0 skips it")
	fs.DurationVar(&c.rateDuration, "rate-duration", 10*time.Second, "how long the rate-limit check's backlog takes at the limit")
	fs.IntVar(&c.batch, "batch", 100, "after the modes, drain per_document and none again with batch.max_events this (0 skips); with -steady, their latency too")
	fs.IntVar(&c.bpBatch, "bp-batch", 0, "batch.max_events of the backpressure run's trigger (0: unbatched); -bp-delay is then per request of up to this many events")
	fs.BoolVar(&c.history, "history", true, "run the history phase: drains with the delivery history off, on, and on with a slowed writer")
	fs.BoolVar(&c.historyOnly, "history-only", false, "run only the history phase")
	fs.IntVar(&c.historyRounds, "history-rounds", 3, "rounds of the history phase (each drains every variant once)")
	fs.StringVar(&c.perfCtl, "perf-ctl", "", "history phase: `fifo` to write perf record's enable/disable commands to around each counted drain (perf record -D -1 --control fifo:CTL,ACK; needs -perf-ack)")
	fs.StringVar(&c.perfAck, "perf-ack", "", "history phase: perf record's acknowledgement `fifo` (see -perf-ctl)")
	variants := fs.String("history-variants", "off,on,slow", "history variants to drain, comma-separated (off, on, slow): one alone keeps the phase on it, e.g. under perf record")
	fs.IntVar(&c.runs, "runs", 1, "run the whole benchmark this many times, print each run, then the medians of every figure and the goals' verdicts on the medians")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "instead of the benchmark: drain each mode with the runner inside this process and write a CPU profile of it all to `file`")
	fs.IntVar(&c.profileBatch, "profile-batch", 0, "with -cpuprofile: batch.max_events of the profiled drains (0: unbatched)")
	fs.StringVar(&c.memprofile, "memprofile", "", "with -cpuprofile: also write the allocation profile after the drains to `file`, and the one before them to file.base (go tool pprof -sample_index=alloc_space -base file.base file)")
	triggerCounts := fs.String("triggers", "", "run only the many-triggers benchmark, once per `count` in this comma-separated list (e.g. 1,50,200): idle CPU of runner and devdb, checkpoint writes/s, write-to-delivery latency")
	fs.DurationVar(&c.idleSettle, "idle-settle", 10*time.Second, "many-triggers: wait after the runner is ready before the idle window")
	fs.DurationVar(&c.idleWindow, "idle-window", 60*time.Second, "many-triggers: length of the idle window (no writes) over which CPU and checkpoint writes are measured")
	fs.IntVar(&c.manyWrites, "many-writes", 600, "many-triggers: inserts of the latency run, round robin over the trigger collections")
	fs.IntVar(&c.manyRate, "many-rate", 50, "many-triggers: inserts per second of the latency run")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./cmd/changehook-bench [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "changehook-bench: unexpected argument %q\n", fs.Arg(0))
		return c, errUsage
	}
	for _, m := range strings.Split(*modes, ",") {
		switch m = strings.TrimSpace(m); m {
		case "strict", "per_document", "none":
			c.modes = append(c.modes, m)
		case "":
		default:
			fmt.Fprintf(stderr, "changehook-bench: unknown mode %q (strict, per_document, none)\n", m)
			return c, errUsage
		}
	}
	for _, name := range strings.Split(*variants, ",") {
		name = strings.TrimSpace(name)
		i := slices.IndexFunc(historyVariants, func(v historyVariant) bool { return v.Name == name })
		switch {
		case name == "":
		case i < 0:
			fmt.Fprintf(stderr, "changehook-bench: unknown history variant %q (off, on, slow)\n", name)
			return c, errUsage
		case !slices.ContainsFunc(c.historyVariants, func(v historyVariant) bool { return v.Name == name }):
			c.historyVariants = append(c.historyVariants, historyVariants[i])
		}
	}
	if (c.perfCtl == "") != (c.perfAck == "") {
		fmt.Fprintln(stderr, "changehook-bench: -perf-ctl and -perf-ack go together")
		return c, errUsage
	}
	if c.memprofile != "" && c.cpuprofile == "" {
		fmt.Fprintln(stderr, "changehook-bench: -memprofile needs -cpuprofile (it profiles the in-process drains)")
		return c, errUsage
	}
	if len(c.historyVariants) == 0 {
		fmt.Fprintln(stderr, "changehook-bench: -history-variants names none")
		return c, errUsage
	}
	if *triggerCounts != "" {
		if c.triggers, err = parseTriggerCounts(*triggerCounts); err != nil {
			fmt.Fprintf(stderr, "changehook-bench: -triggers: %v\n", err)
			return c, errUsage
		}
	}
	switch {
	case c.manyWrites < 1, c.manyRate < 1, c.idleWindow <= 0, c.idleSettle < 0:
		fmt.Fprintln(stderr, "changehook-bench: -many-writes, -many-rate and -idle-window must be positive, -idle-settle not negative")
		return c, errUsage
	case c.n < 2:
		fmt.Fprintln(stderr, "changehook-bench: -n must be at least 2")
		return c, errUsage
	case c.rateLimit < 0 || c.rateLimit > 1e5 || c.rateDuration <= 0:
		fmt.Fprintln(stderr, "changehook-bench: -rate-limit must be between 0 and 100000 and -rate-duration positive")
		return c, errUsage
	case c.batch != 0 && (c.batch < 2 || c.batch > 1000), c.bpBatch != 0 && (c.bpBatch < 2 || c.bpBatch > 1000),
		c.profileBatch != 0 && (c.profileBatch < 2 || c.profileBatch > 1000):
		fmt.Fprintln(stderr, "changehook-bench: -batch, -bp-batch and -profile-batch must be 0 or between 2 and 1000")
		return c, errUsage
	case c.steadyRate < 1, c.concurrency < 1, c.bpEvents < 1, c.historyRounds < 1, c.runs < 1:
		fmt.Fprintln(stderr, "changehook-bench: -steady-rate, -concurrency, -bp-events, -history-rounds and -runs must be positive")
		return c, errUsage
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "changehook-bench-")
	if err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if cfg.bin == "" && cfg.cpuprofile == "" {
		fmt.Fprintln(stderr, "building ./cmd/changehook ...")
		if cfg.bin, err = buildChangehook(ctx, dir); err != nil {
			return err
		}
	}
	if len(cfg.triggers) > 0 {
		rs, err := cfg.manyAll(ctx, dir, stderr)
		if len(rs) > 0 {
			printMany(stdout, rs, cfg)
		}
		return err
	}
	b, err := newBench(ctx, cfg, dir, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	if cfg.cpuprofile != "" {
		return b.profileDrains(ctx, cfg.cpuprofile)
	}
	if cfg.historyOnly {
		return b.runHistoryOnly(ctx, stdout)
	}
	var reps []*report
	for i := range cfg.runs {
		if cfg.runs > 1 {
			b.logf("run %d of %d", i+1, cfg.runs)
		}
		if i > 0 {
			// Every run writes the same collections from scratch.
			if err := b.dropBenchDatabases(ctx); err != nil {
				return err
			}
		}
		rep, err := b.all(ctx)
		if err != nil {
			return err
		}
		if cfg.runs > 1 {
			fmt.Fprintf(stdout, "\n## Run %d of %d\n\n", i+1, cfg.runs)
		}
		rep.print(stdout, cfg)
		reps = append(reps, rep)
	}
	printSummary(stdout, reps)
	return nil
}

// machine describes where the benchmark ran, with what its CPUs do when
// idle and the kernel's page-table isolation where the host says (see
// hostinfo.IdlePolicy and hostinfo.Isolation): what a wake-up, a system
// call and a page fault cost there.
func machine() string {
	idle, _ := hostinfo.IdlePolicy()
	return machineIdle(idle)
}

// machineIdle is machine with the host's idle policy idle already read.
func machineIdle(idle string) string {
	m := fmt.Sprintf("%d CPUs (%s), %s, %s/%s", runtime.NumCPU(), hostinfo.CPUModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if hostinfo.CPUFlag("hypervisor") {
		m += "; a virtual machine"
	}
	if idle != "" {
		m += "; idle CPUs: " + idle
	}
	if iso := hostinfo.Isolation(); iso != "" {
		m += "; " + iso
	}
	return m
}
