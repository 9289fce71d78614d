package admin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestOneClientCannotTakeEveryConnection: on a server listening beyond
// loopback, a client that opens connections and never finishes their
// headers holds at most its share of max_connections (its further
// connections are closed at once), so a probe from another address is
// answered at once rather than after the read-header timeout.
func TestOneClientCannotTakeEveryConnection(t *testing.T) {
	const maxConns = 8 // a share of 4 per client
	s, err := Start(Options{Addr: "0.0.0.0:0", Runner: fakeRunner{ready: true}, MaxConnections: maxConns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	_, port, _ := net.SplitHostPort(s.Addr())
	addr := net.JoinHostPort("127.0.0.1", port)
	slow := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	conns := make([]net.Conn, maxConns)
	for i := range conns {
		c, err := slow.Dial("tcp", addr)
		if err != nil {
			t.Skipf("cannot connect from 127.0.0.2 (a second loopback address): %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a"); err != nil { // never finished
			t.Fatal(err)
		}
		conns[i] = c
	}
	// The probe connects after them, so it is accepted after them: with
	// every slot taken it would wait for the read-header timeout (5s).
	probe := &http.Client{Timeout: 3 * time.Second}
	resp, err := probe.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("/readyz from another address while 127.0.0.2 holds %d connections: %v", maxConns, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz: %d", resp.StatusCode)
	}
	for i, c := range conns[maxConns/2:] {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second)) // an upper bound only
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			t.Errorf("connection %d of 127.0.0.2, over its share, still open: %v", maxConns/2+i, err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestPerClientCap: a quarter of the cap, at least 4, and none on loopback.
func TestPerClientCap(t *testing.T) {
	for _, tc := range []struct {
		maxConns int
		loopback bool
		want     int
	}{
		{64, false, 16},
		{8, false, 4},
		{1, false, 4},
		{1000, false, 250},
		{64, true, 0},
	} {
		if got := perClientCap(tc.maxConns, tc.loopback); got != tc.want {
			t.Errorf("perClientCap(%d, %v) = %d, want %d", tc.maxConns, tc.loopback, got, tc.want)
		}
	}
}

// TestClientKey: an IPv4 address (mapped or not) is its own client, an IPv6
// address counts with its /64, and other addresses are not counted.
func TestClientKey(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 1234}, "10.0.0.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:10.0.0.7")}, "10.0.0.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:aaaa::1")}, "2001:db8:1:2::/64"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:bbbb::9")}, "2001:db8:1:2::/64"},
		{&net.UnixAddr{Name: "/tmp/x", Net: "unix"}, ""},
	} {
		if got := clientKey(tc.addr); got != tc.want {
			t.Errorf("clientKey(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
