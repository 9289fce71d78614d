//go:build unix

package cli

import (
	"errors"
	"os"
	"syscall"
)

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
