// Package runner runs triggers: one Watcher per enabled trigger owns the
// trigger's change stream, submits every event to the trigger's dispatcher
// in stream order and checkpoints the resume token up to which every event
// was delivered or dead-lettered. A Runner runs every trigger of a
// configuration independently and reports each one's status.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/version"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// Options configure a Runner; zero values take defaults.
type Options struct {
	// Logger is the base logger (default slog.Default()); every line about a
	// trigger carries trigger=NAME.
	Logger *slog.Logger
	// Registry receives the watch loop's and the dispatchers' metrics (nil:
	// metrics are not registered).
	Registry prometheus.Registerer
	// HTTPClient is the dispatchers' base client (nil: the dispatcher's).
	HTTPClient *http.Client
	// Clock is the source of time of watchers and dispatchers (default
	// dispatcher.SystemClock).
	Clock dispatcher.Clock
	// Version goes into User-Agent (see version.UserAgent; default
	// version.Dev).
	Version string
	// ShutdownGrace bounds how long in-flight deliveries may finish after
	// Run's context is canceled (default 10s).
	ShutdownGrace time.Duration
	// CheckpointEvery saves a trigger's checkpoint after this many events
	// (see WatcherOptions; default DefaultCheckpointEvery).
	CheckpointEvery int
	// CheckpointInterval saves a trigger's checkpoint at least this often
	// while events are delivered (see WatcherOptions; default
	// DefaultCheckpointInterval).
	CheckpointInterval time.Duration
}

// Runner runs every enabled trigger of a configuration, each with its own
// dispatcher and Watcher, independently: one trigger failing never stops
// the others.
type Runner struct {
	cfg     *triggers.Config
	client  *mongo.Client
	store   *store.Store
	opts    Options
	log     *slog.Logger
	metrics *Metrics
	dmet    *dispatcher.Metrics
	slots   []*slot
	started atomic.Bool
}

// slot is one trigger of the runner; w is set once Run has created it.
type slot struct {
	t   *triggers.Trigger
	w   atomic.Pointer[Watcher]
	err atomic.Pointer[TriggerStatus] // status of a trigger whose dispatcher could not start
}

// New prepares a Runner for cfg. It does no I/O and starts nothing:
// dispatchers and watchers are created by Run.
func New(cfg *triggers.Config, client *mongo.Client, st *store.Store, opts Options) (*Runner, error) {
	switch {
	case cfg == nil:
		return nil, errors.New("new runner: nil config")
	case client == nil:
		return nil, errors.New("new runner: nil mongo client")
	case st == nil:
		return nil, errors.New("new runner: nil store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = dispatcher.SystemClock{}
	}
	if opts.Version == "" {
		opts.Version = version.Dev
	}
	r := &Runner{cfg: cfg, client: client, store: st, opts: opts, log: opts.Logger}
	if opts.Registry != nil {
		r.metrics = NewMetrics(opts.Registry)
	}
	// The dispatchers always record into dmet: Status reads the delivery
	// counters from it, registered with Prometheus or not.
	r.dmet = dispatcher.NewMetrics(opts.Registry)
	for _, t := range cfg.Triggers {
		r.slots = append(r.slots, &slot{t: t})
	}
	return r, nil
}

// Run starts a dispatcher and a Watcher for every enabled trigger and
// blocks until ctx is canceled. Then every watcher stops reading, lets its
// in-flight deliveries finish within the grace period and saves its final
// checkpoint, and Run returns nil. A trigger that fails permanently stays
// failed (see Status) while the others keep running. Run may be called once.
func (r *Runner) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("run triggers: Run called twice")
	}
	var wg sync.WaitGroup
	for _, s := range r.slots {
		if !s.t.Enabled {
			r.log.Info("trigger disabled", "trigger", s.t.Name)
			continue
		}
		log := r.log.With("trigger", s.t.Name)
		dopts := []dispatcher.Option{dispatcher.WithUserAgent(version.UserAgent(r.opts.Version)), dispatcher.WithLogger(r.log), dispatcher.WithClock(r.opts.Clock), dispatcher.WithMetrics(r.dmet)}
		if r.opts.HTTPClient != nil {
			dopts = append(dopts, dispatcher.WithHTTPClient(r.opts.HTTPClient))
		}
		disp, err := dispatcher.New(s.t, r.store, dopts...)
		if err != nil {
			log.Error("trigger failed", "reason", err.Error())
			now := r.opts.Clock.Now()
			s.err.Store(&TriggerStatus{Name: s.t.Name, Namespace: s.t.Namespace(), State: StateFailed, Since: now,
				LastError: fmt.Sprintf("start dispatcher: %v", err), LastErrorAt: now})
			continue
		}
		w := NewWatcher(s.t, r.client, r.store, disp, WatcherOptions{
			Logger:             r.log,
			Clock:              r.opts.Clock,
			CheckpointEvery:    r.opts.CheckpointEvery,
			CheckpointInterval: r.opts.CheckpointInterval,
			Metrics:            r.metrics,
			ShutdownGrace:      r.opts.ShutdownGrace,
		})
		s.w.Store(w)
		wg.Go(func() {
			if err := w.Run(ctx); err != nil {
				log.Error("trigger stopped after a permanent failure; the other triggers keep running", "error", err)
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// Status returns every trigger's status and counters, in configuration
// order: the watch loop's state and counters and the trigger's delivery
// counters (the values of its Prometheus series, read from memory).
func (r *Runner) Status() []TriggerStatus {
	out := make([]TriggerStatus, 0, len(r.slots))
	for _, s := range r.slots {
		var st TriggerStatus
		switch {
		case !s.t.Enabled:
			st = TriggerStatus{Name: s.t.Name, Namespace: s.t.Namespace(), State: StateDisabled}
		case s.w.Load() != nil:
			st = s.w.Load().Status()
		case s.err.Load() != nil:
			st = *s.err.Load()
		default:
			st = TriggerStatus{Name: s.t.Name, Namespace: s.t.Namespace(), State: StateStarting}
		}
		c := r.dmet.Counts(s.t.Name)
		st.Deliveries, st.Attempts, st.DeadLetters, st.InFlight = c.Deliveries, c.Attempts, c.DeadLetters, c.InFlight
		out = append(out, st)
	}
	return out
}

// Ready reports whether Run has started and every enabled trigger's change
// stream is open.
func (r *Runner) Ready() bool {
	if !r.started.Load() {
		return false
	}
	for _, s := range r.slots {
		if !s.t.Enabled {
			continue
		}
		w := s.w.Load()
		if w == nil || !w.Status().StreamOpen {
			return false
		}
	}
	return true
}
