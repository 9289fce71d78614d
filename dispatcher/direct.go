package dispatcher

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// directTransport is the RoundTripper of a plain-http webhook: it writes
// each request and reads its response on the calling goroutine, over a
// bounded pool of HTTP/1.1 keep-alive connections.
//
// net/http's Transport runs two goroutines per connection (a reader and a
// writer) and hands every request and response between them and the
// caller: three goroutines woken per delivery, each wake-up a cross-thread
// signal when the process is otherwise idle between deliveries (strict
// ordering). Here a delivery parks once, waiting for its response.
//
// On the wire it is net/http: requests are written by http.Request.Write
// (what the Transport writes, given DisableCompression) and responses read
// by http.ReadResponse. It keeps the Transport's connection rules:
// at most maxConns connections (MaxConnsPerHost), keep-alive unless either
// side asks to close or the body was not read to its end, interim 1xx
// responses skipped, response headers bounded, idle connections closed
// after idleTimeout, and an idle connection the server closed is not reused
// (checked with a non-blocking peek before each reuse, where net/http's
// reader goroutine would have noticed the close). Requests it does not
// handle (another scheme or host, Expect: 100-continue, a body that cannot
// be replayed) go to fallback.
type directTransport struct {
	host        string // the URL's host (as written) requests must have
	addr        string // host:port dialled
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	fallback    http.RoundTripper
	open        chan struct{}    // one token per open connection
	idle        chan *directConn // idle connections, oldest first
	idleTimeout time.Duration
}

// directMaxHeaderBytes bounds a response's header bytes, interim 1xx
// responses included (net/http's default MaxResponseHeaderBytes).
const directMaxHeaderBytes = 10 << 20

// directIdleTimeout is how long an idle connection is kept
// (http.DefaultTransport's IdleConnTimeout).
const directIdleTimeout = 90 * time.Second

// newDirectTransport returns the direct transport for u, or nil when u is
// not a plain-http URL it can serve (another scheme, a host that is not
// ASCII, a proxy configured for it) or the platform cannot check idle
// connections.
func newDirectTransport(u *url.URL, maxConns int, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	proxy func(*http.Request) (*url.URL, error), fallback http.RoundTripper) *directTransport {
	if !peekSupported || u.Scheme != "http" || u.Host == "" || u.User != nil {
		return nil
	}
	host := u.Hostname()
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return nil // net/http converts IDNA names; leave them to it
		}
	}
	if proxy != nil {
		if p, err := proxy(&http.Request{URL: u}); err != nil || p != nil {
			return nil
		}
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	maxConns = max(maxConns, 1)
	return &directTransport{
		host: u.Host, addr: net.JoinHostPort(host, port), dial: dial, fallback: fallback,
		open: make(chan struct{}, maxConns), idle: make(chan *directConn, maxConns), idleTimeout: directIdleTimeout,
	}
}

// handles reports whether t sends req itself.
func (t *directTransport) handles(req *http.Request) bool {
	return req.URL != nil && req.URL.Scheme == "http" && req.URL.Host == t.host && req.URL.User == nil &&
		req.Method != http.MethodConnect && req.Header["Expect"] == nil && req.Header["Upgrade"] == nil &&
		(req.Body == nil || req.Body == http.NoBody || req.GetBody != nil)
}

// RoundTrip sends req and returns its response, whose body must be read and
// closed (the connection is reused when the body was read to its end).
func (t *directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.handles(req) {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	deadline, _ := ctx.Deadline()
	for {
		c, reused, err := t.get(ctx)
		if err != nil {
			closeRequestBody(req)
			return nil, err
		}
		// Every use sets the deadline (none: cleared), before the peek:
		// an expired one would fail it.
		_ = c.nc.SetDeadline(deadline)
		if reused && !c.reusable() {
			c.discard()
			continue
		}
		resp, err := c.roundTrip(ctx, req)
		if err != nil {
			c.discard()
			if cerr := ctx.Err(); cerr != nil {
				return nil, cerr
			}
			return nil, err
		}
		return resp, nil
	}
}

// CloseIdleConnections closes the idle connections (and the fallback's).
func (t *directTransport) CloseIdleConnections() {
	for {
		select {
		case c := <-t.idle:
			c.idleTimer.Stop()
			c.discard()
		default:
			if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
				ci.CloseIdleConnections()
			}
			return
		}
	}
}

// get returns an idle connection (reused) or a new one, waiting while
// maxConns connections are open and none is idle.
func (t *directTransport) get(ctx context.Context) (c *directConn, reused bool, err error) {
	for {
		select {
		case c = <-t.idle:
		default:
			select {
			case c = <-t.idle:
			case t.open <- struct{}{}:
				c, err = t.dialConn(ctx)
				return c, false, err
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		if c.idleTimer.Stop() {
			return c, true, nil
		}
		c.discard() // expired while idle: already closed
	}
}

// dialConn dials a new connection; the caller holds an open token, which
// a failed dial gives back.
func (t *directTransport) dialConn(ctx context.Context) (*directConn, error) {
	nc, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		<-t.open
		return nil, err
	}
	c := &directConn{t: t, nc: nc}
	c.lr.c = nc
	c.br = bufio.NewReaderSize(&c.lr, 4<<10)
	c.bw = bufio.NewWriterSize(nc, 4<<10)
	c.idleTimer = time.AfterFunc(t.idleTimeout, c.expire)
	c.idleTimer.Stop()
	return c, nil
}

// put makes c idle, or closes it when the pool is full.
func (t *directTransport) put(c *directConn) {
	c.idleTimer.Reset(t.idleTimeout)
	select {
	case t.idle <- c:
	default:
		c.idleTimer.Stop()
		c.discard()
	}
}

// directConn is one connection of a directTransport.
type directConn struct {
	t         *directTransport
	nc        net.Conn
	lr        limitReader
	br        *bufio.Reader
	bw        *bufio.Writer
	idleTimer *time.Timer // running while idle: expire
	expired   atomic.Bool
}

// expire closes c after idleTimeout unused; it stays in the pool until a
// get takes it out and discards it.
func (c *directConn) expire() {
	c.expired.Store(true)
	_ = c.nc.Close()
}

// discard closes c and gives its open token back. Called once, by the
// connection's holder.
func (c *directConn) discard() {
	_ = c.nc.Close()
	<-c.t.open
}

// reusable reports whether an idle connection can carry a request: no
// stray bytes buffered and the server has not closed it (or sent anything)
// while it was idle.
func (c *directConn) reusable() bool {
	return !c.expired.Load() && c.br.Buffered() == 0 && idleConnOpen(c.nc)
}

// roundTrip writes req on c and reads the final response's header. The
// returned response's body hands c back to the pool when closed after
// being read to its end.
func (c *directConn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetDeadline(aLongTimeAgo) })
	c.lr.n = directMaxHeaderBytes
	err := req.Write(c.bw) // closes req.Body
	if err == nil {
		err = c.bw.Flush()
	}
	var resp *http.Response
	for err == nil {
		resp, err = http.ReadResponse(c.br, req)
		if err != nil || resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// An interim response (100 Continue, 103 Early Hints): the final
		// one follows.
	}
	if err != nil {
		stop()
		if errors.Is(err, errHeaderLimit) {
			err = fmt.Errorf("server response headers exceeded %d bytes; aborted", directMaxHeaderBytes)
		}
		return nil, err
	}
	c.lr.n = math.MaxInt64
	keep := !resp.Close && !req.Close && !connectionClose(req.Header) && resp.StatusCode != http.StatusSwitchingProtocols
	b := &directBody{rc: resp.Body, c: c, stop: stop, keep: keep}
	if resp.Body == http.NoBody {
		b.eof = true
	}
	resp.Body = b
	return resp, nil
}

// connectionClose reports whether h has "Connection: close".
func connectionClose(h http.Header) bool {
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "close") {
				return true
			}
		}
	}
	return false
}

// aLongTimeAgo is a deadline that has passed: setting it aborts blocked
// reads and writes.
var aLongTimeAgo = time.Unix(1, 0)

// errHeaderLimit is a limitReader's read past its limit.
var errHeaderLimit = errors.New("read limit exhausted")

// limitReader reads from c at most n bytes (the response header limit;
// lifted for the body).
type limitReader struct {
	c net.Conn
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errHeaderLimit
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.c.Read(p)
	l.n -= int64(n)
	return n, err
}

// directBody is a response body of a directTransport connection.
type directBody struct {
	rc     io.ReadCloser
	c      *directConn
	stop   func() bool // stops the context's abort of the connection
	keep   bool        // the connection may be reused after the body
	eof    bool
	closed bool
}

var errBodyClosed = errors.New("http: read on closed response body")

func (b *directBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// Close releases the connection: back to the pool when the body was read
// to its end and neither side asked to close, otherwise closed (a body not
// read to its end is not drained here: net/http's body Close would read
// all of it).
func (b *directBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	stopped := b.stop() // false: the context ended and aborted the connection
	if b.eof && b.keep && stopped {
		_ = b.rc.Close()
		b.c.t.put(b.c)
		return nil
	}
	b.c.discard()
	return nil
}

// closeRequestBody closes req's body, as a RoundTripper must even when it
// fails before sending.
func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
