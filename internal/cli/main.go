package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// ExitInterrupted is the exit code after a second SIGINT/SIGTERM ended the
// process at once.
const ExitInterrupted = 130

// Main runs the command line args in this process, as cmd/changehook does:
// the first SIGINT or SIGTERM cancels the command's context (run, dev and
// devdb then stop gracefully); a second one runs ForcedExit (dev's
// temporary data directory is removed) and exits at once with
// ExitInterrupted. It returns Run's exit code.
func Main(args []string, env Env) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2) // both signals are kept, in order, however fast they come
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigs:
		case <-done:
			return
		}
		cancel()
		select {
		case <-sigs:
		case <-done:
			return
		}
		ForcedExit()
		os.Exit(ExitInterrupted)
	}()
	return Run(ctx, args, env)
}
