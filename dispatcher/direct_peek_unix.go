//go:build unix

package dispatcher

import (
	"net"
	"syscall"
)

// peekSupported: idlePeek can check a connection without blocking.
const peekSupported = true

// idlePeek checks whether an idle connection is still open and silent,
// with the connection's syscall.RawConn and the check's callback obtained
// once per connection (each SyscallConn and each closure passed to
// RawConn.Read is an allocation). Not safe for concurrent use: a
// connection has one user at a time.
type idlePeek struct {
	rc   syscall.RawConn // nil: nc exposes no socket
	open bool            // the result of the check in progress
	fn   func(fd uintptr) bool
}

// init prepares p for nc.
func (p *idlePeek) init(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	p.rc, p.fn = rc, p.check
}

// check is the RawConn.Read callback: it never waits for readiness.
func (p *idlePeek) check(fd uintptr) bool {
	rerr := peek(fd)
	p.open = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
	return true
}

// connOpen reports whether the idle connection is still open and silent:
// a non-blocking MSG_PEEK read finds nothing to read (EAGAIN). End of
// stream (the server closed it), stray bytes or an error mean it must not
// carry another request. Go's sockets are non-blocking, so the peek never
// waits.
func (p *idlePeek) connOpen() bool {
	if p.rc == nil {
		return false
	}
	p.open = false
	err := p.rc.Read(p.fn)
	return err == nil && p.open
}
