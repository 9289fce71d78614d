package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ExitInterrupted is the exit code after a second SIGINT/SIGTERM ended the
// process at once.
const ExitInterrupted = 130

// DuplicateSignalWindow is how soon after the first SIGINT/SIGTERM another
// one is taken as the same stop request rather than the second one that
// exits at once. GNU timeout (without --foreground) signals its child and
// then the child's process group, and `kill PID` followed by
// `kill -- -PGID` does the same: one request, delivered twice within
// microseconds. A person pressing Ctrl-C twice is far slower than this.
const DuplicateSignalWindow = 100 * time.Millisecond

// Main runs the command line args in this process, as cmd/changehook does:
// the first SIGINT or SIGTERM cancels the command's context (run, dev and
// devdb then stop gracefully); a second one, DuplicateSignalWindow or more
// after the first, runs ForcedExit (dev's temporary data directory is
// removed) and exits at once with ExitInterrupted. It returns Run's exit
// code.
//
// For run, dev and devdb, which serve until stopped, env.Stdout or
// env.Stderr closed by its reader (`dev --demo | head -3`: a write fails
// with EPIPE, or, for a pipe, it polls an error before any write: see
// watchClosedPipe) starts the graceful stop, as the first SIGINT does, but is
// never taken for a second stop request; the writes to it from then on
// are dropped; SIGPIPE, which would otherwise kill the
// process without its shutdown, is only turned into that EPIPE. Other
// commands keep the default: SIGPIPE ends them.
func Main(args []string, env Env) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2) // both signals are kept, in order, however fast they come
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	if len(args) > 0 && servesUntilStopped(args[0]) {
		// With SIGPIPE notified, a write to a closed pipe or socket fails
		// with EPIPE instead of killing the process: the webhook sockets'
		// writes already handle that error, the console's start the stop.
		pipes := make(chan os.Signal, 1)
		signal.Notify(pipes, syscall.SIGPIPE)
		defer signal.Stop(pipes)
		go func() {
			for {
				select {
				case <-pipes:
				case <-done:
					return
				}
			}
		}()
		// A closed console asks for the graceful stop and never counts
		// as a second request: after Ctrl-C on `dev | tee`, tee is gone
		// and the shutdown's own lines fail, which must not force the
		// exit before deliveries finish and checkpoints are saved.
		env = consoleStops(env, cancel, done)
	}
	go watchStopSignals(sigs, done, time.Now, cancel, func() {
		ForcedExit()
		os.Exit(ExitInterrupted)
	})
	return Run(ctx, args, env)
}

// watchStopSignals calls stop on the first signal from sigs and force on
// the first one after it that arrives DuplicateSignalWindow or more later
// (now tells the time); earlier ones are the first one delivered again. It
// returns when done is closed, or after force.
func watchStopSignals(sigs <-chan os.Signal, done <-chan struct{}, now func() time.Time, stop, force func()) {
	select {
	case <-sigs:
	case <-done:
		return
	}
	first := now()
	stop()
	for {
		select {
		case <-sigs:
		case <-done:
			return
		}
		if now().Sub(first) >= DuplicateSignalWindow {
			force()
			return
		}
	}
}

// servesUntilStopped reports whether command name serves until a stop
// request (run, dev, devdb), so that a closed console must stop it
// gracefully rather than kill it.
func servesUntilStopped(name string) bool {
	return name == "run" || name == "dev" || name == "devdb"
}

// consoleStops returns env with Stdout and Stderr wrapped in
// consoleWriters: the first EPIPE on either says on Stderr (when that is
// still open) that the console is closed and calls stop, once. A Stdout or
// Stderr that is a pipe is also watched until done is closed, so that its
// reader exiting is noticed without a write (devdb writes nothing after
// its first lines): see watchClosedPipe.
func consoleStops(env Env, stop func(), done <-chan struct{}) Env {
	stop = sync.OnceFunc(stop) // shared: either writer may break first, or both
	var stderr *consoleWriter
	broken := func(name string) func() {
		return func() {
			fmt.Fprintf(stderr, "changehook: stopping: %s is closed (the program reading it exited)\n", name)
			stop()
		}
	}
	if env.Stderr != nil {
		stderr = &consoleWriter{w: env.Stderr, broken: broken("standard error")}
		if f, ok := env.Stderr.(*os.File); ok {
			watchClosedPipe(f, done, stderr.gone)
		}
		env.Stderr = stderr
	}
	if env.Stdout != nil {
		stdout := &consoleWriter{w: env.Stdout, broken: broken("standard output")}
		if f, ok := env.Stdout.(*os.File); ok {
			watchClosedPipe(f, done, stdout.gone)
		}
		env.Stdout = stdout
	}
	return env
}

// consoleWriter passes writes to w until one fails with EPIPE (its reader
// is gone): it then calls broken and reports that write, and drops every
// later one, as written, so that a serving command carries on to its
// graceful stop. It is safe for concurrent use when w is. A nil
// *consoleWriter drops every write.
type consoleWriter struct {
	w      io.Writer
	broken func()
	closed atomic.Bool
}

// Write writes p to w unless w has failed with EPIPE; it never returns
// EPIPE.
func (c *consoleWriter) Write(p []byte) (int, error) {
	if c == nil || c.closed.Load() {
		return len(p), nil
	}
	n, err := c.w.Write(p)
	if err != nil && errors.Is(err, syscall.EPIPE) {
		c.gone()
		return len(p), nil
	}
	return n, err
}

// gone marks w's reader as gone: the first call calls broken, and every
// write from then on is dropped.
func (c *consoleWriter) gone() {
	if !c.closed.Swap(true) {
		c.broken()
	}
}
