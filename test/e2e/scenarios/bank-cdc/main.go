// Command bank-cdc is change data capture on a bank's accounts: triggers
// for overdrawn openings, deposits, closures of overdrawn accounts and
// replacements, then a resume demonstration. A writer keeps incrementing
// resumeCounter on every account holding over 1,000 while the changehook
// runner — a separate `changehook run` process — is killed with SIGKILL and
// restarted several times; a verifier then proves that every increment
// reached the receiver, with no gap, and reports the duplicates that
// at-least-once delivery allows.
//
//	go run ./test/e2e/scenarios/bank-cdc [-customers 100] [-rounds 150] [-interval 20ms] [-kills 5] [-v]
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/test/e2e/scenarios/internal/scenarioutil"
)

//go:embed triggers.yaml
var triggersYAML []byte

// resumeTrigger is the trigger of the resume demonstration.
const resumeTrigger = "resume_counter"

func main() {
	if os.Getenv(roleEnv) == "runner" {
		os.Exit(runnerMain(os.Args[1:]))
	}
	opts := config{Out: os.Stdout, RunnerOutput: io.Discard}
	flag.IntVar(&opts.Customers, "customers", 100, "number of generated customers")
	flag.IntVar(&opts.Rounds, "rounds", 150, "resumeCounter rounds (each increments every account over 1,000)")
	flag.DurationVar(&opts.Interval, "interval", 20*time.Millisecond, "time between rounds")
	flag.IntVar(&opts.Kills, "kills", 5, "how many times the runner is killed with SIGKILL and restarted")
	flag.Uint64Var(&opts.Seed, "seed", 1, "seed of the generated customers")
	verbose := flag.Bool("v", false, "show the runner processes' logs")
	flag.Parse()
	if *verbose {
		opts.RunnerOutput, opts.RunnerLogLevel = os.Stderr, "info"
	}
	os.Exit(scenarioutil.Main(func(ctx context.Context) error {
		_, err := run(ctx, opts)
		return err
	}))
}

// config configures one run of the scenario.
type config struct {
	Customers int
	Rounds    int
	Interval  time.Duration
	Kills     int
	Seed      uint64
	// Out receives the narrative; RunnerOutput the runner processes' logs.
	Out, RunnerOutput io.Writer
	// RunnerLogLevel is the runner processes' --log-level (default warn).
	RunnerLogLevel string
	// Timeout bounds each wait for deliveries (default 60s).
	Timeout time.Duration
}

// result is what a run observed.
type result struct {
	Plan         bankPlan
	Bank         map[string][]scenarioutil.Delivery // bank trigger → distinct deliveries
	Kills        []killPoint
	Report       report
	RunnerExited error // the last runner's exit after SIGTERM (nil: status 0)
}

// killPoint records one SIGKILL.
type killPoint struct {
	PID       int
	Round     int // rounds written when the runner was killed
	Delivered int // resume_counter deliveries received by then
}

func run(ctx context.Context, opts config) (res result, err error) {
	opts = opts.withDefaults()
	db, err := scenarioutil.StartDB(ctx, devdb.Options{})
	if err != nil {
		return res, err
	}
	defer scenarioutil.CloseOnExit(ctx, db, &err)

	// `changehook run` reads its configuration from a file.
	dir, err := os.MkdirTemp("", "bank-cdc-")
	if err != nil {
		return res, fmt.Errorf("create a directory for triggers.yaml: %w", err)
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "triggers.yaml")
	if err := os.WriteFile(cfgPath, triggersYAML, 0o600); err != nil {
		return res, fmt.Errorf("write triggers.yaml: %w", err)
	}

	sc := &scenario{opts: opts, db: db, counts: newTally(), bank: bank{coll: db.Client.Database(database).Collection(collection)}}
	var vars map[string]string // the runner process's environment too
	_, sc.recv, err = scenarioutil.StartConfigured("triggers.yaml", triggersYAML, db.URI(), func(base string) map[string]string {
		vars = map[string]string{"MONGODB_URI": db.URI(), "BANK_HOOK_URL": base}
		return vars
	}, scenarioutil.ReceiverOptions{
		Handler: sc.handle,
		// Stamp each connection with the runner generation current when it
		// was accepted: a killed runner's last request can still be read
		// after its successor started, and must count as the old one's.
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, genKey{}, int(sc.gen.Load()))
		},
	})
	if err != nil {
		return res, err
	}
	defer scenarioutil.CloseOnExit(ctx, sc.recv, &err)

	// The runner's admin server tells when its streams are open (/readyz).
	adminAddr, err := scenarioutil.FreeAddr()
	if err != nil {
		return res, err
	}
	sc.args = []string{"run", "-c", cfgPath, "--admin-addr", adminAddr, "--log-level", opts.RunnerLogLevel}
	for k, v := range vars {
		sc.env = append(sc.env, k+"="+v)
	}
	if err := sc.startRunner(); err != nil {
		return res, err
	}
	defer func() {
		if sc.proc != nil {
			sc.proc.kill()
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	if err := scenarioutil.WaitReadyz(wctx, "http://"+adminAddr, sc.proc.done); err != nil {
		return res, err
	}
	fmt.Fprintf(opts.Out, "devdb %s; receiver %s; runner process %d (changehook run -c triggers.yaml) ready\n\n",
		db.URI(), sc.recv.URL(), sc.proc.pid())

	if err := sc.bankPhase(wctx, &res); err != nil {
		return res, err
	}
	if err := sc.resumePhase(wctx, &res); err != nil {
		return res, err
	}
	fmt.Fprintf(opts.Out, "\nevery increment arrived despite %d SIGKILLs; the last runner stopped gracefully on SIGTERM.\n", len(res.Kills))
	return res, nil
}

func (c config) withDefaults() config {
	c.Out = scenarioutil.SyncWriter(c.Out)
	if c.RunnerOutput == nil {
		c.RunnerOutput = io.Discard
	}
	if c.RunnerLogLevel == "" {
		c.RunnerLogLevel = "warn"
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	return c
}

// scenario is the running scenario: devdb, the receiver, the bank and the
// current runner process.
type scenario struct {
	opts   config
	db     *scenarioutil.DB
	recv   *scenarioutil.Receiver
	counts *tally
	bank   bank
	args   []string // the runner process's command line
	env    []string // and its extra environment
	proc   *runnerProc
	// gen numbers the runner processes; a process is started only after
	// the previous one is dead, so every delivery belongs to one generation.
	gen atomic.Int32
}

// genKey is the request-context key of the runner generation that opened the
// request's connection.
type genKey struct{}

// handle is the receiver's handler: it tallies resume_counter deliveries
// (every delivery is also recorded in the receiver's log).
func (sc *scenario) handle(ctx context.Context, d scenarioutil.Delivery) error {
	if d.Trigger != resumeTrigger {
		return nil
	}
	var m struct {
		Account       string `json:"account"`
		ResumeCounter int32  `json:"resumeCounter"`
	}
	if err := json.Unmarshal(d.Body, &m); err != nil || m.Account == "" {
		return &scenarioutil.HTTPError{Status: 400, Message: "not a resume_counter payload"}
	}
	gen, ok := ctx.Value(genKey{}).(int)
	if !ok {
		gen = int(sc.gen.Load())
	}
	sc.counts.add(m.Account, m.ResumeCounter, gen)
	return nil
}

// startRunner starts a runner process (the previous one must be dead).
func (sc *scenario) startRunner() error {
	sc.gen.Add(1)
	p, err := startRunnerProc(sc.args, sc.env, sc.opts.RunnerOutput)
	if err != nil {
		return err
	}
	sc.proc = p
	return nil
}

// bankPhase opens, credits, rewrites and closes accounts and waits until
// each bank trigger has delivered what it must.
func (sc *scenario) bankPhase(ctx context.Context, res *result) error {
	if err := sc.bank.setup(ctx); err != nil {
		return err
	}
	res.Plan = newBankPlan(sc.opts.Customers, sc.opts.Seed)
	if err := sc.bank.apply(ctx, res.Plan); err != nil {
		return err
	}
	fmt.Fprintf(sc.opts.Out, "opened %d accounts, %d deposits, %d KYC replacements, closed %d accounts\n",
		len(res.Plan.Accounts), len(res.Plan.Deposits), len(res.Plan.Replaced), len(res.Plan.Closed))
	want := res.Plan.expected()
	res.Bank = map[string][]scenarioutil.Delivery{}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		got, err := sc.recv.Deliveries().Wait(ctx, func(ds []scenarioutil.Delivery) bool {
			return len(distinct(ds, name)) >= want[name]
		})
		res.Bank[name] = distinct(got, name)
		if err != nil {
			return fmt.Errorf("wait for %d %s deliveries (got %d): %w", want[name], name, len(res.Bank[name]), err)
		}
		fmt.Fprintf(sc.opts.Out, "  %-18s %3d deliveries, e.g. %s\n", name, len(res.Bank[name]), abbreviate(res.Bank[name][0].Body))
	}
	return nil
}

// resumePhase runs the resume writer while killing and restarting the
// runner, then waits for every increment, stops the runner gracefully and
// verifies.
func (sc *scenario) resumePhase(ctx context.Context, res *result) error {
	opts := sc.opts
	fmt.Fprintf(opts.Out, "\nresume demonstration: %d rounds of resumeCounter += 1 on accounts over %d, every %s; the runner is killed %d times\n",
		opts.Rounds, resumeThreshold, opts.Interval, opts.Kills)
	var (
		rounds         scenarioutil.Log[int]
		writerErr      error
		writerFinished = make(chan struct{})
	)
	wctx, stopWriter := context.WithCancel(ctx)
	defer func() {
		stopWriter()
		<-writerFinished
	}()
	go func() {
		defer close(writerFinished)
		writerErr = writeRounds(wctx, sc.bank, opts.Rounds, opts.Interval, &rounds)
	}()

	for k := 1; k <= opts.Kills; k++ {
		// Kill once the writer is past its k-th share of the rounds and this
		// runner has delivered something (or the writer is done).
		seen := sc.counts.deliveries()
		target := k * opts.Rounds / (opts.Kills + 1)
		if _, err := rounds.WaitLen(ctx, target); err != nil {
			return fmt.Errorf("wait for writer round %d: %w", target, err)
		}
		if err := waitProgress(ctx, sc.recv, sc.counts, seen, sc.proc, writerFinished); err != nil {
			return err
		}
		kp := killPoint{PID: sc.proc.pid(), Round: rounds.Len(), Delivered: sc.counts.deliveries()}
		sc.proc.kill()
		res.Kills = append(res.Kills, kp)
		if err := sc.startRunner(); err != nil {
			return err
		}
		fmt.Fprintf(opts.Out, "  SIGKILL runner %d at round %d/%d (%d deliveries so far); restarted as %d\n",
			kp.PID, kp.Round, opts.Rounds, kp.Delivered, sc.proc.pid())
	}
	select {
	case <-writerFinished:
		if writerErr != nil {
			return writerErr
		}
	case <-ctx.Done():
		return fmt.Errorf("wait for the writer: %w", ctx.Err())
	}

	final, err := sc.bank.counters(ctx)
	if err != nil {
		return err
	}
	total := 0
	for _, c := range final {
		total += int(c)
	}
	// Duplicates count as deliveries, so reaching total is necessary but not
	// sufficient; the full check runs only from then on.
	if _, err := sc.recv.Deliveries().Wait(ctx, func([]scenarioutil.Delivery) bool {
		return sc.counts.deliveries() >= total && sc.counts.complete(final)
	}); err != nil {
		res.Report = sc.counts.verify(final)
		return fmt.Errorf("wait for every increment:\n%s\n%w", res.Report, err)
	}
	res.RunnerExited = sc.proc.stop(ctx)
	sc.proc = nil
	res.Report = sc.counts.verify(final)
	fmt.Fprintf(opts.Out, "\nverifier (receiver vs. final resumeCounter of each account):\n%s\n", indent(res.Report.String()))
	switch {
	case !res.Report.OK():
		return errors.New("verify: increments missing, unexpected or out of order (see the report)")
	case res.RunnerExited != nil:
		return fmt.Errorf("the last runner did not exit cleanly on SIGTERM: %w", res.RunnerExited)
	}
	return nil
}

// writeRounds runs the resume writer: rounds increments, one every
// interval, each recorded in done.
func writeRounds(ctx context.Context, b bank, rounds int, interval time.Duration, done *scenarioutil.Log[int]) error {
	t := time.NewTicker(max(interval, time.Millisecond))
	defer t.Stop()
	for r := 1; r <= rounds; r++ {
		if _, err := b.incrementRound(ctx); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		done.Append(r)
		if interval > 0 && r < rounds {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	return nil
}

// waitProgress waits until the receiver got more resume_counter deliveries
// than seen, or the writer has finished (then nothing new may come). It
// fails if the runner process ends on its own.
func waitProgress(ctx context.Context, recv *scenarioutil.Receiver, counts *tally, seen int, proc *runnerProc, writerFinished <-chan struct{}) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-writerFinished:
		case <-proc.done:
		case <-wctx.Done():
		}
		cancel()
	}()
	_, err := recv.Deliveries().Wait(wctx, func([]scenarioutil.Delivery) bool { return counts.deliveries() > seen })
	if ended, perr := proc.exited(); ended {
		return fmt.Errorf("runner %d exited on its own: %v", proc.pid(), perr)
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("wait for the runner %d to deliver: %w", proc.pid(), err)
	}
	return nil
}

// distinct returns the deliveries of trigger, one per webhook-id.
func distinct(ds []scenarioutil.Delivery, trigger string) []scenarioutil.Delivery {
	seen := map[string]bool{}
	var out []scenarioutil.Delivery
	for _, d := range ds {
		if d.Trigger == trigger && !seen[d.ID] {
			seen[d.ID] = true
			out = append(out, d)
		}
	}
	return out
}

func abbreviate(b []byte) string {
	if len(b) > 110 {
		return string(b[:110]) + "…"
	}
	return string(b)
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
