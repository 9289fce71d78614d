package admin

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// startServer starts an admin server on a free loopback port, shut down by
// t.Cleanup.
func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Addr = "127.0.0.1:0"
	opts.Runner = fakeRunner{ready: true}
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// keepAlive opens a connection, reads one /healthz response on it and
// returns it open (an idle keep-alive connection) with its reader.
func keepAlive(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, request(t, c, bufio.NewReader(c))
}

// request sends GET /healthz on c and reads the whole 200 response.
func request(t *testing.T, c net.Conn, br *bufio.Reader) *bufio.Reader {
	t.Helper()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET /healthz = %d (close %v), want 200 keep-alive", resp.StatusCode, resp.Close)
	}
	return br
}

// TestIdleConnectionsClosed opens many keep-alive connections and leaves
// them idle: the server must close every one after its idle timeout (a
// read then sees EOF), long before the test's upper bound.
func TestIdleConnectionsClosed(t *testing.T) {
	const n = 200
	s := startServer(t, Options{IdleTimeout: 100 * time.Millisecond, MaxConnections: n})
	conns := make([]net.Conn, n)
	readers := make([]*bufio.Reader, n)
	for i := range conns {
		conns[i], readers[i] = keepAlive(t, s.Addr())
	}
	deadline := time.Now().Add(30 * time.Second) // an upper bound only
	for i, c := range conns {
		_ = c.SetReadDeadline(deadline)
		_, err := readers[i].ReadByte()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d still open 30s after its last request (idle timeout 100ms)", i)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
			t.Fatalf("connection %d: read = %v, want EOF (closed by the server)", i, err)
		}
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// TestConnectionCap holds max_connections idle connections open: a further
// connection is not served until one of them closes.
func TestConnectionCap(t *testing.T) {
	s := startServer(t, Options{MaxConnections: 2, IdleTimeout: time.Minute})
	first, _ := keepAlive(t, s.Addr())
	keepAlive(t, s.Addr())

	third, err := net.Dial("tcp", s.Addr()) // succeeds: the kernel's backlog
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = third.Close() })
	if _, err := io.WriteString(third, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(third)
	_ = third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection answered (%v) while two of two were open", err)
	}
	_ = first.Close()
	_ = third.SetReadDeadline(time.Now().Add(30 * time.Second)) // an upper bound only
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("third connection after one closed: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("third connection: %d, want 200", resp.StatusCode)
	}
}

// TestSlowBodyCut sends headers and then trickles nothing: the read timeout
// ends the request instead of holding the connection.
func TestSlowBodyCut(t *testing.T) {
	s := startServer(t, Options{ReadTimeout: 100 * time.Millisecond})
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, "POST /healthz HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nx"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // an upper bound only
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("connection with a stalled body still open after 30s (read timeout 100ms)")
	}
}
