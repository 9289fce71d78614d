//go:build unix

package cli

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// pipePollInterval bounds each wait of watchClosedPipe, so that it ends
// soon after done closes.
const pipePollInterval = 500 // milliseconds

// watchClosedPipe calls gone, once, when f, the write end of a pipe, has
// lost its reader (`changehook devdb | head -1` once head exited), noticed
// without writing to it: the pipe then polls POLLERR (Linux) or POLLHUP. It
// watches until done is closed; f that is not a pipe is not watched.
func watchClosedPipe(f *os.File, done <-chan struct{}, gone func()) {
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	fd := -1
	if err := rc.Control(func(d uintptr) { fd = int(d) }); err != nil || fd < 0 {
		return
	}
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			fds := []unix.PollFd{{Fd: int32(fd)}} // no events asked: errors and hang-ups are always reported
			n, err := unix.Poll(fds, pipePollInterval)
			switch {
			case errors.Is(err, unix.EINTR):
			case err != nil:
				return
			case n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0:
				gone()
				return
			case n > 0 && fds[0].Revents&unix.POLLNVAL != 0:
				return // f was closed: a poll would return at once, forever
			}
		}
	}()
}
