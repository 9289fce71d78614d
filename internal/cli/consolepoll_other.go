//go:build !unix

package cli

import "os"

// watchClosedPipe does nothing here: a closed pipe is noticed at the next
// write to it (see consoleWriter).
func watchClosedPipe(f *os.File, done <-chan struct{}, gone func()) {}
