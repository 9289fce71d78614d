package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/changehook/changehook/internal/demo"
	"github.com/changehook/changehook/triggers"
)

// devRuntimeFile is the name of the file a running `changehook dev`
// records itself in, so that dlq, checkpoints and the other state commands
// find its devdb without -c or MONGODB_URI.
const devRuntimeFile = "changehook-dev.json"

// devRuntime is the content of the runtime file.
type devRuntime struct {
	// PID is the dev process; the file is ignored when it is not alive.
	PID int `json:"pid"`
	// URI is devdb's connection string (loopback, no credentials).
	URI string `json:"uri"`
	// Config is the absolute path of the configuration dev runs, or
	// demo.ConfigName for the built-in demo configuration.
	Config string `json:"config"`
	// Admin is the admin server's URL (console and API), recorded once it
	// listens; empty when it is off.
	Admin string `json:"admin,omitempty"`
}

// runtimeDir is where the runtime file lives: Env.RuntimeDir,
// $XDG_RUNTIME_DIR, or a directory of this user's own in the system's
// temporary directory (defaultRuntimeDir).
func (e Env) runtimeDir() string {
	if e.RuntimeDir != "" {
		return e.RuntimeDir
	}
	if d, ok := e.LookupEnv("XDG_RUNTIME_DIR"); ok && d != "" {
		return d
	}
	return defaultRuntimeDir()
}

// otherDevError is writeDevRuntime's error when the runtime file records
// another dev process that is still alive: it is left as it is, so the
// other commands keep reaching that one.
type otherDevError struct {
	// other is the recorded dev.
	other devRuntime
	// path is the runtime file.
	path string
}

// Error names the recorded dev and says that the commands keep using it.
func (e *otherDevError) Error() string {
	return fmt.Sprintf("another 'changehook dev' (pid %d, devdb %s, %s) is recorded in %s and still running: "+
		"the other commands keep using that one", e.other.PID, e.other.URI, e.other.Config, e.path)
}

// devRuntimeLock is the file beside the runtime file whose flock a dev
// holds while it reads and then replaces or removes the record, so that
// two devs finding the same stale record cannot both replace it (one
// would remove the record the other has just written). It is never
// removed: a lock file removed and created again could be locked by two
// processes at once.
const devRuntimeLock = devRuntimeFile + ".lock"

// devLockWait bounds the wait for devRuntimeLock: a dev that cannot take
// it in that time does not record itself (it says why), and one exiting
// leaves its record, stale, for the next dev to replace.
const devLockWait = 5 * time.Second

// writeDevRuntime records rt, a running dev, in the runtime file (this
// process's pid; Config made absolute) and returns a function that removes
// it again (only while it still names this process). It never replaces a
// record of another process that is alive: it then returns an
// *otherDevError and writes nothing. A record of a process that is gone,
// or one readDevRuntime would not trust, is replaced; this process's own
// is rewritten. Devs recording themselves at once do so one after the
// other (devRuntimeLock), so exactly one of them replaces a stale record.
func writeDevRuntime(env Env, rt devRuntime) (func(), error) {
	return recordDev(env, rt, os.Getpid(), recordHooks{})
}

// recordHooks are recordDev's seams for tests, which hold a dev at a point
// of its recording; nil in production.
type recordHooks struct {
	// lockBusy is called when another process holds devRuntimeLock,
	// before waiting for it.
	lockBusy func()
	// replacing is called, holding the lock, when the record is about to
	// be written (no live record of another process is there).
	replacing func()
}

// recordDev is writeDevRuntime for the dev process pid.
func recordDev(env Env, rt devRuntime, pid int, hooks recordHooks) (func(), error) {
	if rt.Config != demo.ConfigName {
		if abs, err := filepath.Abs(rt.Config); err == nil {
			rt.Config = abs
		}
	}
	rt.PID = pid
	b, err := json.Marshal(rt)
	if err != nil {
		return nil, err
	}
	dir := env.runtimeDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("record dev runtime file: %w", err)
	}
	// Other commands trust what the file names (a configuration whose
	// ${VAR}s they expand from their environment): it must be where no
	// other user can put or replace it.
	if fi, err := os.Lstat(dir); err != nil {
		return nil, fmt.Errorf("record dev runtime file: %w", err)
	} else if err := private(fi); err != nil {
		return nil, fmt.Errorf("record dev runtime file: directory %s: %w; set XDG_RUNTIME_DIR to a directory of your own", dir, err)
	}
	path := filepath.Join(dir, devRuntimeFile)
	lockPath := filepath.Join(dir, devRuntimeLock)
	tmp := path + fmt.Sprintf(".%d.tmp", pid)
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return nil, fmt.Errorf("record dev runtime file: %w", err)
	}
	defer func() { _ = os.Remove(tmp) }() // renamed by then, or not to be used

	unlock, err := lockWait(lockPath, devLockWait, hooks.lockBusy)
	if err != nil {
		return nil, fmt.Errorf("record dev runtime file: lock %s: %w", lockPath, err)
	}
	defer unlock()
	// Holding the lock, what is read here stays until the rename: every
	// dev replaces or removes the record only while holding it.
	if cur, alive := readDevRuntime(env); alive && cur.PID != pid {
		return nil, &otherDevError{other: cur, path: path}
	}
	if hooks.replacing != nil {
		hooks.replacing()
	}
	// A record of a process that is gone, one not to trust (a link is
	// replaced, not followed), this process's own, or none: replace it
	// at once, so that a reader sees the old record or the new one.
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("record dev runtime file: %w", err)
	}
	forget := func() {
		unlock, err := lockWait(lockPath, devLockWait, nil)
		if err != nil {
			return // left as a stale record, replaced by the next dev
		}
		defer unlock()
		if cur, ok := readDevRuntime(env); ok && cur.PID == pid {
			_ = os.Remove(path)
		}
	}
	return forget, nil
}

// readDevRuntime returns the running dev recorded in the runtime file, if
// the file exists, is this user's own and writable by no one else (see
// private), and its process is alive. A file another user could have
// written is ignored: it would point this user's commands at a
// configuration and a server of that user's choosing.
func readDevRuntime(env Env) (devRuntime, bool) {
	path := filepath.Join(env.runtimeDir(), devRuntimeFile)
	fi, err := os.Lstat(path)
	if err != nil || !fi.Mode().IsRegular() || private(fi) != nil {
		return devRuntime{}, false
	}
	rt, ok := readRecord(path, fi)
	return rt, ok && processAlive(rt.PID)
}

// readRecord reads the runtime record at path, the regular file fi that
// Lstat returned (never opened through a link: it could name a device or
// a pipe), at most 64 KiB of it; ok is false when it cannot be read, was
// replaced since fi, or holds no record.
func readRecord(path string, fi os.FileInfo) (rt devRuntime, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return rt, false
	}
	defer f.Close()
	if opened, err := f.Stat(); err != nil || !os.SameFile(fi, opened) {
		return rt, false // replaced since it was checked
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil || json.Unmarshal(b, &rt) != nil || rt.PID <= 0 || rt.URI == "" {
		return devRuntime{}, false
	}
	return rt, true
}

// devRuntimeDistrusted says why readDevRuntime ignores the runtime file
// of a dev whose process is alive ("" when there is none, or it is
// trusted), for the error of a command that found no dev to use: without
// it, "no 'changehook dev' is running" contradicts the dev the user sees.
func devRuntimeDistrusted(env Env) string {
	path := filepath.Join(env.runtimeDir(), devRuntimeFile)
	fi, err := os.Lstat(path)
	if err != nil {
		return ""
	}
	why := private(fi)
	if why == nil && !fi.Mode().IsRegular() {
		why = errors.New("it is not a regular file")
	}
	if why == nil {
		return ""
	}
	if fi.Mode().IsRegular() {
		if rt, ok := readRecord(path, fi); ok && !processAlive(rt.PID) {
			return "" // the record of a dev that is gone
		}
	}
	return fmt.Sprintf("the record %s of a running 'changehook dev' is ignored: %v, so another user could have written it "+
		"(remove it, and start dev again, or pass -c FILE with MONGODB_URI)", path, why)
}

// processAlive reports whether a process with pid exists (signal 0).
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// devConfig loads the configuration of the running dev rt (its file, or
// the built-in demo configuration) as dev reads it, with rt's devdb as
// mongodb.uri. Its errors are triggers.Load's (configError explains them).
// The file's ${VAR}s are read from this process's environment (env), not
// dev's, which the record never holds (it may hold secrets): vars names
// the variables it read, in the order first read, for the note saying so.
func devConfig(rt devRuntime, env Env, opts triggers.Options) (cfg *triggers.Config, vars []string, err error) {
	opts.IgnoreMongoURI = true // as dev reads it
	lookup := func(k string) (string, bool) {
		if k != "MONGODB_URI" && !slices.Contains(vars, k) { // dev ignores MONGODB_URI
			vars = append(vars, k)
		}
		return env.LookupEnv(k)
	}
	if rt.Config == demo.ConfigName {
		cfg, err = triggers.ParseWith(demo.ConfigName, demo.Config, lookup, opts)
	} else {
		cfg, err = triggers.LoadWith(rt.Config, lookup, opts)
	}
	if err != nil {
		return nil, vars, err
	}
	cfg.MongoDB.URI = rt.URI
	return cfg, vars, nil
}

// devVarsNote ends the note a command prints when it uses the running
// dev's configuration: the variables the file read (devConfig's vars),
// which come from this terminal's environment, or "" when it read none.
func devVarsNote(vars []string) string {
	if len(vars) == 0 {
		return ""
	}
	refs := make([]string, len(vars))
	for i, v := range vars {
		refs[i] = "${" + v + "}"
	}
	if len(refs) == 1 {
		return fmt.Sprintf("; its %s is read from this terminal's environment, not dev's: set it here as for dev", refs[0])
	}
	return fmt.Sprintf("; its %s are read from this terminal's environment, not dev's: set them here as for dev", strings.Join(refs, ", "))
}

// stateConfig loads the configuration of a state command (dlq,
// checkpoints, ...). Without -c and without MONGODB_URI, a running
// `changehook dev` recorded in the runtime file is used: its configuration
// and its devdb. Otherwise the file given by -c (default triggers.yaml),
// read with opts.
func stateConfig(fs *flag.FlagSet, path string, env Env, opts triggers.Options) (*triggers.Config, error) {
	devWanted := false
	if !flagSet(fs, "c", "config") {
		if _, set := env.LookupEnv("MONGODB_URI"); !set {
			devWanted = true
			if rt, ok := readDevRuntime(env); ok {
				cfg, vars, err := devConfig(rt, env, opts)
				fmt.Fprintf(env.Stderr, "using the running 'changehook dev' (pid %d): %s, %s%s\n", rt.PID, rt.URI, rt.Config, devVarsNote(vars))
				if err != nil {
					return nil, configError(rt.Config, err)
				}
				return cfg, nil
			}
		}
	}
	return loadLocal(path, devWanted, opts, env)
}

// loadLocal is loadConfig; devWanted: a missing file's error adds that no
// 'changehook dev' is running either.
func loadLocal(path string, devWanted bool, opts triggers.Options, env Env) (*triggers.Config, error) {
	cfg, err := triggers.LoadWith(path, env.LookupEnv, opts)
	if err != nil {
		if devWanted && errors.Is(err, os.ErrNotExist) {
			if why := devRuntimeDistrusted(env); why != "" {
				return nil, fmt.Errorf("%w; %s", missingConfig(path, false), why)
			}
			return nil, missingConfig(path, true)
		}
		return nil, configError(path, err)
	}
	return cfg, nil
}

// fileConfigDev returns the running dev whose configuration the commands
// that only read a configuration (test, validate) use: when -c is not
// given and path (the default, ./triggers.yaml) does not exist. wanted
// reports whether one would have been used.
func fileConfigDev(fs *flag.FlagSet, path string, env Env) (rt devRuntime, ok, wanted bool) {
	if flagSet(fs, "c", "config") {
		return devRuntime{}, false, false
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		return devRuntime{}, false, false
	}
	rt, ok = readDevRuntime(env)
	return rt, ok, true
}

// fileConfigOfDev is devConfig for a command that only reads the
// configuration (fileConfigDev found rt): it says on stderr that it uses
// the running dev's, and which variables come from this terminal.
func fileConfigOfDev(rt devRuntime, path string, env Env, opts triggers.Options) (*triggers.Config, error) {
	cfg, vars, err := devConfig(rt, env, opts)
	fmt.Fprintf(env.Stderr, "no %s here: using the configuration of the running 'changehook dev' (pid %d): %s%s\n", path, rt.PID, rt.Config, devVarsNote(vars))
	return cfg, err
}

// fileConfig loads the configuration of a command that only reads it
// (test): the file given by -c; without -c, ./triggers.yaml or, when it
// does not exist, the configuration of a running 'changehook dev' (which
// stderr names). It never connects, so mongodb.uri is not read (its
// ${VAR}s need not be set), as dev does not read it.
func fileConfig(fs *flag.FlagSet, path string, env Env) (*triggers.Config, error) {
	return fileConfigWith(fs, path, env, triggers.Options{})
}

// fileConfigWith is fileConfig reading the file with opts (mongodb.uri is
// never read).
func fileConfigWith(fs *flag.FlagSet, path string, env Env, opts triggers.Options) (*triggers.Config, error) {
	rt, ok, wanted := fileConfigDev(fs, path, env)
	if ok {
		cfg, err := fileConfigOfDev(rt, path, env, opts)
		if err != nil {
			return nil, configError(rt.Config, err)
		}
		return cfg, nil
	}
	opts.IgnoreMongoURI = devOptions.IgnoreMongoURI
	return loadLocal(path, wanted, opts, env)
}

// devRunning returns the running `changehook dev` recorded in the runtime
// file when it runs the trigger named name (a trigger's name, not a
// partition's key) on the state database of cfg: its devdb is cfg's
// deployment (sameDevdb), and its configuration (else cfg, when it cannot
// be read here) has the trigger enabled with the same state database. A
// dev takes no leases, so the commands that rewrite checkpoints under the
// trigger's leases (checkpoints reset, repartition) would not see it
// otherwise, and it would overwrite what they wrote.
func devRunning(env Env, cfg *triggers.Config, name string) (devRuntime, bool) {
	rt, ok := readDevRuntime(env)
	if !ok || !sameDevdb(cfg.MongoDB.URI, rt.URI) {
		return devRuntime{}, false
	}
	devCfg, _, err := devConfig(rt, env, triggers.Options{})
	if err != nil {
		devCfg = cfg
	}
	if devCfg.State.Database != cfg.State.Database {
		return devRuntime{}, false
	}
	for _, t := range devCfg.Triggers {
		if t.Name == name && t.Enabled {
			return rt, true
		}
	}
	return devRuntime{}, false
}

// sameDevdb reports whether the MongoDB URI uri reaches the devdb at
// devURI: the same URI, or a plain mongodb:// URI with one host on the
// same port of a loopback address (devdb listens on loopback only, so
// 127.0.0.1 and localhost are the same server).
func sameDevdb(uri, devURI string) bool {
	if uri == devURI {
		return true
	}
	hostPort := func(s string) (string, string, bool) {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "mongodb" || strings.Contains(u.Host, ",") {
			return "", "", false
		}
		port := u.Port()
		if port == "" {
			port = "27017"
		}
		return u.Hostname(), port, true
	}
	h1, p1, ok1 := hostPort(uri)
	h2, p2, ok2 := hostPort(devURI)
	if !ok1 || !ok2 || p1 != p2 {
		return false
	}
	if h1 == h2 {
		return true
	}
	r1, err1 := isRemote(net.JoinHostPort(h1, p1))
	r2, err2 := isRemote(net.JoinHostPort(h2, p2))
	return err1 == nil && err2 == nil && !r1 && !r2
}
