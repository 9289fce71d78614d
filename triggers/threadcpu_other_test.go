//go:build !linux

package triggers

import "time"

// onThreadCPU runs f and returns the time it took on the clock (a thread's
// CPU time is read on Linux only).
func onThreadCPU(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}
