//go:build !unix

package storage

import "os"

// lockDir does nothing where flock is unavailable: bbolt's own file lock
// still refuses a second process (after Options' open timeout).
func lockDir(string) (*os.File, error) { return nil, nil }
