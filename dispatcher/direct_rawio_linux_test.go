//go:build linux

package dispatcher

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// ioResult is what one Read or Write returned, comparable across paths
// (the addresses in an error's text differ between connections).
type ioResult struct {
	n        int
	data     string
	err      string
	eof      bool
	timeout  bool
	closed   bool
	deadline bool
	errno    syscall.Errno
	op       string
}

func resultOf(n int, data []byte, err error, c net.Conn) ioResult {
	r := ioResult{n: n}
	if n > 0 && n <= len(data) {
		r.data = string(data[:n])
	}
	if err == nil {
		return r
	}
	msg := err.Error()
	for _, a := range []net.Addr{c.LocalAddr(), c.RemoteAddr()} {
		msg = strings.ReplaceAll(msg, a.String(), "ADDR")
	}
	r.err = msg
	r.eof = err == io.EOF
	var ne net.Error
	r.timeout = errors.As(err, &ne) && ne.Timeout()
	r.closed = errors.Is(err, net.ErrClosed)
	r.deadline = errors.Is(err, os.ErrDeadlineExceeded)
	errors.As(err, &r.errno)
	var oe *net.OpError
	if errors.As(err, &oe) {
		r.op = oe.Op
	}
	return r
}

// TestRawConnIOMatchesNetConn runs the same reads and writes through a
// connection's own Read and Write and through connIO's raw system calls,
// each on a connection of its own, and requires the same results and
// errors: data, a read that waits for data, end of stream, a passed
// deadline, a closed connection, a write to a peer that reset.
func TestRawConnIOMatchesNetConn(t *testing.T) {
	type step func(t *testing.T, c, peer net.Conn, rw io.ReadWriter) ioResult
	read := func(size int) func(t *testing.T, c, _ net.Conn, rw io.ReadWriter) ioResult {
		return func(_ *testing.T, c, _ net.Conn, rw io.ReadWriter) ioResult {
			buf := make([]byte, size)
			n, err := rw.Read(buf)
			return resultOf(n, buf, err, c)
		}
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"data written by the peer, then read", []step{
			func(t *testing.T, _, peer net.Conn, _ io.ReadWriter) ioResult {
				n, err := peer.Write([]byte("hello"))
				return ioResult{n: n, err: errString(err)}
			},
			read(16),
		}},
		{"a read waits for data sent later", []step{
			func(t *testing.T, c, peer net.Conn, rw io.ReadWriter) ioResult {
				go func() {
					// The delay makes the read wait in the poller first; the
					// results do not depend on it.
					time.Sleep(20 * time.Millisecond)
					_, _ = peer.Write([]byte("late"))
				}()
				return read(16)(t, c, peer, rw)
			},
		}},
		{"a short buffer reads part, then the rest", []step{
			func(t *testing.T, _, peer net.Conn, _ io.ReadWriter) ioResult {
				n, err := peer.Write([]byte("abcdefgh"))
				return ioResult{n: n, err: errString(err)}
			},
			read(3), read(16),
		}},
		{"end of stream", []step{
			func(t *testing.T, _, peer net.Conn, _ io.ReadWriter) ioResult {
				return ioResult{err: errString(peer.Close())}
			},
			read(16), read(16),
		}},
		{"write then read back by the peer", []step{
			func(t *testing.T, c, peer net.Conn, rw io.ReadWriter) ioResult {
				msg := strings.Repeat("x", 300<<10) // more than the socket buffers: the write waits for the peer
				got := make(chan string, 1)
				go func() {
					b, _ := io.ReadAll(io.LimitReader(peer, int64(len(msg))))
					got <- string(b)
					_, _ = peer.Write([]byte("done")) // an answer for a write that awaits one
				}()
				n, err := rw.Write([]byte(msg))
				r := resultOf(n, nil, err, c)
				if <-got != msg {
					r.err += " (peer read other bytes)"
				}
				return r
			},
		}},
		{"a request answered: write, then read", []step{
			func(t *testing.T, c, peer net.Conn, rw io.ReadWriter) ioResult {
				go func() {
					b := make([]byte, 3)
					if _, err := io.ReadFull(peer, b); err == nil {
						_, _ = peer.Write([]byte("re:" + string(b)))
					}
				}()
				n, err := rw.Write([]byte("req"))
				return resultOf(n, nil, err, c)
			},
			read(16),
		}},
		{"a request the peer closes on: write, then end of stream", []step{
			func(t *testing.T, c, peer net.Conn, rw io.ReadWriter) ioResult {
				go func() {
					b := make([]byte, 3)
					_, _ = io.ReadFull(peer, b)
					_ = peer.Close()
				}()
				n, err := rw.Write([]byte("req"))
				return resultOf(n, nil, err, c)
			},
			read(16),
		}},
		{"a request unanswered by the deadline: write, then a timed-out read", []step{
			func(t *testing.T, c, peer net.Conn, rw io.ReadWriter) ioResult {
				_ = c.SetDeadline(time.Now().Add(20 * time.Millisecond))
				n, err := rw.Write([]byte("req"))
				return resultOf(n, nil, err, c)
			},
			read(16),
		}},
		{"a request aborted while unanswered: write, then an aborted read", []step{
			func(t *testing.T, c, peer net.Conn, rw io.ReadWriter) ioResult {
				go func() {
					// Likely while the awaiting write waits; the same
					// results either way.
					time.Sleep(20 * time.Millisecond)
					_ = c.SetDeadline(aLongTimeAgo)
				}()
				n, err := rw.Write([]byte("req"))
				return resultOf(n, nil, err, c)
			},
			read(16),
		}},
		{"a write after the deadline passed", []step{
			func(t *testing.T, c, _ net.Conn, rw io.ReadWriter) ioResult {
				_ = c.SetDeadline(aLongTimeAgo)
				n, err := rw.Write([]byte("req"))
				return resultOf(n, nil, err, c)
			},
		}},
		{"deadline passed", []step{
			func(t *testing.T, c, peer net.Conn, rw io.ReadWriter) ioResult {
				_ = c.SetDeadline(time.Now().Add(10 * time.Millisecond))
				return read(16)(t, c, peer, rw)
			},
		}},
		{"deadline in the past aborts a waiting read", []step{
			func(t *testing.T, c, peer net.Conn, rw io.ReadWriter) ioResult {
				go func() {
					// As above: likely a waiting read, the same result
					// either way.
					time.Sleep(20 * time.Millisecond)
					_ = c.SetDeadline(aLongTimeAgo)
				}()
				return read(16)(t, c, peer, rw)
			},
		}},
		{"closed connection", []step{
			func(t *testing.T, c, _ net.Conn, _ io.ReadWriter) ioResult {
				return ioResult{err: errString(c.Close())}
			},
			read(16),
			func(t *testing.T, c, _ net.Conn, rw io.ReadWriter) ioResult {
				n, err := rw.Write([]byte("x"))
				return resultOf(n, nil, err, c)
			},
		}},
		{"a peer that reset: read, then write", []step{
			func(t *testing.T, _, peer net.Conn, _ io.ReadWriter) ioResult {
				_ = peer.(*net.TCPConn).SetLinger(0) // close with a reset
				return ioResult{err: errString(peer.Close())}
			},
			read(16), // waits for the reset: ECONNRESET
			func(t *testing.T, c, _ net.Conn, rw io.ReadWriter) ioResult {
				n, err := rw.Write([]byte("x")) // after the reset: EPIPE
				return resultOf(n, nil, err, c)
			},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got [3][]ioResult
			for i, how := range []string{"net.Conn", "raw", "raw, writes awaiting"} {
				c, peer := tcpPair(t)
				var rw io.ReadWriter = c
				if how != "net.Conn" {
					r, ok := connIO(c).(*rawConnIO)
					if !ok {
						t.Fatalf("connIO(%T) = %T, want raw system calls", c, connIO(c))
					}
					r.setAwait(how == "raw, writes awaiting")
					rw = r
				}
				for _, s := range tc.steps {
					got[i] = append(got[i], s(t, c, peer, rw))
				}
			}
			for i := range got[0] {
				if got[0][i] != got[1][i] || got[0][i] != got[2][i] {
					t.Errorf("step %d:\nnet.Conn:             %+v\nraw:                  %+v\nraw, writes awaiting: %+v",
						i, got[0][i], got[1][i], got[2][i])
				}
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestPeekMatchesRecvfrom: the raw peek reports what syscall.Recvfrom with
// MSG_PEEK does: EAGAIN on a silent open connection, no error once bytes or
// the end of the stream are there, and it never consumes a byte.
func TestPeekMatchesRecvfrom(t *testing.T) {
	c, peer := tcpPair(t)
	check := func(want error) {
		t.Helper()
		rc, err := c.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got, ref error
		_ = rc.Read(func(fd uintptr) bool {
			got = peek(fd)
			var b [1]byte
			_, _, ref = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
			return true
		})
		if got != ref || got != want {
			t.Fatalf("peek = %v, Recvfrom = %v, want %v", got, ref, want)
		}
	}
	check(syscall.EAGAIN)
	if _, err := peer.Write([]byte("z")); err != nil {
		t.Fatal(err)
	}
	waitReadable(t, c)
	check(nil)
	b := make([]byte, 1)
	if n, err := c.Read(b); n != 1 || b[0] != 'z' || err != nil {
		t.Fatalf("read after peeks = %d %q %v, want the one byte", n, b[:n], err)
	}
	_ = peer.Close()
	waitReadable(t, c)
	check(nil)
}

// waitReadable waits until a peek finds something on c (bytes or the end
// of the stream), without consuming it.
func waitReadable(t *testing.T, c net.Conn) {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Read(func(fd uintptr) bool { return peek(fd) != syscall.EAGAIN }); err != nil {
		t.Fatal(err)
	}
}
