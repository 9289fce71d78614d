package cli

import (
	"context"
	"os"
	"os/signal"
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
func Main(args []string, env Env) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2) // both signals are kept, in order, however fast they come
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
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
