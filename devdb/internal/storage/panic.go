package storage

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// storagePanic turns a panic raised inside the storage library (bbolt)
// while a transaction runs — what a data file damaged while devdb runs
// causes: a page that does not identify as itself, a free-list
// inconsistency, a memory fault on a truncated file — into a
// *DamagedError naming the data directory, stored in *err. Panics raised
// elsewhere (a bug in devdb's own code) are re-raised unchanged, so that
// the command's handler reports them as internal errors. Use it as
// `defer e.storagePanic(&err)` together with debug.SetPanicOnFault.
func (e *Engine) storagePanic(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if !panickedInStorageLibrary() {
		panic(r)
	}
	*err = &DamagedError{Dir: e.dir, Err: fmt.Errorf("the storage library failed while running: %v", r)}
}

// panickedInStorageLibrary reports whether the panic being recovered was
// raised in go.etcd.io/bbolt: the first frame below the runtime's panic
// machinery belongs to it.
func panickedInStorageLibrary() bool {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	inPanic := false
	for {
		f, more := frames.Next()
		switch {
		case strings.HasPrefix(f.Function, "runtime."):
			if f.Function == "runtime.gopanic" || strings.HasPrefix(f.Function, "runtime.panic") ||
				strings.HasPrefix(f.Function, "runtime.goPanic") || f.Function == "runtime.sigpanic" {
				inPanic = true
			}
		case inPanic:
			return strings.HasPrefix(f.Function, "go.etcd.io/bbolt")
		}
		if !more {
			return false
		}
	}
}

// faultsPanic makes memory faults of the mapped data file (a file
// truncated under devdb) panics that storagePanic can recover, for the
// calling goroutine until the returned function runs.
func faultsPanic() func() {
	old := debug.SetPanicOnFault(true)
	return func() { debug.SetPanicOnFault(old) }
}
