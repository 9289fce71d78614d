//go:build !unix

package cli

import (
	"errors"
	"os"
	"time"
)

// defaultRuntimeDir is the runtime file's directory when neither
// Env.RuntimeDir nor $XDG_RUNTIME_DIR names one: the user's temporary
// directory.
func defaultRuntimeDir() string { return os.TempDir() }

// private cannot check ownership here: it accepts anything but a symbolic
// link.
func private(fi os.FileInfo) error {
	if fi.Mode()&os.ModeSymlink != 0 {
		return errors.New("it is a symbolic link")
	}
	return nil
}

// lockFile creates path; without flock nothing is locked (and nothing is
// reaped).
func lockFile(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) }

// tryLockStale cannot tell without flock.
func tryLockStale(string) (stale, ok bool) { return false, false }

// lockWait creates path; without flock nothing is locked, so devs
// recording themselves at the same moment are not serialised here.
func lockWait(path string, _ time.Duration, _ func()) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return func() { _ = f.Close() }, nil
}
