package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/changehook/changehook/internal/childproc"
	"github.com/changehook/changehook/internal/cli"
)

// inProcessRunner runs `changehook run` inside the benchmark process (for
// -cpuprofile: a child process cannot be profiled from here). Its CPU time
// is then mixed with devdb's and the receiver's, so the drain phase reports
// process-wide numbers.
type inProcessRunner struct {
	cancel context.CancelFunc
	done   chan int
	out    *childproc.TailBuffer
}

func startInProcessRunner(cfgPath, adminAddr string) *inProcessRunner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &inProcessRunner{cancel: cancel, done: make(chan int, 1), out: &childproc.TailBuffer{Max: 64 << 10}}
	go func() {
		r.done <- cli.Run(ctx, []string{"run", "-c", cfgPath, "--admin-addr", adminAddr, "--log-level", "warn"},
			cli.Env{Stdout: r.out, Stderr: r.out, Version: "bench"})
	}()
	return r
}

// stop cancels the runner and waits up to grace for it to return.
func (r *inProcessRunner) stop(grace time.Duration) error {
	r.cancel()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case code := <-r.done:
		if code != cli.ExitOK {
			return fmt.Errorf("in-process runner exited %d:\n%s", code, r.out)
		}
		return nil
	case <-t.C:
		return fmt.Errorf("in-process runner: no return within %v", grace)
	}
}

// profileDrains runs the drain phase of every mode with the runner in this
// process under the CPU profiler and writes the profile to path; the drains
// are batched with -profile-batch (strict too, when among -modes).
func (b *bench) profileDrains(ctx context.Context, path string) error {
	// Every backlog is written before the profiler starts, so that the
	// profile holds the drains only.
	colls := make([]string, len(b.cfg.modes))
	starts := make([]string, len(b.cfg.modes))
	for i, m := range b.cfg.modes {
		colls[i] = fmt.Sprintf("profile_%d_%s", i, m)
		var err error
		if starts[i], _, err = b.backlog(ctx, colls[i], b.cfg.n); err != nil {
			return err
		}
	}
	if b.cfg.memprofile != "" {
		if err := writeAllocs(b.cfg.memprofile + ".base"); err != nil {
			return err
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer func() { _ = f.Close() }()
	if err := pprof.StartCPUProfile(f); err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer pprof.StopCPUProfile()
	for i, m := range b.cfg.modes {
		coll, startAt := colls[i], starts[i]
		rec, err := startReceiver(b.clock, b.cfg.n, 0)
		if err != nil {
			return err
		}
		path, err := writeRunnerConfig(b.dir, b.db.URI(), stateDB, triggerSpec{Mode: m, Concurrency: b.cfg.concurrency,
			Database: benchDB, Collection: coll, URL: rec.url(), StartAt: startAt, Batch: b.cfg.profileBatch})
		if err != nil {
			rec.close()
			return err
		}
		admin, err := childproc.FreeAddr()
		if err != nil {
			rec.close()
			return err
		}
		cpu0, err := readProc(os.Getpid())
		if err != nil {
			rec.close()
			return err
		}
		r := startInProcessRunner(path, admin)
		waitErr := rec.wait(ctx, b.cfg.timeout)
		cpu1, cpuErr := readProc(os.Getpid())
		stopErr := r.stop(stopGrace)
		rec.close()
		if waitErr != nil {
			return fmt.Errorf("profile %s: %w\n%s", m, waitErr, r.out)
		}
		if stopErr != nil {
			return stopErr
		}
		if cpuErr != nil {
			return cpuErr
		}
		first, last, err := rec.span()
		if err != nil {
			return err
		}
		b.logf("profile %s (batch %d): %.0f events/s (runner in process), %d requests, %.1f µs CPU/event (whole process, runner start-up included)",
			m, b.cfg.profileBatch, rate(b.cfg.n, first, last), rec.requests.Load(), us((cpu1.CPU-cpu0.CPU)/time.Duration(b.cfg.n)))
	}
	if b.cfg.memprofile != "" {
		return writeAllocs(b.cfg.memprofile)
	}
	return nil
}

// writeAllocs writes the process's allocation profile (every allocation
// sampled since the start) to path.
func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("allocation profile: %w", err)
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		_ = f.Close()
		return fmt.Errorf("allocation profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("allocation profile: %w", err)
	}
	return nil
}
