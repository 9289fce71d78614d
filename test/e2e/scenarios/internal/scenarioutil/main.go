package scenarioutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// CloseTimeout bounds how long a scenario waits for a component to shut
// down.
const CloseTimeout = 10 * time.Second

// Main runs a scenario's run function with a context canceled on SIGINT or
// SIGTERM, prints its error to stderr and returns the process exit code (0
// on success or interruption, 1 on failure).
func Main(run func(ctx context.Context) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx)
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintln(os.Stderr, "interrupted")
		return 0
	}
	fmt.Fprintln(os.Stderr, "error:", err)
	return 1
}

// Logger returns the logger a scenario hands to the runner: info level on w
// when verbose, warnings and errors only otherwise.
func Logger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// CloseContext returns a context for shutting components down after ctx
// (possibly already canceled) ended: it keeps ctx's values and lasts
// CloseTimeout.
func CloseContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), CloseTimeout)
}

// CloseOnExit closes c with a context from CloseContext(ctx) and, when
// *errp is nil, sets *errp to the error Close returned, so that a failure
// to shut a component down fails the run without hiding an earlier error.
// It is meant to be deferred by a function with a named error result:
//
//	defer scenarioutil.CloseOnExit(ctx, db, &err)
func CloseOnExit(ctx context.Context, c interface{ Close(context.Context) error }, errp *error) {
	cctx, cancel := CloseContext(ctx)
	defer cancel()
	if cerr := c.Close(cctx); *errp == nil {
		*errp = cerr
	}
}

// SyncWriter returns a writer that serialises writes to w (io.Discard when
// w is nil), for output shared by a receiver's handlers and the goroutine
// driving a scenario.
func SyncWriter(w io.Writer) io.Writer {
	if w == nil {
		w = io.Discard
	}
	return &syncWriter{w: w}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
