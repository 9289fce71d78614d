package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/demo"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/triggers"
)

func devCommand(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet(env, "dev", "dev [-c FILE] [--demo] [--data DIR] [--addr HOST:PORT]",
		"changehook dev --demo                    # the whole flow in one process: devdb, runner, demo receiver and writer (built-in config; works from any directory)",
		"changehook dev -c triggers.yaml          # your triggers against a throw-away devdb",
		"changehook dev --data ./devdb-data --addr 127.0.0.1:27017   # keep the data; connect other tools to it")
	var rf runFlags
	rf.register(fs)
	demoMode := fs.Bool("demo", false, "also start the demo receiver (prints and verifies each delivery) and the inventory writer")
	data := fs.String("data", "", "devdb data `directory` (default: a temporary directory removed on exit)")
	addr := fs.String("addr", devdb.DefaultAddr, "devdb listen `address` (loopback only; port 0 picks a free one)")
	if code, done := parseFlags(fs, args, env); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(env, fs, "unexpected argument %q (the file goes after -c)", fs.Arg(0))
	}
	if code, done := rf.checkPositive(env, fs); done {
		return code
	}
	if remote, err := isRemote(*addr); err != nil || remote {
		return usageError(env, fs, "--addr must be a loopback host:port such as 127.0.0.1:27017 (use 'changehook devdb --allow-remote' to expose devdb)")
	}
	var cfg *triggers.Config
	var err error
	if *demoMode && !flagSet(fs, "c", "config") {
		// The demo needs no file: its configuration is built in, so that
		// it works from any directory.
		cfg, err = triggers.ParseWith(demo.ConfigName, demo.Config, env.LookupEnv, devOptions)
		if err != nil {
			err = fmt.Errorf("invalid built-in demo configuration: %w", err)
		}
	} else if cfg, err = triggers.LoadWith(*rf.config, env.LookupEnv, devOptions); err != nil {
		err = configError(*rf.config, err)
	}
	if err != nil {
		return fail(env, "dev", err)
	}
	if err := devServable(cfg); err != nil {
		return fail(env, "dev", err)
	}
	level := pick(rf.log.level, cfg.Log.Level)
	if *demoMode && rf.log.level == "" {
		level = "warn" // keep the demo's output readable; --log-level info shows the runner's logs
	}
	log, err := newLogger(env.Stderr, pick(rf.log.format, cfg.Log.Format), level)
	if err != nil {
		return usageError(env, fs, "%v", err)
	}
	logWarnings(log, cfg)

	var demoTrigger *triggers.Trigger
	if *demoMode {
		if demoTrigger, err = pickDemoTrigger(cfg); err != nil {
			return fail(env, "dev", err)
		}
	}

	dataDir := *data
	if dataDir == "" {
		// Our own temporary directory rather than devdb's, so that it is
		// removed on every exit path (see devDir).
		dd, err := newDevDir("", log)
		if err != nil {
			return fail(env, "dev", err)
		}
		defer dd.remove()
		dataDir = dd.path
	}
	srv, err := devdb.Start(ctx, devdb.Options{Addr: *addr, Data: dataDir, Logger: log.With("component", "devdb")})
	if err != nil {
		return fail(env, "dev", addrInUseHint(err, "--addr")) // devdb.Start errors say "start devdb: …"
	}
	defer func() {
		if err := srv.Close(); err != nil {
			log.Warn("stop devdb", "error", err)
		}
	}()
	cfg.MongoDB.URI = srv.URI()
	configName := *rf.config
	if cfg.Path == demo.ConfigName {
		configName = demo.ConfigName
	}
	where := "data in " + dataDir + ", removed on exit; --data DIR keeps it"
	if *data != "" {
		where = "data in " + *data
	}
	fmt.Fprintf(env.Stdout, "devdb      %s  (%s)\n", srv.URI(), where)

	// The runtime record is written once every listener is bound (devdb,
	// the demo receiver, the admin server), so that a dev that fails to
	// start never touches it, and removed on exit only while it is this
	// process's: another dev's live record is never replaced.
	var forget func()
	defer func() {
		if forget != nil {
			forget()
		}
	}()
	rf.deliveries = env.Stdout
	rf.dev = true
	rf.parse = devOptions
	rf.check = devServable
	rf.adminListening = func(url string) {
		if url != "" {
			fmt.Fprintf(env.Stdout, "admin      %s  (console; API under /api, /metrics, /readyz)\n", url)
		}
		f, err := writeDevRuntime(env, devRuntime{URI: srv.URI(), Config: configName, Admin: url})
		var other *otherDevError
		switch {
		case errors.As(err, &other):
			fmt.Fprintf(env.Stderr, "changehook dev: %v; this dev (pid %d) is not recorded, so %s\n",
				other, os.Getpid(), devReachAdvice(env, configName, srv.URI()))
		case err != nil:
			log.Warn("other commands will not find this dev, so "+devReachAdvice(env, configName, srv.URI()), "error", err)
		default:
			unhook := atForcedExit(f)
			forget = func() {
				unhook()
				f()
			}
		}
	}
	fmt.Fprintln(env.Stdout, "deliveries one line per attempt: time, trigger, HTTP status, latency, webhook-id (and the failure reason)")

	runCtx, stopDemo := context.WithCancel(ctx)
	defer stopDemo()
	var started func(*runner.Runner)
	var wg sync.WaitGroup
	if demoTrigger != nil {
		recvAddr, err := receiverAddr(demoTrigger.Webhook.URL)
		if err != nil {
			return fail(env, "dev", err)
		}
		recv, err := demo.StartReceiver(demo.ReceiverOptions{Addr: recvAddr, Secrets: demoTrigger.Webhook.SigningKeys(), Out: env.Stdout})
		if err != nil {
			return fail(env, "dev", fmt.Errorf("%w (%s)", err, demoPortAdvice(env, cfg, demoTrigger)))
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = recv.Close(sctx)
		}()
		fmt.Fprintf(env.Stdout, "receiver   http://%s  (prints every delivery; %s)\n", recv.Addr(), receiverCheck(cfg.Path, demoTrigger))
		fmt.Fprintf(env.Stdout, "trigger    %s: %s where %s -> webhook\n", demoTrigger.Name, demoTrigger.Namespace(), describeMatch(demoTrigger))
		started = func(r *runner.Runner) {
			fmt.Fprintln(env.Stdout, "Press Ctrl-C to stop.") // after the admin line
			wg.Go(func() {
				if !waitReady(runCtx, r, 10*time.Second) {
					if runCtx.Err() == nil {
						for _, st := range r.Status() {
							if !st.StreamOpen && st.State != runner.StateDisabled {
								fmt.Fprintf(env.Stderr, "trigger %s is not running (%s): %s\n", st.Name, st.State, st.LastError)
							}
						}
						fmt.Fprintln(env.Stderr, "the demo writer waits until every trigger is running; see /api/triggers on the admin server")
					}
					if !waitReady(runCtx, r, 0) {
						return
					}
				}
				client, err := connect(runCtx, srv.URI())
				if err != nil {
					log.Error("demo writer", "error", err)
					return
				}
				defer func() { _ = client.Disconnect(context.WithoutCancel(ctx)) }()
				if err := demo.RunWriter(runCtx, demo.WriterOptions{Client: client, Out: env.Stdout, Seed: uint64(time.Now().UnixNano())}); err != nil {
					log.Error("demo writer stopped", "error", err)
				}
			})
		}
	}
	var rn *runner.Runner
	err = serve(runCtx, env, cfg, rf, log, func(r *runner.Runner) {
		rn = r
		if started != nil {
			started(r)
		}
	})
	stopDemo() // the writer stops with the runner, whatever ended it
	wg.Wait()
	if err != nil {
		if rn == nil && ctx.Err() != nil {
			// A stop request (Ctrl-C, the console closed: `dev | head -3`)
			// while connecting: nothing ran, nothing failed.
			fmt.Fprintln(env.Stdout, "stopped before the triggers started.")
			return ExitOK
		}
		return fail(env, "dev", err)
	}
	if n := rn.Unfinished(); n > 0 {
		again := "a next dev with --data " + shellQuote(*data) + " delivers them again"
		if *data == "" {
			again = "they go with the temporary data (with --data DIR a next dev delivers them again)"
		}
		fmt.Fprintf(env.Stdout, "stopped: %s unfinished when the grace period (%s) ended; checkpoints saved before them: %s.\n",
			plural(n, "event"), rf.grace, again)
	} else {
		fmt.Fprintln(env.Stdout, "stopped: in-flight deliveries finished, checkpoints saved.")
	}
	return ExitOK
}

// devReachAdvice tells how other commands reach a dev that is not recorded
// (its devdb at uri, its configuration file, demo.ConfigName for the built-in
// one): "-c FILE and MONGODB_URI=uri" only when FILE takes mongodb.uri from
// that variable (leaves it out or sets it to ${MONGODB_URI}); when FILE sets
// mongodb.uri otherwise, that wins over MONGODB_URI and the commands would
// act on another deployment, so the advice is a copy of FILE without it.
func devReachAdvice(env Env, file, uri string) string {
	lookup := func(name string) (string, bool) {
		if name == triggers.MongoURIEnv {
			return uri, true
		}
		return env.LookupEnv(name)
	}
	opts := triggers.Options{IgnoreUnsetWebhookVars: true}
	var cfg *triggers.Config
	var err error
	shown := file
	if file == demo.ConfigName {
		shown = "FILE (`changehook init` writes the demo's)"
		cfg, err = triggers.ParseWith(demo.ConfigName, demo.Config, lookup, opts)
	} else {
		cfg, err = triggers.LoadWith(file, lookup, opts)
	}
	if err == nil && cfg.MongoDB.URI == uri {
		return fmt.Sprintf("to reach it give them -c %s and %s=%s", shown, triggers.MongoURIEnv, uri)
	}
	return fmt.Sprintf("to reach it give them -c with a copy of %s whose mongodb.uri is left out or set to ${%s}, and %s=%s "+
		"(-c %s itself does not reach it: its mongodb.uri wins over %s)",
		shown, triggers.MongoURIEnv, triggers.MongoURIEnv, uri, shown, triggers.MongoURIEnv)
}

// pickDemoTrigger returns the first enabled trigger whose webhook points at
// a loopback address: the demo receiver listens there.
func pickDemoTrigger(cfg *triggers.Config) (*triggers.Trigger, error) {
	for _, t := range cfg.Triggers {
		if !t.Enabled {
			continue
		}
		if _, err := receiverAddr(t.Webhook.URL); err == nil {
			return t, nil
		}
	}
	return nil, errors.New("--demo needs an enabled trigger whose webhook URL points at this machine (http://127.0.0.1:PORT/...), like low_stock in the repository's triggers.yaml")
}

// receiverCheck says, for dev's banner, what the demo receiver checks the
// signature of trigger t's deliveries with: t's own secrets, which are the
// demo secret only in the built-in demo configuration, or nothing when t
// has none. path is the configuration's file (demo.ConfigName for the
// built-in one).
func receiverCheck(path string, t *triggers.Trigger) string {
	n := len(t.Webhook.Secrets)
	switch {
	case n == 0:
		return fmt.Sprintf("checks no signature: trigger %s has no secret", t.Name)
	case path == demo.ConfigName:
		return "verifies its signature with the demo secret"
	case n == 1:
		return fmt.Sprintf("verifies its signature with trigger %s's secret from %s", t.Name, path)
	default:
		return fmt.Sprintf("verifies its signature with trigger %s's %d secrets from %s", t.Name, n, path)
	}
}

// demoURLEnv is the variable the demo configuration takes the demo
// trigger's webhook URL from.
const demoURLEnv = "CHANGEHOOK_DEMO_URL"

// demoPortAdvice tells how to get past the demo receiver's address being
// taken: setting CHANGEHOOK_DEMO_URL when trigger t's URL comes from it in
// cfg's file (the built-in demo configuration's does), else freeing the
// port or changing the URL in the file, which the variable would not do.
func demoPortAdvice(env Env, cfg *triggers.Config, t *triggers.Trigger) string {
	if demoURLFromEnv(env, cfg, t) {
		return "set " + demoURLEnv + " to a free address, e.g. http://127.0.0.1:9571/hooks/stock"
	}
	return fmt.Sprintf("the demo receiver listens on trigger %s's webhook URL %s: free that port or change the URL in %s",
		t.Name, triggers.RedactURL(t.Webhook.URL), cfg.Path)
}

// demoURLFromEnv reports whether trigger t's webhook URL changes with
// CHANGEHOOK_DEMO_URL: cfg's file read again with the variable set to
// another address.
func demoURLFromEnv(env Env, cfg *triggers.Config, t *triggers.Trigger) bool {
	const probe = "http://127.0.0.1:1/changehook-demo-url-probe"
	lookup := func(k string) (string, bool) {
		if k == demoURLEnv {
			return probe, true
		}
		return env.LookupEnv(k)
	}
	var again *triggers.Config
	var err error
	if cfg.Path == demo.ConfigName {
		again, err = triggers.ParseWith(demo.ConfigName, demo.Config, lookup, devOptions)
	} else {
		again, err = triggers.LoadWith(cfg.Path, lookup, devOptions)
	}
	if err != nil {
		return false
	}
	for _, u := range again.Triggers {
		if u.Name == t.Name {
			return u.Webhook.URL != t.Webhook.URL
		}
	}
	return false
}

// receiverAddr returns the loopback host:port of a webhook URL.
func receiverAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return "", errors.New("demo webhook URL must be a plain http URL")
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	if remote, err := isRemote(addr); err != nil || remote {
		return "", fmt.Errorf("demo webhook URL %s is not a loopback address", triggers.RedactURL(raw))
	}
	return addr, nil
}

// waitReady polls the runner until every stream is open (true), ctx ends
// or limit passes (false; 0 means no limit).
func waitReady(ctx context.Context, r *runner.Runner, limit time.Duration) bool {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !r.Ready() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

func describeMatch(t *triggers.Trigger) string {
	if t.Match == nil {
		return "any change"
	}
	return extJSON(t.Match)
}

// flagSet reports whether any of the named flags was given on the command
// line.
func flagSet(fs *flag.FlagSet, names ...string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(names, f.Name) {
			set = true
		}
	})
	return set
}

// devServable returns an error naming every enabled trigger whose match
// uses an operator devdb does not evaluate ($geoWithin, $geoIntersects,
// $sampleRate): devdb would refuse its change stream, so the trigger would
// deliver nothing. MongoDB runs it; dev cannot.
func devServable(cfg *triggers.Config) error {
	var bad []string
	for _, t := range cfg.Triggers {
		if ops := t.UnevaluatedMatchOperators(); t.Enabled && len(ops) > 0 {
			bad = append(bad, fmt.Sprintf("trigger %s: match uses %s", t.Name, strings.Join(ops, ", ")))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("check triggers for devdb: %s, which MongoDB evaluates but devdb does not, so devdb cannot serve the change stream; "+
		"run it against MongoDB (changehook run), or set enabled: false on it for dev", strings.Join(bad, "; "))
}
