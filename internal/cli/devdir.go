package cli

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// devDirPrefix names dev's temporary data directories in the system's
// temporary directory.
const devDirPrefix = "changehook-dev-"

// devDirLock is the file in a dev data directory that its dev process keeps
// locked while it runs (where flock exists): a directory whose lock can be
// taken belongs to a dev that is gone.
const devDirLock = "changehook-dev.lock"

// devDirGrace spares directories younger than this whose lock file does not
// exist yet (a dev that is starting).
const devDirGrace = time.Minute

// devDir is dev's temporary data directory, removed on every exit path: by
// remove on a normal return, an error or a panic in dev's goroutine; by the
// forced-exit hook on a second SIGINT/SIGTERM; and, when the process dies
// without running either (SIGKILL, a panic in another goroutine), by the
// next dev, which reaps directories whose owner is gone.
type devDir struct {
	path   string
	lock   *os.File // held while dev runs (nil where flock is unavailable)
	once   sync.Once
	unhook func()
}

// newDevDir reaps the leftovers of dead devs in tmp ("" : os.TempDir())
// and creates a new directory there, locked and registered for forced exit.
func newDevDir(tmp string, log *slog.Logger) (*devDir, error) {
	if tmp == "" {
		tmp = os.TempDir()
	}
	reapDevDirs(tmp, log)
	path, err := os.MkdirTemp(tmp, devDirPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("create the temporary data directory: %w", err)
	}
	d := &devDir{path: path}
	if d.lock, err = lockFile(filepath.Join(path, devDirLock)); err != nil {
		_ = os.RemoveAll(path)
		return nil, fmt.Errorf("lock the temporary data directory: %w", err)
	}
	d.unhook = atForcedExit(d.remove)
	return d, nil
}

// remove deletes the directory (once; later calls do nothing).
func (d *devDir) remove() {
	d.once.Do(func() {
		if d.unhook != nil {
			d.unhook()
		}
		if d.lock != nil {
			_ = d.lock.Close()
		}
		_ = os.RemoveAll(d.path)
	})
}

// reapDevDirs removes the dev data directories in tmp whose dev is gone:
// their lock file can be locked (its holder died), or they have none and
// are older than devDirGrace.
func reapDevDirs(tmp string, log *slog.Logger) {
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), devDirPrefix) {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		stale, ok := staleDevDir(dir)
		if !ok || !stale {
			continue
		}
		if err := os.RemoveAll(dir); err == nil {
			log.Info("removed the data directory of a dev that did not exit cleanly", "dir", dir)
		}
	}
}

// staleDevDir reports whether dir's dev is gone; ok is false when that
// cannot be told here (no flock).
func staleDevDir(dir string) (stale, ok bool) {
	lockPath := filepath.Join(dir, devDirLock)
	if _, err := os.Stat(lockPath); err != nil {
		info, err := os.Stat(dir)
		return err == nil && time.Since(info.ModTime()) > devDirGrace, true
	}
	return tryLockStale(lockPath)
}

// forcedExit holds the cleanups that must run even when the process is
// ended at once (a second SIGINT/SIGTERM).
var forcedExit struct {
	mu   sync.Mutex
	next int
	fns  map[int]func()
}

// atForcedExit registers f for ForcedExit and returns its unregistration.
func atForcedExit(f func()) (unregister func()) {
	forcedExit.mu.Lock()
	defer forcedExit.mu.Unlock()
	if forcedExit.fns == nil {
		forcedExit.fns = map[int]func(){}
	}
	id := forcedExit.next
	forcedExit.next++
	forcedExit.fns[id] = f
	return func() {
		forcedExit.mu.Lock()
		defer forcedExit.mu.Unlock()
		delete(forcedExit.fns, id)
	}
}

// ForcedExit runs the cleanups of the commands still running that must not
// be skipped when the process exits at once (dev's temporary data
// directory). cmd/changehook calls it on a second SIGINT/SIGTERM before
// exiting.
func ForcedExit() {
	forcedExit.mu.Lock()
	fns := make([]func(), 0, len(forcedExit.fns))
	for _, f := range forcedExit.fns {
		fns = append(fns, f)
	}
	forcedExit.mu.Unlock()
	for _, f := range fns {
		f()
	}
}
