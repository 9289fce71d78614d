//go:build unix

package dispatcher

import (
	"net"
	"syscall"
)

// peekSupported: idleConnOpen can check a connection without blocking.
const peekSupported = true

// idleConnOpen reports whether an idle connection is still open and
// silent: a non-blocking MSG_PEEK read finds nothing to read (EAGAIN). End
// of stream (the server closed it), stray bytes or an error mean it must
// not carry another request. Go's sockets are non-blocking, so the peek
// never waits.
func idleConnOpen(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	err = rc.Read(func(fd uintptr) bool {
		rerr := peek(fd)
		open = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && open
}
