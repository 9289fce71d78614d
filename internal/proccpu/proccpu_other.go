//go:build !unix

package proccpu

import "time"

// Self returns 0: the process's CPU time is not read on this platform.
func Self() time.Duration { return 0 }
