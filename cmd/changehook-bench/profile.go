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
// process under the CPU profiler and writes the profile to path.
func (b *bench) profileDrains(ctx context.Context, path string) error {
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
		coll := fmt.Sprintf("profile_%d_%s", i, m)
		startAt, _ := backlogStart()
		if err := writeBacklog(ctx, b.client.Database(benchDB).Collection(coll), b.cfg.n); err != nil {
			return err
		}
		rec, err := startReceiver(b.clock, b.cfg.n, 0)
		if err != nil {
			return err
		}
		path, err := writeRunnerConfig(b.dir, b.db.URI(), stateDB, triggerSpec{Mode: m, Concurrency: b.cfg.concurrency,
			Database: benchDB, Collection: coll, URL: rec.url(), StartAt: startAt})
		if err != nil {
			rec.close()
			return err
		}
		admin, err := childproc.FreeAddr()
		if err != nil {
			rec.close()
			return err
		}
		r := startInProcessRunner(path, admin)
		waitErr := rec.wait(ctx, b.cfg.timeout)
		stopErr := r.stop(stopGrace)
		rec.close()
		if waitErr != nil {
			return fmt.Errorf("profile %s: %w\n%s", m, waitErr, r.out)
		}
		if stopErr != nil {
			return stopErr
		}
		first, last, err := rec.span()
		if err != nil {
			return err
		}
		b.logf("profile %s: %.0f events/s (runner in process)", m, rate(b.cfg.n, first, last))
	}
	return nil
}
