package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/admin"
	"github.com/changehook/changehook/internal/admin/console"
	"github.com/changehook/changehook/internal/demo"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// runFlags are the flags shared by run and dev.
type runFlags struct {
	config    *string
	log       logFlags
	grace     time.Duration
	adminAddr string
	cpEvery   int
	cpEveryT  time.Duration
	// clustered runs triggers under cluster leases (run, not dev).
	clustered bool
	// parse is how a reload reads the file (dev: devOptions).
	parse triggers.Options
	// check, when set, is what a reloaded configuration must also pass
	// (dev: devServable), as the configuration the process started with did.
	check func(*triggers.Config) error
	// dev: the runner serves `changehook dev` (runner.Options.Dev).
	dev bool
	// deliveries, when set, receives one line per delivery attempt (dev).
	deliveries io.Writer
	// adminListening, when set, is called once every listener is bound,
	// before the triggers run: with the admin server's URL once it
	// listens, or with "" when it is off (dev prints it in its banner and
	// records itself for the other commands).
	adminListening func(url string)
	// watchConfig reloads the configuration when its file changes.
	watchConfig bool
}

func (f *runFlags) register(fs *flag.FlagSet) {
	f.config = configFlag(fs)
	f.log.register(fs)
	fs.DurationVar(&f.grace, "grace", runner.DefaultShutdownGrace, "on SIGINT/SIGTERM, how long in-flight deliveries may take to finish")
	fs.StringVar(&f.adminAddr, "admin-addr", "", "admin server `address` (default: the config's admin.addr; port 0 picks a free one; \"off\" disables it)")
	fs.IntVar(&f.cpEvery, "checkpoint-every", runner.DefaultCheckpointEvery, "save a trigger's checkpoint after this many events")
	fs.DurationVar(&f.cpEveryT, "checkpoint-interval", runner.DefaultCheckpointInterval, "save a trigger's checkpoint at least this often while events flow")
	fs.BoolVar(&f.watchConfig, "watch-config", false, "reload the configuration whenever its file changes (as SIGHUP and POST /api/reload do)")
}

// checkPositive refuses a --grace, --checkpoint-every or
// --checkpoint-interval of 0 or less, which none of them has a meaning
// for, as a usage error (done is true): the runner would use its default
// while the log showed the value given.
func (f *runFlags) checkPositive(env Env, fs *flag.FlagSet) (code int, done bool) {
	switch {
	case f.grace <= 0:
		return usageError(env, fs, "--grace must be a positive duration such as %s, got %s", runner.DefaultShutdownGrace, f.grace), true
	case f.cpEvery <= 0:
		return usageError(env, fs, "--checkpoint-every must be 1 or more events, got %d", f.cpEvery), true
	case f.cpEveryT <= 0:
		return usageError(env, fs, "--checkpoint-interval must be a positive duration such as %s, got %s", runner.DefaultCheckpointInterval, f.cpEveryT), true
	}
	return 0, false
}

func runCommand(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "run", "run [-c FILE] [--watch-config] [--grace 10s] [--log-format text|json] [--log-level info]",
		"changehook run                                   # ./triggers.yaml",
		"MONGODB_URI='mongodb+srv://user:pass@cluster/' changehook run -c prod.yaml --log-format json",
		"changehook run -c triggers.yaml --admin-addr 0.0.0.0:9470",
		"kill -HUP PID                                    # reload triggers.yaml (PID: the \"changehook running\" log line's pid)",
		"curl -X POST http://127.0.0.1:9470/api/reload    # the same through the admin API: only changed triggers restart")
	var rf runFlags
	rf.register(fs)
	if code, done := parseFlags(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, "unexpected argument %q (the file goes after -c)", fs.Arg(0))
	}
	if code, done := rf.checkPositive(env, fs); done {
		return code
	}
	cfg, err := loadConfig(*rf.config, env)
	if err != nil {
		return fail(env, "run", err)
	}
	log, err := newLogger(env.Stderr, pick(rf.log.format, cfg.Log.Format), pick(rf.log.level, cfg.Log.Level))
	if err != nil {
		return usageError(env, fs, "%v", err)
	}
	rf.clustered = true
	warnPublishedKeys(log, cfg)
	logWarnings(log, cfg)
	if err := serve(ctx, env, cfg, rf, log, nil); err != nil {
		return fail(env, "run", err)
	}
	return ExitOK
}

// logWarnings logs each of the configuration's warnings
// (triggers.Config.Warnings) once, with its position as "at" and, for one
// about a trigger, the trigger's name; those about a disabled trigger are
// left out, since it does not run.
func logWarnings(log *slog.Logger, cfg *triggers.Config) {
	enabled := make(map[string]bool, len(cfg.Triggers))
	for _, t := range cfg.Triggers {
		enabled[t.Name] = t.Enabled
	}
	for _, w := range cfg.Warnings {
		switch {
		case w.Trigger == "":
			log.Warn(w.Message, "at", w.Pos.String())
		case enabled[w.Trigger]:
			log.Warn(w.Message, "at", w.Pos.String(), "trigger", w.Trigger)
		}
	}
}

// warnPublishedKeys warns about each trigger of cfg that signs with a key
// published in this repository (demo.PublishedKeys: the demo's and the
// examples' ${VAR:-key} fallbacks, taken when VAR is not set): anyone can
// make signatures its endpoint accepts. dev, which runs such
// configurations on purpose, does not call it.
func warnPublishedKeys(log *slog.Logger, cfg *triggers.Config) {
	for _, t := range cfg.Triggers {
		if slices.ContainsFunc(t.Webhook.Secrets, func(s triggers.Secret) bool { return demo.IsPublishedKey(s.Reveal()) }) {
			log.Warn("the trigger signs its requests with a signing key published in changehook's repository (a demo or example default, used when the secret's variable is not set): "+
				"anyone can sign requests its endpoint will accept; set the variable to a key of your own (make one with: echo whsec_$(openssl rand -base64 32))",
				"trigger", t.Name)
		}
	}
}

// connect opens a client on uri and checks that the deployment answers.
// Errors show the URI without its password.
func connect(ctx context.Context, uri string) (*mongo.Client, error) {
	return connectStreams(ctx, uri, 0)
}

// defaultMaxPoolSize is the driver's default maxPoolSize.
const defaultMaxPoolSize = 100

// poolHeadroom is how many connections beyond the waiting change streams the
// state database's reads and writes (checkpoints, leases, heartbeats, dead
// letters, controls) get.
const poolHeadroom = 32

// connectStreams is connect for a process that keeps streams change streams
// waiting in getMore at once: each waiting getMore holds a connection for
// its whole wait, so unless the URI sets maxPoolSize the pool is sized
// max(driver default, streams + poolHeadroom). With the driver's 100, 200
// triggers left half their streams and every state write queueing for a
// connection, and lease renewals then timed out.
func connectStreams(ctx context.Context, uri string, streams int) (*mongo.Client, error) {
	client, err := mongo.Connect(clientOptions(uri, streams))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", triggers.RedactURI(uri), triggers.ScrubURIError(err, uri))
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := client.Ping(pctx, nil); err != nil {
		_ = client.Disconnect(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("cannot reach MongoDB at %s (is it running, and is the connection string right?): %w", triggers.RedactURI(uri), triggers.ScrubURIError(err, uri))
	}
	return client, nil
}

// serve connects to cfg.MongoDB.URI, starts the admin server and runs every
// enabled trigger until ctx is canceled, then shuts down gracefully. started,
// when not nil, is called once everything is up.
func serve(ctx context.Context, env Env, cfg *triggers.Config, rf runFlags, log *slog.Logger, started func(*runner.Runner)) error {
	client, err := connectStreams(ctx, cfg.MongoDB.URI, streamCount(cfg))
	if err != nil {
		return err
	}
	defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
	if err := checkChangeStreams(ctx, client, cfg.MongoDB.URI); err != nil {
		return err
	}
	if o := options.Client().ApplyURI(cfg.MongoDB.URI); o.MaxPoolSize != nil && *o.MaxPoolSize != 0 && int(*o.MaxPoolSize) < streamCount(cfg)+poolHeadroom {
		log.Warn("maxPoolSize in the MongoDB URI is smaller than the change streams plus headroom: every waiting change stream holds a connection, so state writes (checkpoints, leases) may wait for one",
			"max_pool_size", *o.MaxPoolSize, "change_streams", streamCount(cfg), "recommended_at_least", streamCount(cfg)+poolHeadroom)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st := store.New(client, cfg.State.Database)
	st.SetHistoryRetention(cfg.History.Retention)
	if err := st.EnsureIndexes(ctx); err != nil {
		return fmt.Errorf("prepare the state database: %w", err)
	}
	hist := newHistoryWriter(st, cfg.History, reg, log)
	var mgr *cluster.Manager
	var standby func(string) bool
	var leaseWait func(string) (string, time.Time, string)
	var unrun func(context.Context, string) (bool, error)
	if rf.clustered {
		if mgr, err = cluster.New(st, cfg, cluster.Options{Version: env.Version, Logger: log, Registry: reg}); err != nil {
			return fmt.Errorf("prepare cluster membership: %w", err)
		}
		standby, leaseWait, unrun = mgr.Standby, mgr.LeaseWait, mgr.Unrun
	}
	rn, err := runner.New(cfg, client, st, runner.Options{
		Logger:             log,
		Registry:           reg,
		Version:            env.Version,
		ShutdownGrace:      rf.grace,
		CheckpointEvery:    rf.cpEvery,
		CheckpointInterval: rf.cpEveryT,
		StartStopped:       rf.clustered,
		Clustered:          rf.clustered,
		Standby:            standby,
		LeaseWait:          leaseWait,
		Unrun:              unrun,
		Controls:           true,
		WatchDeadLetters:   true,
		DispatcherOptions:  dispatcherOptions(rf),
		History:            hist,
		Dev:                rf.dev,
	})
	if err != nil {
		closeHistory(ctx, log, hist)
		return fmt.Errorf("prepare triggers: %w", err)
	}
	defer func() {
		// After the triggers stopped (their last attempts are queued) and
		// the admin server shut down (no replay is running): the writer
		// in use, the one a reload may have put in place.
		closeHistory(ctx, log, rn.SetHistory(nil))
	}()

	rl := newReloader(cfg.Path, env, log, cfg, rn, reg)
	rl.st, rl.opts, rl.check = st, rf.parse, rf.check
	rl.poolCap = poolCapacity(cfg.MongoDB.URI, streamCount(cfg))
	var driver *cluster.Driver
	if mgr != nil {
		driver = cluster.NewDriver(ctx, mgr, rn, rf.grace)
		rl.mgr, rl.driver = mgr, driver
	}
	if env.WatchReload != nil {
		requests, stop := env.WatchReload()
		defer stop()
		go rl.watchSignals(ctx, requests)
	}
	if rf.watchConfig {
		if err := rl.watchFile(ctx); err != nil {
			return err
		}
		log.Info("watching the configuration file; changes are reloaded", "file", cfg.Path)
	}

	addr := pick(rf.adminAddr, cfg.Admin.Addr)
	if addr == "off" && rf.adminListening != nil {
		rf.adminListening("")
	}
	if addr != "off" {
		aopts := admin.OptionsFor(cfg.Admin)
		aopts.Addr, aopts.Runner, aopts.Gatherer, aopts.Logger = addr, rn, reg, log
		aopts.Store, aopts.Oplog = st, console.MongoOplog{Client: client}
		aopts.Control, aopts.Token, aopts.Reload = rn, cfg.Admin.Token.Reveal(), rl
		aopts.History, aopts.Config = st, rl.Config
		aopts.DeadLetters = &deadLetterOps{st: st, config: rl.Config, env: env, history: rn.HistoryObserver}
		aopts.DeadLetterCounts = rn
		endpoints := "/ (console) /healthz /readyz /metrics /api/triggers /api/history /api/deadletters /api/reload"
		if mgr != nil {
			aopts.Cluster = mgr
			endpoints += " /api/cluster"
		}
		adm, err := admin.Start(aopts)
		if err != nil {
			return fmt.Errorf("%w (another changehook running? change admin.addr or pass --admin-addr)", err)
		}
		log.Info("admin server listening", "url", adm.URL(), "endpoints", endpoints)
		if rf.adminListening != nil {
			rf.adminListening(adm.URL())
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := adm.Shutdown(sctx); err != nil {
				log.Warn("admin server shutdown", "error", err)
			}
		}()
	}

	enabled := 0
	for _, t := range cfg.Triggers {
		if t.Enabled {
			enabled++
		}
	}
	log.Info("changehook running", "version", env.Version, "pid", os.Getpid(), "mongodb", triggers.RedactURI(cfg.MongoDB.URI),
		"triggers", enabled, "state_database", cfg.State.Database)
	if started != nil {
		started(rn)
	}
	served := make(chan struct{})
	defer close(served)
	go func() {
		select {
		case <-ctx.Done():
			log.Info("stopping: in-flight deliveries may finish within the grace period, then checkpoints are saved; a second SIGINT/SIGTERM exits at once",
				"grace", rf.grace)
		case <-served:
		}
	}()
	if mgr != nil {
		// The membership outlives the triggers: on shutdown the driver
		// announces that the member is leaving (Manager.Leave), every
		// trigger drains, saves its final checkpoint and releases its lease
		// (taken over at once), then the member leaves.
		mctx, stopMembership := context.WithCancel(context.WithoutCancel(ctx))
		mdone := make(chan error, 1)
		go func() { mdone <- mgr.Run(mctx) }()
		rdone := make(chan error, 1)
		go func() { rdone <- rn.Run(ctx) }()
		log.Info("cluster member", "instance", mgr.InstanceID(), "lease_ttl", mgr.LeaseTTL())
		driver.Add(cfg)
		<-ctx.Done()
		driver.Wait()
		err := <-rdone
		stopMembership()
		<-mdone
		if err != nil {
			return fmt.Errorf("run triggers: %w", err)
		}
	} else if err := rn.Run(ctx); err != nil {
		return fmt.Errorf("run triggers: %w", err)
	}
	if n := rn.Unfinished(); n > 0 {
		log.Warn("changehook stopped: the grace period ended with deliveries unfinished; their checkpoints stay before them, "+
			"so they are delivered again at the next start", "unfinished", n, "grace", rf.grace)
	} else {
		log.Info("changehook stopped: in-flight deliveries finished, checkpoints saved")
	}
	return nil
}

// newHistoryWriter starts the delivery history's writer for h (nil when
// the history is disabled); reg receives its counters (shared by the
// writers a reload starts).
func newHistoryWriter(st *store.Store, h triggers.HistoryConfig, reg prometheus.Registerer, log *slog.Logger) *store.HistoryWriter {
	if !h.Enabled {
		return nil
	}
	return store.NewHistoryWriter(st, store.HistoryWriterOptions{
		Retention: h.Retention, MaxRecords: h.MaxRecords, Registry: reg, Logger: log})
}

// historyCloseWait bounds writing the records queued when a history
// writer is closed (at shutdown, or replaced by a reload).
const historyCloseWait = 5 * time.Second

// closeHistory writes what w (nil: nothing to do) has queued, within
// historyCloseWait, and stops it; records left unwritten are counted as
// dropped and logged.
func closeHistory(ctx context.Context, log *slog.Logger, w *store.HistoryWriter) {
	if w == nil {
		return
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), historyCloseWait)
	defer cancel()
	if err := w.Close(hctx); err != nil {
		log.Warn("delivery history: records left unwritten when its writer closed", "dropped_total", w.Dropped(), "error", err)
	}
}

// dispatcherOptions returns the runner's extra dispatcher options: dev's
// per-delivery printer when rf.deliveries is set.
func dispatcherOptions(rf runFlags) func(*triggers.Trigger) []dispatcher.Option {
	if rf.deliveries == nil {
		return nil
	}
	p := &deliveryPrinter{w: rf.deliveries, now: time.Now}
	return func(t *triggers.Trigger) []dispatcher.Option {
		return []dispatcher.Option{dispatcher.WithObserver(p.observer(t.Name))}
	}
}

// clientOptions are the client options of connectStreams. Unless the URI
// sets maxPoolSize, the pool has room for twice the streams plus
// poolHeadroom (poolSize), so a hot reload can add triggers; connections are
// opened only when needed, so the room costs nothing until it is used.
func clientOptions(uri string, streams int) *options.ClientOptions {
	opts := options.Client().ApplyURI(uri).SetAppName("changehook")
	if opts.MaxPoolSize == nil {
		if n := poolSize(streams); n > defaultMaxPoolSize {
			opts.SetMaxPoolSize(uint64(n))
		}
	}
	return opts
}

// poolSize is the connection pool serve asks for when it starts with
// streams change streams: twice the streams (a reload may add as many
// again) plus poolHeadroom for the state database's reads and writes.
func poolSize(streams int) int { return 2*streams + poolHeadroom }

// poolCapacity is the maxPoolSize of the client clientOptions(uri, streams)
// makes; 0 means unlimited (maxPoolSize=0 in the URI).
func poolCapacity(uri string, streams int) int {
	o := clientOptions(uri, streams)
	if o.MaxPoolSize == nil {
		return defaultMaxPoolSize
	}
	return int(*o.MaxPoolSize)
}

// streamCount is how many change streams serve keeps open at once for cfg:
// one per partition of every enabled trigger (one for an unpartitioned
// trigger), the controls stream and the dead letters' stream (the runner
// recounts its dead-letter gauges when they change). A cluster member may
// hold fewer; this is the most it can hold.
func streamCount(cfg *triggers.Config) int {
	n := 2
	for _, t := range cfg.Triggers {
		if t.Enabled {
			n += max(1, t.Partitions)
		}
	}
	return n
}
