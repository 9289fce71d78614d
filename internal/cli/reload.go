package cli

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/changehook/changehook/cluster"
	"github.com/changehook/changehook/internal/demo"
	"github.com/changehook/changehook/internal/metrics"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
)

// reloadTimeout bounds one reload (stopping changed triggers waits for
// their in-flight deliveries within the grace period).
const reloadTimeout = 2 * time.Minute

// watchDebounce coalesces the burst of events one save makes.
const watchDebounce = 250 * time.Millisecond

// watchRetryFirst and watchRetryMax bound the wait before --watch-config
// applies again a file whose reload did not finish (doubling from the
// first to the most).
const (
	watchRetryFirst = 2 * time.Second
	watchRetryMax   = time.Minute
)

// ReloadError is a rejected reload: the running configuration stays.
type ReloadError struct {
	// Problems are the configuration's problems as FILE:LINE:COL: message
	// (one entry with the error when the file could not be read).
	Problems []string
	err      error
}

// Error returns every problem, one per line.
func (e *ReloadError) Error() string {
	return "reload rejected, the running configuration stays: " + e.err.Error()
}

// ProblemList returns Problems (admin.ReloadProblems).
func (e *ReloadError) ProblemList() []string { return e.Problems }

// Unwrap returns the load error.
func (e *ReloadError) Unwrap() error { return e.err }

// reloader re-reads the configuration file and applies its triggers to the
// running runner (and, clustered, to the lease driver and the membership).
// One reload runs at a time.
type reloader struct {
	mu   sync.Mutex
	path string
	env  Env
	opts triggers.Options // how the file is read (dev: devOptions)
	// check, when set, refuses a configuration the process could not run
	// although it is valid (dev: devServable, a trigger devdb cannot serve).
	check func(*triggers.Config) error
	log   *slog.Logger
	cfg   *triggers.Config // the running configuration
	// started is the configuration the process started with: its
	// settings outside the triggers are those in force until a restart.
	started *triggers.Config
	rn      *runner.Runner
	st      *store.Store          // the state database (nil: history settings are not reloaded)
	reg     prometheus.Registerer // receives the counters of a history writer a reload starts
	mgr     *cluster.Manager      // nil: not clustered
	driver  *cluster.Driver       // nil: not clustered
	reloads *prometheus.CounterVec
	// driven is the configuration whose triggers this member announces
	// (mgr.SetTriggers) and drives (driver.Add): cfg, or after a reload
	// that did not finish the definitions the runner was left with (see
	// runnerHas).
	driven *triggers.Config
	// poolCap is the connection pool's size, fixed when the client was
	// made (0: unlimited or unknown). A reload that needs more change
	// streams than it holds (beside poolHeadroom) is refused: waiting
	// streams would starve lease renewals and checkpoints.
	poolCap int
	// current is cfg for readers outside the reload lock (the admin API's
	// dead-letter replays), so they never wait for a reload in progress.
	current atomic.Pointer[triggers.Config]
	// watchReload is what watchFile calls to reload (nil: Reload), and
	// watchRetry its first wait before applying again a file whose
	// reload did not finish (0: watchRetryFirst); tests set them.
	watchReload func(ctx context.Context, why string) (runner.ReloadResult, error)
	watchRetry  time.Duration
}

// Config returns the running configuration: the one loaded at start, or
// the last one a reload applied.
func (rl *reloader) Config() *triggers.Config { return rl.current.Load() }

// newReloader prepares the reloads of cfg's file; reg receives
// changehook_config_reloads_total{result} (both results at zero from the
// start).
func newReloader(path string, env Env, log *slog.Logger, cfg *triggers.Config, rn *runner.Runner, reg prometheus.Registerer) *reloader {
	c := metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "changehook_config_reloads_total",
		Help: "Configuration reloads (SIGHUP, --watch-config, POST /api/reload), by result: success or failure.",
	}, []string{"result"}))
	c.WithLabelValues("success")
	c.WithLabelValues("failure")
	rl := &reloader{path: path, env: env, log: log, cfg: cfg, started: cfg, driven: cfg, rn: rn, reg: reg, reloads: c}
	rl.current.Store(cfg)
	return rl
}

// Reload re-reads and validates the file and applies it (see
// runner.Runner.Reload); why names the trigger of the reload in the logs.
// On any problem the running configuration stays, every problem is logged
// as FILE:LINE:COL and a *ReloadError is returned.
func (rl *reloader) Reload(ctx context.Context, why string) (runner.ReloadResult, error) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	cfg, pinned, err := rl.load()
	if err != nil {
		rl.reloads.WithLabelValues("failure").Inc()
		var re *ReloadError
		errors.As(err, &re)
		for _, p := range re.Problems {
			rl.log.Error("reload rejected: configuration problem; the running configuration stays", "by", why, "problem", p)
		}
		return runner.ReloadResult{}, err
	}
	if err := rl.fitsPool(cfg); err != nil {
		rl.reloads.WithLabelValues("failure").Inc()
		rl.log.Error("reload rejected; the running configuration stays", "by", why, "problem", err.Error())
		return runner.ReloadResult{}, &ReloadError{Problems: []string{err.Error()}, err: err}
	}
	// Against the start's settings: a restart the last reload asked for is
	// still due until it happens.
	diff := append(pinned, restartOnly(rl.started, cfg)...)
	if len(diff) > 0 {
		rl.log.Warn("reload applies the triggers only; these settings changed and need a restart", "by", why, "settings", diff)
	}
	if rl.driver != nil {
		// Clustered, the lease loops of removed and changed triggers stop
		// them first: a changed trigger's new definition must not run under
		// its lease before this member has published it and is still the
		// trigger's preferred owner with it (see cluster.Driver). Add
		// starts them again once the runner has the new definitions.
		if err := rl.driver.Retain(ctx, cfg); err != nil {
			rl.driver.Add(rl.driven) // the runner's triggers go on
			rl.reloads.WithLabelValues("failure").Inc()
			err = fmt.Errorf("reload: stop removed and changed triggers: %w", err)
			// Logged like every other failure: SIGHUP and --watch-config
			// have nobody else to tell.
			rl.log.Error("reload did not finish; the running configuration stays", "by", why, "error", err)
			return runner.ReloadResult{}, err
		}
	}
	res, err := rl.rn.Reload(ctx, cfg)
	if rl.mgr != nil {
		// The hashes this member announces, and those its lease loops run
		// under, are those of the definitions the runner has: after a
		// reload that did not finish, a changed trigger it did not get to
		// keeps its old definition, and must go on under its old hash
		// (the next reload then changes it as this one should have).
		driven := cfg
		if err != nil {
			driven = rl.runnerHas(cfg, why)
		}
		rl.mgr.SetTriggers(driven)
		rl.driver.Add(driven)
		rl.driven = driven
	}
	res.RestartNeeded = diff
	if err != nil {
		rl.reloads.WithLabelValues("failure").Inc()
		rl.log.Error("reload did not finish", "by", why, "error", err)
		return res, fmt.Errorf("reload: %w", err)
	}
	rl.applyHistory(ctx, cfg.History, why)
	rl.cfg = cfg
	rl.current.Store(cfg)
	rl.reloads.WithLabelValues("success").Inc()
	rl.log.Info("configuration reloaded", "by", why, "file", rl.path, "added", res.Added, "removed", res.Removed,
		"changed", res.Changed, "unchanged", len(res.Unchanged))
	// The warnings of the file now running, as at the start: a reload is
	// where an edit's likely mistake would otherwise go unseen.
	logWarnings(rl.log.With("by", why), cfg)
	return res, nil
}

// runnerHas returns the configuration the runner has after its reload to
// cfg did not finish: each of its triggers as cfg defines it when every
// unit has cfg's definition hash (the reload got to it, or did not change
// it), else as rl.driven does when every unit has that one's. The hash is
// cluster.DefinitionHash, the one the lease loops compare: secret values
// count, and a partition's unit hashes as its trigger; what it leaves out
// (the network section) the next reload's runner step applies. A trigger
// whose units have neither, or both kinds (the reload stopped part way
// through its partitions), is left out, and logged: this member neither
// announces nor runs it until a reload finishes.
func (rl *reloader) runnerHas(cfg *triggers.Config, why string) *triggers.Config {
	units := rl.rn.Units()
	has := func(t *triggers.Trigger) bool {
		want, got := t.Units(), units[t.Name]
		if len(want) != len(got) {
			return false
		}
		h := cluster.DefinitionHash(t)
		for i, u := range got {
			if u.Key() != want[i].Key() || cluster.DefinitionHash(u) != h {
				return false
			}
		}
		return true
	}
	out := *cfg
	out.Triggers = nil
	for _, t := range slices.Concat(cfg.Triggers, rl.driven.Triggers) {
		if _, left := units[t.Name]; left && has(t) {
			out.Triggers = append(out.Triggers, t)
			delete(units, t.Name)
		}
	}
	for name := range units {
		rl.log.Error("reload did not finish while it changed the trigger's partitions one by one: this member neither announces nor runs it until a reload finishes",
			"by", why, "trigger", name)
	}
	return &out
}

// applyHistory applies a reloaded history section h: when it differs from
// the running one, a writer for h (none when disabled) replaces the
// runner's, and the replaced writer is closed once it has written what it
// was given, so nothing is lost or leaked; running triggers record into
// the new writer from their next attempt, without a restart. A changed
// retention also changes the attempts collection's TTL index. rl.mu must
// be held.
func (rl *reloader) applyHistory(ctx context.Context, h triggers.HistoryConfig, why string) {
	old := rl.cfg.History
	if rl.st == nil || h == old {
		return
	}
	if h.Retention != old.Retention {
		rl.st.SetHistoryRetention(h.Retention)
		if err := rl.st.EnsureIndexes(ctx); err != nil {
			rl.log.Warn("reload: cannot change the delivery history's TTL index; the writer still deletes records past the new retention", "by", why, "error", err)
		}
	}
	closeHistory(ctx, rl.log, rl.rn.SetHistory(newHistoryWriter(rl.st, h, rl.reg, rl.log)))
	rl.log.Info("delivery history reconfigured by reload", "by", why, "enabled", h.Enabled, "retention", h.Retention.String(), "max_records", h.MaxRecords)
}

// fitsPool reports whether cfg's change streams fit the connection pool made
// at start. When the URI set maxPoolSize the user chose the size: a reload
// that exceeds it is applied with a warning, as at start.
func (rl *reloader) fitsPool(cfg *triggers.Config) error {
	need := streamCount(cfg) + poolHeadroom
	if rl.poolCap <= 0 || need <= rl.poolCap {
		return nil
	}
	if o := options.Client().ApplyURI(rl.cfg.MongoDB.URI); o.MaxPoolSize != nil {
		rl.log.Warn("maxPoolSize in the MongoDB URI is smaller than the change streams plus headroom: every waiting change stream holds a connection, so state writes (checkpoints, leases) may wait for one",
			"max_pool_size", rl.poolCap, "change_streams", streamCount(cfg), "recommended_at_least", need)
		return nil
	}
	return fmt.Errorf("the new configuration keeps %d change streams open (one per trigger partition, one for controls and one for dead letters), but the connection pool was sized for at most %d at start (room for %d streams); restart changehook to apply it, or set maxPoolSize in the MongoDB URI",
		streamCount(cfg), rl.poolCap, rl.poolCap-poolHeadroom)
}

// load reads and validates the file. The running MongoDB URI (dev
// overrides it with its devdb) and state database stay, the triggers' too
// (each filters the state database out of a deployment-wide stream: the
// new name would let it see, and deliver, changehook's own writes to the
// one in use). pinned names those of them the file changes ("mongodb.uri",
// never for dev, which does not read it, and "state").
func (rl *reloader) load() (cfg *triggers.Config, pinned []string, err error) {
	if rl.path == demo.ConfigName {
		err := errors.New("the built-in demo configuration cannot be reloaded; run dev -c FILE to reload a file")
		return nil, nil, &ReloadError{Problems: []string{err.Error()}, err: err}
	}
	cfg, err = triggers.LoadWith(rl.path, rl.env.LookupEnv, rl.opts)
	if err != nil {
		re := &ReloadError{err: err}
		var ve *triggers.ValidationError
		if errors.As(err, &ve) {
			for _, p := range ve.Problems {
				re.Problems = append(re.Problems, p.String())
			}
		} else {
			re.Problems = []string{err.Error()}
		}
		return nil, nil, re
	}
	if rl.check != nil {
		if err := rl.check(cfg); err != nil {
			return nil, nil, &ReloadError{Problems: []string{err.Error()}, err: err}
		}
	}
	if !rl.opts.IgnoreMongoURI && cfg.MongoDB.URI != rl.cfg.MongoDB.URI {
		pinned = append(pinned, "mongodb.uri")
	}
	cfg.MongoDB.URI = rl.cfg.MongoDB.URI
	if cfg.State != rl.started.State {
		pinned = append(pinned, "state")
	}
	cfg.State = rl.started.State
	for _, t := range cfg.Triggers {
		t.StateDatabase = cfg.State.Database
	}
	return cfg, pinned, nil
}

// restartOnly lists the settings outside the triggers that differ between
// the configuration the process started with and the new one (the history
// section, which a reload applies, is not among them).
func restartOnly(old, cur *triggers.Config) []string {
	var out []string
	same := func(a, b any) bool {
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		return string(ja) == string(jb)
	}
	if !same(old.State, cur.State) {
		out = append(out, "state")
	}
	if !same(old.Admin, cur.Admin) || old.Admin.Token.Reveal() != cur.Admin.Token.Reveal() {
		out = append(out, "admin")
	}
	if !same(old.Cluster, cur.Cluster) {
		out = append(out, "cluster")
	}
	if !same(old.Limits, cur.Limits) {
		out = append(out, "limits")
	}
	if !same(old.Checkpoint, cur.Checkpoint) {
		out = append(out, "checkpoint")
	}
	if !same(old.Log, cur.Log) {
		out = append(out, "log")
	}
	return out
}

// watchSignals reloads on every reload request from env.WatchReload (SIGHUP)
// until ctx ends.
func (rl *reloader) watchSignals(ctx context.Context, requests <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-requests:
			_, _ = rl.Reload(ctx, "SIGHUP")
		}
	}
}

// watchFile reloads when the configuration file's content changes, until
// ctx ends. It watches the file's directory, so that editors that save by
// writing a new file and renaming it over the old one are seen, and so
// that a file reached through a symbolic link that is switched (a
// Kubernetes ConfigMap volume: triggers.yaml -> ..data/triggers.yaml,
// whose ..data link is replaced on an update, an event that names
// neither the file nor its directory's entry for it) is seen too: after
// any burst of events in the directory (and in the directory the link
// leads to) the file is read, and only a content unlike the last one
// read reloads.
//
// A reload that did not finish (a trigger's stop outlasted the reload's
// deadline; clustered, the state database did not answer) is tried again,
// after 2 s and then twice as long each time up to a minute, for as long
// as the file keeps that content: nothing else would apply it, and in a
// cluster the other members may have. A rejected configuration is not:
// the file must change.
func (rl *reloader) watchFile(ctx context.Context) error {
	if rl.path == demo.ConfigName {
		return errors.New("--watch-config needs a configuration file: pass -c FILE")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch configuration: %w", err)
	}
	abs, err := filepath.Abs(rl.path)
	if err != nil {
		_ = w.Close()
		return fmt.Errorf("watch configuration: %w", err)
	}
	dirs := []string{filepath.Dir(abs)}
	if real, err := filepath.EvalSymlinks(abs); err == nil && filepath.Dir(real) != dirs[0] && !strings.HasPrefix(filepath.Base(filepath.Dir(real)), "..") {
		// A link to a file elsewhere (not a ConfigMap's timestamped
		// directory, which is replaced, not changed, on an update).
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, dir := range dirs {
		if err := w.Add(dir); err != nil {
			_ = w.Close()
			return fmt.Errorf("watch configuration directory %s: %w", dir, err)
		}
	}
	reload := rl.watchReload
	if reload == nil {
		reload = rl.Reload
	}
	first := cmp.Or(rl.watchRetry, watchRetryFirst)
	last, _ := fileSum(abs)
	unreadable := "" // the error last warned about, until the file is read again
	go func() {
		defer w.Close()
		var timer *time.Timer
		var fire <-chan time.Time
		// retry fires when a reload that did not finish is due again;
		// backoff is the wait after the next failure.
		retry := time.NewTimer(time.Hour)
		retry.Stop()
		defer retry.Stop()
		backoff := first
		apply := func() {
			_, err := reload(ctx, "--watch-config")
			var rejected *ReloadError
			if err == nil || errors.As(err, &rejected) || ctx.Err() != nil {
				backoff = first
				return
			}
			rl.log.Warn("--watch-config: the reload did not finish; applying the file again later while its content stays", "retry_in", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, watchRetryMax)
		}
		for {
			select {
			case <-ctx.Done():
				if timer != nil {
					timer.Stop()
				}
				return
			case <-retry.C:
				if sum, err := fileSum(abs); err == nil && sum == last {
					apply()
				} // else changed or gone: its events reload it, or not
			case _, ok := <-w.Events:
				if !ok {
					return
				}
				if timer == nil {
					timer = time.NewTimer(watchDebounce)
				} else {
					timer.Reset(watchDebounce)
				}
				fire = timer.C
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				rl.log.Warn("watching the configuration file", "error", err)
			case <-fire:
				fire = nil
				sum, err := fileSum(abs)
				if err != nil {
					// Renamed away and not (yet) back: nothing to say. A
					// file there that cannot be read (permissions, a
					// directory) is said once: SIGHUP or the API would
					// answer with the same error.
					if !errors.Is(err, fs.ErrNotExist) && err.Error() != unreadable {
						rl.log.Warn("--watch-config: cannot read the configuration file; the running configuration stays", "error", err)
					}
					unreadable = err.Error()
					continue
				}
				unreadable = ""
				if sum == last {
					continue // unchanged
				}
				last = sum
				retry.Stop()
				backoff = first
				apply()
			}
		}
	}()
	return nil
}

// fileSum returns the SHA-256 of the file at path (through links), or why
// it cannot be read. It streams the file: its memory is bounded whatever
// the file's size.
func fileSum(path string) (string, error) {
	// Not opened unless a regular file: opening a named pipe blocks until
	// a writer comes (the reload then says what the file is).
	if fi, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("open configuration: %w", err)
	} else if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("read configuration %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("open configuration: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read configuration %s: %w", path, err)
	}
	return string(h.Sum(nil)), nil
}

// osWatchReload subscribes to SIGHUP: the channel receives one value per
// signal (coalesced while a reload is pending) until stop is called.
func osWatchReload() (requests <-chan struct{}, stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	out := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-sig:
				select {
				case out <- struct{}{}:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() {
			signal.Stop(sig)
			close(done)
		})
	}
}
