// Command changehook runs webhook triggers for MongoDB change streams.
//
// All logic lives in package cli; main only wires the process: arguments,
// SIGINT/SIGTERM (the first one stops gracefully, a second one kills the
// process at once) and the exit code.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/changehook/changehook/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore the default handlers: a second signal terminates at once
	}()
	return cli.Run(ctx, os.Args[1:], cli.OSEnv(version))
}
