//go:build unix

package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// defaultRuntimeDir is the runtime file's directory when neither
// Env.RuntimeDir nor $XDG_RUNTIME_DIR names one: a directory of this user's
// own in the system's temporary directory (which every user can write to).
func defaultRuntimeDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("changehook-%d", os.Getuid()))
}

// private returns nil when fi, from os.Lstat, is not a symbolic link, is
// owned by this process's user and is writable by no one else; otherwise
// why it is not: another local user could have put it there.
func private(fi os.FileInfo) error {
	if fi.Mode()&os.ModeSymlink != 0 {
		return errors.New("it is a symbolic link")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("it is owned by user %d, not by this user (%d)", st.Uid, os.Getuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("other users can write to it (mode %v)", fi.Mode().Perm())
	}
	return nil
}

// lockFile creates path and takes an exclusive flock on it, held until the
// file is closed or the process ends.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// tryLockStale reports whether the lock at path is free (its holder is
// gone); ok is false when that cannot be told.
func tryLockStale(path string) (stale, ok bool) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, true
	}
	if err != nil {
		return false, false
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return true, true
}

// lockWait creates path (never through a symbolic link) and takes an
// exclusive flock on it, waiting while another process holds it for at
// most wait (devLockWait: a dev holds it for milliseconds, and one stopped
// while holding it must not hang every other dev); busy, when not nil, is
// called before waiting. unlock releases it.
func lockWait(path string, wait time.Duration, busy func()) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	fd := int(f.Fd())
	err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		if busy != nil {
			busy()
		}
		deadline := time.Now().Add(wait)
		for errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR) {
			if time.Now().After(deadline) {
				_ = f.Close()
				return nil, fmt.Errorf("another changehook dev has held it for over %s (stopped?)", wait)
			}
			time.Sleep(5 * time.Millisecond)
			err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() { _ = f.Close() }, nil // closing releases the lock
}
