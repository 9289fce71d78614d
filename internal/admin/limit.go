package admin

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// perClientCap returns how many of a server's maxConns connections one
// client address may hold: a quarter of them, at least 4, so that a client
// that opens connections and never finishes their headers (each holds its
// slot for the read-header timeout, and it can reconnect as soon as one is
// closed) cannot take every slot and keep /readyz and /healthz probes, the
// console and the API waiting; 0 (no per-client cap) when the server
// listens on loopback, where every client has the same address and a
// per-address cap would only shrink the overall one.
func perClientCap(maxConns int, loopback bool) int {
	if loopback {
		return 0
	}
	return max(maxConns/4, 4)
}

// refusedLogEvery spaces the log lines about connections refused over a
// client's cap: a client that keeps reconnecting must not flood the log.
const refusedLogEvery = time.Minute

// limitListener accepts at most n connections at once: Accept waits for an
// open connection to close before taking the next one from the backlog, so
// a flood of idle connections costs the kernel's backlog, not goroutines.
// With perClient > 0, a connection from a client address (an IPv4 address,
// or an IPv6 /64) that already holds perClient open connections is closed
// at once instead of being served, and frees its slot for the next one.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	once      sync.Once
	perClient int
	log       *slog.Logger

	mu          sync.Mutex
	clients     map[string]int // open connections by clientKey
	refused     int            // refused since lastLog
	lastRefused string         // the client refused last
	lastLog     time.Time
}

func newLimitListener(ln net.Listener, n, perClient int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{}),
		perClient: perClient, log: log, clients: map[string]int{}}
}

// Accept waits for a free slot, then accepts one connection that is within
// its client's cap (closing those that are not).
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		select {
		case l.slots <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.slots
			return nil, err
		}
		key := clientKey(c.RemoteAddr())
		if !l.enter(key) {
			_ = c.Close()
			<-l.slots
			continue
		}
		return &limitConn{Conn: c, release: func() {
			l.leave(key)
			<-l.slots
		}}, nil
	}
}

// enter counts a new connection of client key, or reports false (and
// logs, at most every refusedLogEvery) when key already holds its cap.
func (l *limitListener) enter(key string) bool {
	if l.perClient <= 0 || key == "" {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[key] < l.perClient {
		l.clients[key]++
		return true
	}
	l.refused++
	l.lastRefused = key
	if now := time.Now(); now.Sub(l.lastLog) >= refusedLogEvery {
		l.log.Warn("admin server: connections refused: their client already holds its share of admin.max_connections "+
			"(a client that does not finish its requests, or a reverse proxy: raise admin.max_connections)",
			"client", l.lastRefused, "per_client", l.perClient, "refused", l.refused)
		l.refused, l.lastLog = 0, now
	}
	return false
}

// leave uncounts a closed connection of client key.
func (l *limitListener) leave(key string) {
	if l.perClient <= 0 || key == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.clients[key]--; l.clients[key] <= 0 {
		delete(l.clients, key)
	}
}

// clientKey names the client a connection from addr counts against: its
// IPv4 address, or its IPv6 address's /64 (one host commonly has a whole
// /64); "" (not counted) for an address that is not TCP.
func clientKey(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || tcp.IP == nil {
		return ""
	}
	if ip4 := tcp.IP.To4(); ip4 != nil {
		return ip4.String()
	}
	return tcp.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// Close closes the listener and wakes an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back on its first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
