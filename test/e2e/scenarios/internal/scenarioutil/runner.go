package scenarioutil

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// pollInterval is how often runner state is sampled while waiting on it:
// the runner offers no change notification, so waits poll its Status.
const pollInterval = 10 * time.Millisecond

// Env returns a LookupEnv that resolves ${VAR} from vars first and then from
// the process environment, so that a scenario can point its triggers at the
// ports it actually listens on while a user can still override the rest.
func Env(vars map[string]string) triggers.LookupEnv {
	return func(name string) (string, bool) {
		if v, ok := vars[name]; ok {
			return v, true
		}
		return os.LookupEnv(name)
	}
}

// ParseConfig parses a scenario's triggers.yaml (usually embedded in the
// binary) with Env(vars) and points it at the MongoDB deployment uri.
func ParseConfig(name string, data []byte, vars map[string]string, uri string) (*triggers.Config, error) {
	cfg, err := triggers.Parse(name, data, Env(vars))
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", name, err)
	}
	cfg.MongoDB.URI = uri
	return cfg, nil
}

// StartConfigured listens on a free loopback port, parses a scenario's
// triggers.yaml as ParseConfig does, with the variables vars returns for the
// port's base URL (http://127.0.0.1:PORT, no trailing slash) and pointed at
// the deployment uri, and starts a receiver on that port (see StartReceiver)
// that checks signatures against the first trigger's webhook secrets.
// opts.Listener and opts.Secrets are set by StartConfigured; the other
// options are the caller's. On success the caller must Close the receiver,
// whose URL is the base URL; on failure nothing is left listening.
func StartConfigured(name string, data []byte, uri string, vars func(base string) map[string]string, opts ReceiverOptions) (*triggers.Config, *Receiver, error) {
	ln, err := Listen("")
	if err != nil {
		return nil, nil, err
	}
	cfg, err := ParseConfig(name, data, vars(URLOf(ln)), uri)
	if err != nil {
		_ = ln.Close()
		return nil, nil, err
	}
	opts.Listener, opts.Secrets = ln, cfg.Triggers[0].Webhook.SigningKeys()
	recv, err := StartReceiver(opts)
	if err != nil {
		_ = ln.Close()
		return nil, nil, err
	}
	return cfg, recv, nil
}

// Runner is a runner.Runner running in a background goroutine.
type Runner struct {
	*runner.Runner
	cancel context.CancelFunc
	done   chan struct{}
}

// RunnerOptions configure StartRunner.
type RunnerOptions struct {
	// Logger receives the runner's logs (nil: discarded).
	Logger *slog.Logger
	// CheckpointInterval batches checkpoint writes (0: the runner default).
	CheckpointInterval time.Duration
	// ShutdownGrace bounds in-flight deliveries at Stop (0: the default).
	ShutdownGrace time.Duration
}

// StartRunner runs every enabled trigger of cfg with client, keeping
// checkpoints and dead letters in cfg.State.Database, until Stop or until
// ctx ends. It is what `changehook run` does, minus the admin server.
func StartRunner(ctx context.Context, cfg *triggers.Config, client *mongo.Client, opts RunnerOptions) (*Runner, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r, err := runner.New(cfg, client, store.New(client, cfg.State.Database), runner.Options{
		Logger:             log,
		Version:            "example",
		CheckpointInterval: opts.CheckpointInterval,
		ShutdownGrace:      opts.ShutdownGrace,
	})
	if err != nil {
		return nil, fmt.Errorf("start runner: %w", err)
	}
	rctx, cancel := context.WithCancel(ctx)
	out := &Runner{Runner: r, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(out.done)
		if err := r.Run(rctx); err != nil {
			log.Error("runner stopped", "error", err)
		}
	}()
	return out, nil
}

// Stop cancels the runner and waits until it has finished its in-flight
// deliveries (within the shutdown grace) and saved its checkpoints.
func (r *Runner) Stop() {
	r.cancel()
	<-r.done
}

// WaitReady waits until every enabled trigger's change stream is open.
func (r *Runner) WaitReady(ctx context.Context) error {
	if err := poll(ctx, r.Ready); err != nil {
		return fmt.Errorf("wait for the triggers' change streams to open: %w", err)
	}
	return nil
}

// WaitStatus waits until the status of the trigger named name satisfies
// cond, and returns it.
func (r *Runner) WaitStatus(ctx context.Context, name string, cond func(runner.TriggerStatus) bool) (runner.TriggerStatus, error) {
	var last runner.TriggerStatus
	found := false
	err := poll(ctx, func() bool {
		for _, s := range r.Status() {
			if s.Name == name {
				last, found = s, true
				return cond(s)
			}
		}
		return false
	})
	switch {
	case err == nil:
		return last, nil
	case !found:
		return last, fmt.Errorf("wait for trigger %s: no such trigger: %w", name, err)
	}
	return last, fmt.Errorf("wait for trigger %s (state %s, last error %q): %w", name, last.State, last.LastError, err)
}

// poll calls cond every pollInterval until it returns true or ctx ends.
func poll(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
