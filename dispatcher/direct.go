package dispatcher

import (
	"bufio"
	"context"
	"crypto/tls"
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

// directTransport is the RoundTripper of an http or https webhook: it
// writes each request and reads its response on the calling goroutine, over
// a bounded pool of HTTP/1.1 keep-alive connections (over TLS for https,
// which then offers only HTTP/1.1 in ALPN).
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
//
// Over TLS, an idle connection is reused only when the TLS layer holds no
// record it read ahead either (a probe read that cannot block), and
// connections are closed without a close_notify alert: crypto/tls gives
// that write up to 5 seconds, which a peer that stopped reading would make
// a delivery (or the janitor, holding the pool's connections) wait; HTTP/1.1
// frames every message by its length, so nothing depends on the alert.
//
// It also enforces the webhook timeout itself, as a deadline on the
// connection covering the request, the response and its body (and the
// dial), so that a delivery needs no context of its own: a per-request
// context with a deadline costs a timer and a registration with the
// dispatcher's context shared by every worker. Cancellation of the caller's
// context still aborts a request at once: each connection watches the
// context of its last request (context.AfterFunc), registered again only
// when a request brings another context.
type directTransport struct {
	scheme      string      // the URL's scheme: "http" or "https"
	host        string      // the URL's host (as written) requests must have
	tls         *tls.Config // https: the client configuration (ServerName set, ALPN http/1.1)
	addr        string      // host:port dialled
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	fallback    http.RoundTripper
	timeout     time.Duration    // webhook.timeout of each request (0: none)
	open        chan struct{}    // one token per open connection
	idle        chan *directConn // idle connections, oldest first
	idleTimeout time.Duration
	janitor     *time.Timer // runs sweep while connections are idle (armed: janitorOn)
	janitorOn   atomic.Bool
	// plainHost is host when net/http writes it unchanged in the Host
	// header (see writeRequestFast), else "".
	plainHost string
	// noAwait: a request's last write returns without waiting for the
	// response (see flush; the tests compare both).
	noAwait bool
}

// maxResponseHeaderBytes bounds a response's header bytes, interim 1xx
// responses included, on the direct transport and on net/http's
// (Transport.MaxResponseHeaderBytes, whose default is 10 MiB). A webhook's
// answer needs its status, Location, Retry-After and a few small headers,
// and common servers keep whole headers far below this (nginx refuses an
// upstream's over 4–8 KiB, Node.js's parser stops at 16 KiB), while the
// header of every delivery in flight is held in memory, outside the
// in-flight byte budgets: 64 KiB bounds 16 deliveries to 1 MiB where a
// hostile endpoint's 10 MiB headers took 160 MiB. A larger header fails
// the attempt as a connection failure naming the limit.
const maxResponseHeaderBytes = 64 << 10

// directIdleTimeout is how long an idle connection is kept
// (http.DefaultTransport's IdleConnTimeout).
const directIdleTimeout = 90 * time.Second

// directTLSHandshakeTimeout bounds a TLS handshake within the request's
// deadline (http.DefaultTransport's TLSHandshakeTimeout).
const directTLSHandshakeTimeout = 10 * time.Second

// newDirectTransport returns the direct transport for u, or nil when u is
// not an http or https URL it can serve (another scheme, a host that is
// not ASCII, a proxy configured for it) or the platform cannot check idle
// connections. tlsConf is the client configuration of an https u (nil:
// the defaults, the system's roots).
func newDirectTransport(u *url.URL, maxConns int, timeout time.Duration, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	proxy func(*http.Request) (*url.URL, error), fallback http.RoundTripper, tlsConf *tls.Config) *directTransport {
	if !peekSupported || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
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
		if u.Scheme == "https" {
			port = "443"
		}
	}
	var tc *tls.Config
	if u.Scheme == "https" {
		if tlsConf != nil {
			tc = tlsConf.Clone()
		} else {
			tc = &tls.Config{}
		}
		if tc.ServerName == "" {
			tc.ServerName = host
		}
		// HTTP/1.1 is what this transport speaks; a server that would
		// choose HTTP/2 answers in HTTP/1.1 (every server that offers h2
		// over TLS also does HTTP/1.1).
		tc.NextProtos = []string{"http/1.1"}
	}
	maxConns = max(maxConns, 1)
	plainHost := u.Host
	for i := 0; i < len(plainHost); i++ {
		c := plainHost[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			plainHost = ""
			break
		}
	}
	if strings.HasSuffix(plainHost, ":") {
		plainHost = "" // http.NewRequest drops an empty port
	}
	t := &directTransport{
		plainHost: plainHost,
		scheme:    u.Scheme, tls: tc,
		host: u.Host, addr: net.JoinHostPort(host, port), dial: dial, fallback: fallback, timeout: max(timeout, 0),
		open: make(chan struct{}, maxConns), idle: make(chan *directConn, maxConns), idleTimeout: directIdleTimeout,
	}
	t.janitor = time.AfterFunc(time.Hour, t.sweep)
	t.janitor.Stop()
	return t
}

// handles reports whether t sends req itself.
func (t *directTransport) handles(req *http.Request) bool {
	return req.URL != nil && req.URL.Scheme == t.scheme && req.URL.Host == t.host && req.URL.User == nil &&
		req.Method != http.MethodConnect && req.Header["Expect"] == nil && req.Header["Upgrade"] == nil &&
		(req.Body == nil || req.Body == http.NoBody || req.GetBody != nil)
}

// RoundTrip sends req and returns its response, whose body must be read and
// closed (the connection is reused when the body was read to its end).
func (t *directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	var deadline time.Time
	if t.timeout > 0 {
		deadline = time.Now().Add(t.timeout)
	}
	if dl, ok := ctx.Deadline(); ok && (deadline.IsZero() || dl.Before(deadline)) {
		deadline = dl
	}
	if !t.handles(req) {
		return t.roundTripFallback(req, deadline)
	}
	if err := ctx.Err(); err != nil {
		closeRequestBody(req)
		return nil, err
	}
	for {
		c, reused, err := t.get(ctx, deadline)
		if err != nil {
			closeRequestBody(req)
			return nil, t.failure(ctx, deadline, err)
		}
		if reused && !c.tlsIdle() {
			c.discard()
			continue
		}
		// Every use sets the deadline (none: cleared) before anything
		// else (but the TLS probe, whose expired deadline this replaces):
		// an expired one would fail the peek, and an abort by the context
		// (watch) must come after it to stick.
		_ = c.nc.SetDeadline(deadline)
		if !c.watch(ctx) || (reused && !c.reusable()) {
			c.discard()
			continue
		}
		resp, err := c.roundTrip(req)
		if err != nil {
			c.discard()
			return nil, t.failure(ctx, deadline, err)
		}
		return resp, nil
	}
}

// failure is the error RoundTrip returns for err: the context's error once
// it ended, a timeout error once the deadline passed, else err.
func (t *directTransport) failure(ctx context.Context, deadline time.Time, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if t.timeout > 0 && !deadline.IsZero() && !time.Now().Before(deadline) {
		return &attemptTimeoutError{timeout: t.timeout}
	}
	return err
}

// roundTripFallback sends req through the fallback transport within
// deadline (a context deadline there), released when the response body is
// closed.
func (t *directTransport) roundTripFallback(req *http.Request, deadline time.Time) (*http.Response, error) {
	req = inMemoryBody(req)
	if deadline.IsZero() {
		return t.fallback.RoundTrip(req)
	}
	ctx, cancel := context.WithDeadline(req.Context(), deadline)
	resp, err := t.fallback.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && req.Context().Err() == nil {
			err = &attemptTimeoutError{timeout: t.timeout}
		}
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelBody releases a request's context when its response body is
// closed.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// CloseIdleConnections closes the idle connections (and the fallback's).
func (t *directTransport) CloseIdleConnections() {
	for {
		select {
		case c := <-t.idle:
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
func (t *directTransport) get(ctx context.Context, deadline time.Time) (c *directConn, reused bool, err error) {
	select {
	case c = <-t.idle:
	default:
		select {
		case c = <-t.idle:
		case t.open <- struct{}{}:
			c, err = t.dialConn(ctx, deadline)
			return c, false, err
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	return c, true, nil
}

// dialConn dials a new connection (by deadline, when set); the caller
// holds an open token, which a failed dial gives back.
func (t *directTransport) dialConn(ctx context.Context, deadline time.Time) (*directConn, error) {
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	nc, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		<-t.open
		return nil, err
	}
	c := &directConn{t: t, nc: nc, raw: nc}
	var rw io.ReadWriter
	if t.tls != nil {
		tc := tls.Client(nc, t.tls)
		hctx, cancel := context.WithTimeout(ctx, directTLSHandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = nc.Close()
			<-t.open
			return nil, err
		}
		c.nc, rw = tc, tc
	} else {
		rw = connIO(nc)
	}
	c.lr.c = rw
	c.peek.init(nc)
	c.br = bufio.NewReaderSize(&c.lr, 4<<10)
	c.bw = bufio.NewWriterSize(rw, 4<<10)
	return c, nil
}

// put makes c idle, or closes it when the pool is full.
//
// Idle connections are closed after idleTimeout by one timer per
// transport (the janitor, armed while any connection is idle), not one
// per connection: a timer's Reset when a connection goes idle and Stop
// when it is taken again cost every delivery two timer updates.
func (t *directTransport) put(c *directConn) {
	c.idleSince = time.Now()
	select {
	case t.idle <- c:
		if !t.janitorOn.Load() && t.janitorOn.CompareAndSwap(false, true) {
			t.janitor.Reset(t.idleTimeout)
		}
	default:
		c.discard()
	}
}

// sweep is the janitor: it closes the connections idle for idleTimeout or
// longer and, while others stay idle, runs again when the oldest of them
// reaches it. The connections it checks are out of the pool meanwhile (a
// get waits for them or, below maxConns, dials).
func (t *directTransport) sweep() {
	t.janitorOn.Store(false)
	now := time.Now()
	var keep []*directConn
	for len(keep) < cap(t.idle) {
		var c *directConn
		select {
		case c = <-t.idle:
		default:
		}
		if c == nil {
			break
		}
		if now.Sub(c.idleSince) >= t.idleTimeout {
			c.discard()
			continue
		}
		keep = append(keep, c)
	}
	next := t.idleTimeout
	for i, c := range keep {
		if i == 0 {
			next = t.idleTimeout - now.Sub(c.idleSince) // the oldest
		}
		select {
		case t.idle <- c:
		default:
			c.discard() // unreachable: no more connections than room
		}
	}
	if len(t.idle) > 0 && t.janitorOn.CompareAndSwap(false, true) {
		t.janitor.Reset(next)
	}
}

// directConn is one connection of a directTransport.
type directConn struct {
	t         *directTransport
	nc        net.Conn // what requests are written to: raw, or TLS over it
	raw       net.Conn // the TCP connection
	lr        limitReader
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time       // when c was last made idle (put)
	watched   context.Context // whose end aborts c (see watch)
	done      <-chan struct{} // watched.Done()
	unwatch   func() bool     // stops watching it
	aborted   atomic.Bool     // watched ended: c must not be reused
	peek      idlePeek        // the check of reusable
}

// watch makes the end of ctx abort c's request (and retire c), keeping the
// registration of the previous request when ctx ends with it: the same
// context, or one with the same Done channel (a context.WithValue of it,
// as the runner's lease gate wraps every request's context: it is closed
// at the same moment; two contexts without a Done channel never
// end). It reports false when c was aborted and must be discarded.
func (c *directConn) watch(ctx context.Context) bool {
	if ctx != c.watched {
		done := ctx.Done()
		if c.unwatch == nil || done != c.done {
			if c.unwatch != nil && !c.unwatch() {
				c.aborted.Store(true) // the previous context ended meanwhile
			}
			c.watched, c.done, c.unwatch = ctx, done, context.AfterFunc(ctx, c.abort)
		}
	}
	return !c.aborted.Load()
}

// abort fails c's reads and writes at once.
func (c *directConn) abort() {
	c.aborted.Store(true)
	_ = c.nc.SetDeadline(aLongTimeAgo)
}

// discard closes c and gives its open token back. Called once, by the
// connection's holder. Over TLS it closes the TCP connection under the TLS
// one (no close_notify; see directTransport).
func (c *directConn) discard() {
	if c.unwatch != nil {
		c.unwatch()
	}
	_ = c.raw.Close()
	<-c.t.open
}

// reusable reports whether an idle connection can carry a request: no
// stray bytes buffered and the server has not closed it (or sent anything)
// while it was idle (over TLS, after tlsIdle).
func (c *directConn) reusable() bool {
	return c.br.Buffered() == 0 && c.peek.connOpen()
}

// tlsIdle reports whether c's TLS layer holds nothing to read: a read with
// a deadline already passed returns what it buffered (a record read ahead
// with the last response) or times out without waiting; post-handshake
// messages (session tickets) are consumed by that read. True without TLS.
// It leaves the read deadline expired: the caller sets the connection's
// deadline before using it.
func (c *directConn) tlsIdle() bool {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return true
	}
	_ = c.raw.SetReadDeadline(aLongTimeAgo)
	var b [1]byte
	n, err := tc.Read(b[:])
	var ne net.Error
	return n == 0 && errors.As(err, &ne) && ne.Timeout()
}

// roundTrip writes req on c and reads the final response's header. The
// returned response's body hands c back to the pool when closed after
// being read to its end.
func (c *directConn) roundTrip(req *http.Request) (*http.Response, error) {
	c.lr.n = maxResponseHeaderBytes
	var werr error
	rest, fast := writeRequestFast(c.bw, req, c.t.plainHost)
	if !fast {
		werr = req.Write(c.bw) // closes req.Body
	}
	if werr == nil {
		// The last check before the request leaves the process (a
		// request up to the buffer's size, or the head of a larger one
		// written fast, is still all in it): a failed check abandons it,
		// and the caller discards c with it.
		if check := sendCheckFrom(req.Context()); check != nil {
			if err := check(); err != nil {
				return nil, err
			}
		}
		if len(rest) > 0 {
			// Fills the buffer after the head, flushes it, and writes the
			// remainder straight from rest.
			_, werr = c.bw.Write(rest)
		}
		if werr == nil {
			werr = c.flush()
		}
	}
	// The response is read even after a failed write: a server may answer
	// (413 Content Too Large) and close before reading all of a large body
	// (net/http's Transport returns that answer when it comes in before the
	// write error). A connection that broke for other reasons fails this
	// read at once (or at the deadline, already passed when the write timed
	// out).
	var resp *http.Response
	var err error
	for {
		resp, err = readResponse(c.br, req)
		if err != nil || resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// An interim response (100 Continue, 103 Early Hints): the final
		// one follows.
	}
	if err != nil {
		if werr != nil {
			return nil, werr
		}
		if errors.Is(err, errHeaderLimit) || c.lr.n <= 0 {
			// The limit used up is the failure whatever the parser
			// says of what it cut: a line cut in its key or inside a
			// status line (bufio's ReadLine returns a partial last line
			// without error) parses as malformed, not as too long.
			err = fmt.Errorf("server response headers exceeded %d bytes; aborted", maxResponseHeaderBytes)
		}
		return nil, err
	}
	c.lr.n = math.MaxInt64
	keep := werr == nil && !resp.Close && !req.Close && !connectionClose(req.Header) && resp.StatusCode != http.StatusSwitchingProtocols
	b := &directBody{rc: resp.Body, c: c, keep: keep}
	if resp.Body == http.NoBody {
		b.eof = true
	}
	resp.Body = b
	return resp, nil
}

// responseAwaiter is a connection's I/O whose Writes can wait for the
// response (rawConnIO.writeAwait).
type responseAwaiter interface{ setAwait(on bool) }

// flush writes the rest of the buffered request; where the connection's
// I/O can, the write of its last bytes returns once the response can be
// read.
func (c *directConn) flush() error {
	aw, ok := c.lr.c.(responseAwaiter)
	if !ok || c.t.noAwait {
		return c.bw.Flush()
	}
	aw.setAwait(true)
	err := c.bw.Flush()
	aw.setAwait(false)
	return err
}

// readResponse reads a response as http.ReadResponse does, through
// readResponseFast once the first bytes of it are buffered.
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if br.Buffered() == 0 {
		// ReadResponse's first read, failing as it would fail.
		if _, err := br.Peek(1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	if resp, ok := readResponseFast(br, req); ok {
		return resp, nil
	}
	return http.ReadResponse(br, req)
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
	c io.Reader
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
	keep   bool // the connection may be reused after the body
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
	if b.eof && b.keep && !b.c.aborted.Load() {
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

// sendCheckKey is the context key of WithSendCheck.
type sendCheckKey struct{}

// WithSendCheck returns ctx carrying check, which the dispatcher's HTTP
// transport for http and https webhooks calls immediately before a
// request's buffered bytes are written to the connection (after the
// connection was obtained and the request encoded; over TLS, before they
// are encrypted). A non-nil error abandons the request:
// nothing more of it is written, the connection is closed and RoundTrip
// returns that error. The runner's lease gate uses it so that a process
// frozen between its lease check and the write (SIGSTOP, a long GC or VM
// pause) cannot send a request after its lease passed to another member;
// bodies larger than the 4 KiB write buffer have been partly written by
// then and reach the server truncated, which no server accepts as a
// request. Requests sent through net/http (through a proxy, or with a body
// that cannot be replayed) are checked only before they start.
func WithSendCheck(ctx context.Context, check func() error) context.Context {
	return context.WithValue(ctx, sendCheckKey{}, check)
}

// sendCheckFrom returns the check of WithSendCheck in ctx, or nil.
func sendCheckFrom(ctx context.Context) func() error {
	f, _ := ctx.Value(sendCheckKey{}).(func() error)
	return f
}
