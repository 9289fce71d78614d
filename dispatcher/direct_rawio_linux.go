//go:build linux

package dispatcher

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// connIO returns what a direct connection reads and writes through: nc's
// socket with raw system calls where nc exposes one, else nc itself.
//
// The socket is non-blocking, so a read or write returns at once (EAGAIN
// when it would block, and then the netpoller waits as for nc's own Read
// and Write, deadlines included). Go's own socket I/O enters each system
// call through the scheduler (entersyscall), which wakes the system
// monitor thread whenever it was asleep — and it sleeps whenever every P
// is idle, as they are while a strict trigger waits for its one response:
// one extra thread wake-up (and a few of its 20 µs polls) per delivery.
// A raw call skips that: nothing blocks in it.
func connIO(nc net.Conn) io.ReadWriter {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nc
	}
	r := &rawConnIO{nc: nc, rc: rc}
	r.readFn, r.writeFn, r.awaitFn = r.readRaw, r.writeRaw, r.awaitRaw
	return r
}

// rawConnIO reads and writes a socket with raw system calls, returning
// the errors net.Conn's Read and Write return. One Read and one Write may
// run at a time (a direct connection has one user): the call in progress
// keeps its state in the struct, for callbacks bound once (a closure per
// call would be allocated).
type rawConnIO struct {
	nc net.Conn
	rc syscall.RawConn

	rbuf            []byte // the Read in progress
	rn              int
	rerrno          syscall.Errno
	wbuf            []byte // the Write in progress
	wn              int
	werrno          syscall.Errno
	readFn, writeFn func(fd uintptr) bool

	await   bool // Write waits for the response (see writeAwait)
	sent    bool // writeAwait's bytes are all written
	awaitFn func(fd uintptr) bool
}

// setAwait makes the following Writes (on: a request's last bytes) wait
// for the response before returning (see writeAwait).
func (r *rawConnIO) setAwait(on bool) { r.await = on }

// writeAwait writes p, the last bytes of a request, and waits until the
// response can be read (or the wait ends: the deadline passed, the
// connection was aborted or closed — the response's read then fails the
// same way). It sends from inside a RawConn.Read callback: Read resets the
// socket's readiness before calling it, so the poller's report of the
// response's arrival after the send is not lost, and the response's read
// that follows finds its bytes without first trying and failing (EAGAIN).
// A write the socket's buffer cannot take at once is finished as Write
// finishes it, without the wait. The results are Write's.
func (r *rawConnIO) writeAwait(p []byte) (int, error) {
	r.wbuf, r.wn, r.werrno, r.sent = p, 0, 0, false
	err := r.rc.Read(r.awaitFn)
	switch {
	case r.werrno != 0:
		return r.writeDone(nil)
	case r.sent:
		return r.writeDone(nil)
	case err != nil:
		return r.writeDone(err) // before any byte: Write's failure
	}
	return r.writeDone(r.rc.Write(r.writeFn)) // the socket's buffer is full
}

// awaitRaw is writeAwait's callback: it sends, then waits for readability
// (false) once all is sent; called again, readable (or woken spuriously:
// the read that follows waits again), it is done.
func (r *rawConnIO) awaitRaw(fd uintptr) bool {
	if r.sent {
		return true
	}
	if !r.writeRaw(fd) {
		return true // EAGAIN: the rest is written without the wait
	}
	if r.werrno != 0 {
		return true
	}
	r.sent = true
	return false
}

func (r *rawConnIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.rbuf, r.rn, r.rerrno = p, 0, 0
	err := r.rc.Read(r.readFn)
	n, errno := r.rn, r.rerrno
	r.rbuf = nil
	switch {
	case err != nil:
		return 0, r.opError("read", err)
	case errno != 0:
		return 0, r.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// readRaw is the Read callback: false (wait for readability) on EAGAIN.
func (r *rawConnIO) readRaw(fd uintptr) bool {
	p := r.rbuf
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			r.rn = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.rerrno = e
		return true
	}
}

func (r *rawConnIO) Write(p []byte) (int, error) {
	if r.await && len(p) > 0 {
		return r.writeAwait(p)
	}
	r.wbuf, r.wn, r.werrno = p, 0, 0
	return r.writeDone(r.rc.Write(r.writeFn))
}

// writeDone ends the Write in progress, err being the RawConn's error.
func (r *rawConnIO) writeDone(err error) (int, error) {
	nn, errno := r.wn, r.werrno
	r.wbuf = nil
	switch {
	case err != nil:
		return nn, r.opError("write", err)
	case errno != 0:
		return nn, r.opError("write", os.NewSyscallError("write", errno))
	}
	return nn, nil
}

// writeRaw is the Write callback: it sends until all of the buffer is
// written (true), an error (true) or EAGAIN (false: wait for writability,
// then go on).
func (r *rawConnIO) writeRaw(fd uintptr) bool {
	p := r.wbuf
	for r.wn < len(p) {
		// send(2) with MSG_NOSIGNAL: a peer that closed raises EPIPE,
		// never SIGPIPE.
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[r.wn])), uintptr(len(p)-r.wn),
			syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			r.wn += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			r.werrno = e
			return true
		}
	}
	return true
}

// opError wraps err as net.Conn's Read and Write do (the raw connection
// reports its own failures, a deadline or a closed connection, as
// "raw-read"/"raw-write" errors: their cause is kept).
func (r *rawConnIO) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: r.nc.LocalAddr().Network(), Source: r.nc.LocalAddr(), Addr: r.nc.RemoteAddr(), Err: err}
}

// peek is a non-blocking MSG_PEEK read of one byte from the socket fd, as a
// raw system call (see connIO); it returns the call's error, nil when a
// byte or the end of the stream is there.
func peek(fd uintptr) error {
	var b [1]byte
	_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
