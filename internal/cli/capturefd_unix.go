//go:build unix

package cli

import (
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// openDescriptorPath returns, when path names one of this process's own
// file descriptors (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N),
// a duplicate of that descriptor: it shares the open file the shell's
// redirection set up — its offset and its append mode — so that `-o
// /dev/stdout >> FILE` appends and `> FILE 2>&1` keeps the lines in order,
// where opening the path anew would write from the file's start. ok is
// false for any other path.
func openDescriptorPath(path string) (f *os.File, ok bool, err error) {
	n := -1
	switch path {
	case "/dev/stdout":
		n = 1
	case "/dev/stderr":
		n = 2
	default:
		for _, prefix := range []string{"/dev/fd/", "/proc/self/fd/"} {
			if rest, found := strings.CutPrefix(path, prefix); found {
				if v, err := strconv.Atoi(rest); err == nil && v >= 0 {
					n = v
				}
			}
		}
	}
	if n < 0 {
		return nil, false, nil
	}
	d, err := unix.Dup(n)
	if err != nil {
		return nil, true, err
	}
	unix.CloseOnExec(d)
	return os.NewFile(uintptr(d), path), true, nil
}
