package triggers

import (
	"runtime"
	"syscall"
	"time"
)

// onThreadCPU runs f on one OS thread and returns the CPU time that thread
// spent in it (user and system): unlike the time on the clock, it does not
// grow while a loaded machine runs other processes instead.
func onThreadCPU(f func()) time.Duration {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := threadCPU()
	f()
	return threadCPU() - before
}

// threadCPU returns the calling thread's CPU time so far.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		panic("getrusage(RUSAGE_THREAD): " + err.Error())
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
