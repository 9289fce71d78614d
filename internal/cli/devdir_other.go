//go:build !unix

package cli

import "os"

// lockFile creates path; without flock nothing is locked (and nothing is
// reaped).
func lockFile(path string) (*os.File, error) { return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600) }

// tryLockStale cannot tell without flock.
func tryLockStale(string) (stale, ok bool) { return false, false }
