package dispatcher

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// withNetHTTPOnly sends requests through http.Client and net/http's
// Transport (the path before the direct transport): the reference the
// direct path is compared with.
func withNetHTTPOnly() Option { return func(o *options) { o.netHTTPOnly = true } }

// rawServer is a TCP endpoint that records every request's exact bytes
// and answers each with a scripted raw HTTP response.
type rawServer struct {
	ln     net.Listener
	scheme string // "http", or "https" (newRawServerTLS)
	// respond returns the raw response to request n (from 1), and whether
	// to close the connection after writing it. An empty response holds
	// the request unanswered until the client closes the connection. A
	// response is written in one write (over TLS, one record), or one per
	// part separated by rawSplit.
	respond func(n int) (resp string, closeConn bool)
	written chan int // request n's response was written

	mu       sync.Mutex
	requests [][]byte
	conns    int
	open     []net.Conn
	closed   chan struct{} // one value per connection the server closed
	ended    chan struct{} // one value per connection the client ended between requests
	wg       sync.WaitGroup
}

// rawSplit separates the parts of a scripted response written one by one.
const rawSplit = "\x00split\x00"

func newRawServer(t *testing.T, respond func(n int) (string, bool)) *rawServer {
	return newRawServerTLS(t, respond, nil)
}

// newRawServerTLS is newRawServer serving TLS with p's server certificate
// (HTTP/1.1: no ALPN) when p is not nil.
func newRawServerTLS(t *testing.T, respond func(n int) (string, bool), p *testPKI) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	scheme := "http"
	if p != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{p.serverCert}})
		scheme = "https"
	}
	s := &rawServer{ln: ln, scheme: scheme, respond: respond, closed: make(chan struct{}, 64), ended: make(chan struct{}, 64), written: make(chan int, 64)}
	s.wg.Go(s.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.open { // idle keep-alive connections
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) url() string { return s.scheme + "://" + s.ln.Addr().String() + "/hook?x=1" }

func (s *rawServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns++
		s.open = append(s.open, c)
		s.mu.Unlock()
		s.wg.Go(func() { s.serve(c) })
	}
}

// serve reads requests (head up to the blank line, then Content-Length
// bytes) and answers them until the connection ends.
func (s *rawServer) serve(c net.Conn) {
	defer func() { _ = c.Close() }()
	br := bufio.NewReader(c)
	for {
		var req bytes.Buffer
		length := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				if req.Len() == 0 {
					select {
					case s.ended <- struct{}{}:
					default:
					}
				}
				return
			}
			req.WriteString(line)
			if line == "\r\n" {
				break
			}
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
				length, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		req.Write(body)
		s.mu.Lock()
		s.requests = append(s.requests, req.Bytes())
		n := len(s.requests)
		s.mu.Unlock()
		resp, closeConn := s.respond(n)
		if resp == "" {
			_, _ = io.Copy(io.Discard, br) // hold until the client gives up
			return
		}
		var werr error
		for part := range strings.SplitSeq(resp, rawSplit) {
			if _, werr = io.WriteString(c, part); werr != nil {
				break
			}
		}
		// Done with response n, also when the client closed before taking
		// all of it (a large body it does not drain: over TLS the socket
		// buffers do not hold it all).
		select {
		case s.written <- n:
		default:
		}
		if werr != nil {
			return
		}
		if closeConn {
			_ = c.Close()
			s.closed <- struct{}{}
			return
		}
	}
}

func (s *rawServer) recorded() (requests [][]byte, conns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.requests...), s.conns
}

// script answers request n with resps[n-1] (the last one for later
// requests); a response prefixed with "close:" closes the connection after
// it is written.
func script(resps ...string) func(int) (string, bool) {
	return func(n int) (string, bool) {
		r := resps[min(n, len(resps))-1]
		after, closeConn := strings.CutPrefix(r, "close:")
		return after, closeConn
	}
}

// deliveryOutcome is what one scripted run of Sender.Deliver shows: the
// bytes on the wire, the connections, the result and the backoff waits.
type deliveryOutcome struct {
	requests [][]byte
	conns    int
	res      Result
	err      string
	sleeps   []time.Duration
	attempts []string // per observed attempt: status, reason, retry
}

// runScripted delivers two events one after the other with a fresh
// Sender (net/http's Transport when netHTTP) against a fresh rawServer
// answering as resp says; the clock is fake, so timestamps and signatures
// are the same in every run.
func runScripted(t *testing.T, p *testPKI, netHTTP, noAwait bool, retry triggers.RetryPolicy, timeout time.Duration, resp func(int) (string, bool)) deliveryOutcome {
	t.Helper()
	srv := newRawServerTLS(t, resp, p)
	tl := p.trust(t)
	var out deliveryOutcome
	var mu sync.Mutex
	fc := newFakeClock()
	// The longest wait the jitter allows: deterministic, and a longer
	// Retry-After still wins.
	backoff := ExponentialJitterBackoff(fc.Now, func(n int64) int64 { return n - 1 })
	opts := []Option{WithClock(fc), WithBackoff(backoff), WithObserver(func(a Attempt) {
		mu.Lock()
		defer mu.Unlock()
		out.attempts = append(out.attempts, fmt.Sprintf("%d %s %v %q", a.Status, a.Reason, a.Retry, a.Body))
	})}
	if netHTTP {
		opts = append(opts, withNetHTTPOnly())
	}
	s := newTestSender(t, &triggers.Trigger{
		Webhook: triggers.Webhook{URL: srv.url(), Secrets: []triggers.Secret{testSecret}, Timeout: timeout, TLS: tl,
			Headers: map[string]triggers.Secret{"X-Tenant": "acme", "Authorization": "Bearer abc"}},
		Retry: retry,
	}, opts...)
	dt, direct := s.http.Transport.(*directTransport)
	if direct == netHTTP {
		t.Fatalf("transport %T with netHTTPOnly %v", s.http.Transport, netHTTP)
	}
	if direct {
		dt.noAwait = noAwait
	}
	var errs []string
	written := map[int]bool{}
	for i := range 2 {
		res, err := s.Deliver(context.Background(), testEvent(t, i+1, "k"))
		out.res = res
		if err != nil {
			errs = append(errs, err.Error())
		}
		// Every response to the requests so far is written (all of its
		// parts) before the next delivery starts.
		reqs, _ := srv.recorded()
		for n := 1; n <= len(reqs); n++ {
			for r, _ := resp(n); r != "" && !written[n]; {
				select {
				case w := <-srv.written:
					written[w] = true
				case <-time.After(time.Minute):
					t.Fatalf("response %d not written", n)
				}
			}
		}
	}
	// A request can be answered before the server has read it: net/http
	// takes bytes already waiting on a reused connection (a response too
	// many) as its answer. Every attempt's request is recorded before the
	// outcomes are compared.
	waitFor(t, func() bool {
		reqs, _ := srv.recorded()
		mu.Lock()
		defer mu.Unlock()
		return len(reqs) >= len(out.attempts)
	})
	// The two runs' servers listen on different ports.
	addr := srv.ln.Addr().String()
	out.err = strings.ReplaceAll(strings.Join(errs, "; "), addr, "ENDPOINT")
	out.requests, out.conns = srv.recorded()
	for i, r := range out.requests {
		out.requests[i] = bytes.ReplaceAll(r, []byte(addr), []byte("ENDPOINT"))
	}
	out.sleeps = fc.Sleeps()
	return out
}

// TestDirectTransportMatchesNetHTTP is the differential test of the direct
// transport: for each scripted endpoint, the same deliveries through it and
// through net/http's Transport put the same bytes on the wire (headers,
// signature and body), open the same number of connections, and end with
// the same results, attempts and backoff waits (Retry-After included).
func TestDirectTransportMatchesNetHTTP(t *testing.T) {
	big := strings.Repeat("x", 10<<10)
	huge := strings.Repeat("y", 100<<10)
	tests := []struct {
		name    string
		retry   triggers.RetryPolicy
		resp    func(int) (string, bool)
		timeout time.Duration
		conns   int
		// refConnsVary: net/http's own count depends on timing (the
		// direct transport's must still be conns).
		refConnsVary bool
	}{
		{name: "200 empty", resp: script("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), conns: 1},
		{name: "204", resp: script("HTTP/1.1 204 No Content\r\n\r\n"), conns: 1},
		{name: "200 with body", resp: script("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), conns: 1},
		{name: "500 then 200", retry: triggers.RetryPolicy{MaxAttempts: 3},
			resp: script("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), conns: 1},
		{name: "429 Retry-After seconds", retry: triggers.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Minute},
			resp: script("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), conns: 1},
		{name: "503 Retry-After date capped", retry: triggers.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Second},
			resp: script("HTTP/1.1 503 Service Unavailable\r\nRetry-After: Fri, 31 Dec 2099 23:59:59 GMT\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"), conns: 1},
		{name: "chunked 400 is permanent", retry: triggers.RetryPolicy{MaxAttempts: 3},
			resp: script("HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nbad r\r\n6\r\nequest\r\n0\r\n\r\n"), conns: 1},
		{name: "100 Continue then 201", resp: script("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"), conns: 1},
		{name: "10 KiB body kept to 4 KiB, connection reused", retry: triggers.RetryPolicy{MaxAttempts: 2},
			resp: script("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 10240\r\n\r\n"+big, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), conns: 1},
		{name: "100 KiB body not drained, connection closed", retry: triggers.RetryPolicy{MaxAttempts: 2},
			resp: script("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 102400\r\n\r\n"+huge, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), conns: 2},
		{name: "Connection: close", resp: script("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"), conns: 2},
		{name: "body until close", resp: script("close:HTTP/1.1 200 OK\r\n\r\ndone"), conns: 2},
		// The timeout must be long enough for the second attempt's
		// immediate answer to arrive in time on a loaded machine: one
		// more timeout there means one more attempt, backoff and
		// webhook-timestamp in one of the two runs.
		{name: "timeout then 200", retry: triggers.RetryPolicy{MaxAttempts: 3}, timeout: 500 * time.Millisecond,
			resp: script("", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), conns: 2},
		{name: "answer cut short", retry: triggers.RetryPolicy{MaxAttempts: 3},
			resp: script("close:HTTP/1.1 200 OK\r\nContent-Len", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), conns: 2},
		// Bytes after the response (here a second one, in a write and so a
		// TLS record of its own) retire the connection: the next request's
		// answer is never read from them. net/http retires it only when
		// they arrive before it hands the connection out again, which over
		// TLS they sometimes do not (1 run in 10 under -race).
		{name: "a response too many", resp: script("HTTP/1.1 204 No Content\r\n\r\n" + rawSplit + "HTTP/1.1 204 No Content\r\n\r\n"), conns: 2,
			refConnsVary: true},
	}
	pki := newTestPKI(t)
	for _, p := range []*testPKI{nil, pki} {
		scheme := map[bool]string{false: "http", true: "https"}[p != nil]
		for _, tt := range tests {
			t.Run(scheme+"/"+tt.name, func(t *testing.T) {
				ref := runScripted(t, p, true, false, tt.retry, tt.timeout, tt.resp)
				for _, noAwait := range []bool{false, true} {
					t.Run(map[bool]string{false: "last write awaits the response", true: "last write returns at once"}[noAwait], func(t *testing.T) {
						got := runScripted(t, p, false, noAwait, tt.retry, tt.timeout, tt.resp)
						ref := ref
						if tt.refConnsVary {
							ref.conns = got.conns // checked against tt.conns alone
						}
						compareScripted(t, tt.conns, got, ref)
					})
				}
			})
		}
	}
}

// compareScripted fails t where the direct transport's outcome got
// differs from net/http's, ref.
func compareScripted(t *testing.T, conns int, got, ref deliveryOutcome) {
	t.Helper()
	if len(got.requests) != len(ref.requests) {
		t.Fatalf("direct sent %d requests, net/http %d", len(got.requests), len(ref.requests))
	}
	for i := range ref.requests {
		if !bytes.Equal(got.requests[i], ref.requests[i]) {
			t.Fatalf("request %d differs:\ndirect:\n%s\nnet/http:\n%s", i+1, got.requests[i], ref.requests[i])
		}
	}
	if got.conns != ref.conns || got.conns != conns {
		t.Errorf("connections: direct %d, net/http %d, want %d", got.conns, ref.conns, conns)
	}
	if got.res != ref.res {
		t.Errorf("result: direct %+v, net/http %+v", got.res, ref.res)
	}
	if got.err != ref.err {
		t.Errorf("error: direct %q, net/http %q", got.err, ref.err)
	}
	if !equalDurations(got.sleeps, ref.sleeps) {
		t.Errorf("backoff waits: direct %v, net/http %v", got.sleeps, ref.sleeps)
	}
	if strings.Join(got.attempts, "\n") != strings.Join(ref.attempts, "\n") {
		t.Errorf("attempts:\ndirect:   %q\nnet/http: %q", got.attempts, ref.attempts)
	}
}

// trust returns the webhook.tls that trusts p's CA (nil for a nil p).
func (p *testPKI) trust(t *testing.T) *triggers.TLS {
	t.Helper()
	if p == nil {
		return nil
	}
	tl := &triggers.TLS{CAFile: p.caFile}
	if err := tl.LoadFiles(); err != nil {
		t.Fatal(err)
	}
	return tl
}

// TestDirectTransportClosesIdleConnections: a connection idle for the
// idle timeout is closed (and its place in the pool given back: the next
// delivery dials again), one the next delivery takes before then is
// reused; over http and https.
func TestDirectTransportClosesIdleConnections(t *testing.T) {
	pki := newTestPKI(t)
	for _, p := range []*testPKI{nil, pki} {
		for _, idle := range []time.Duration{time.Hour, 20 * time.Millisecond} {
			testClosesIdleConnections(t, p, idle)
		}
	}
}

func testClosesIdleConnections(t *testing.T, p *testPKI, idle time.Duration) {
	{
		srv := newRawServerTLS(t, script("HTTP/1.1 204 No Content\r\n\r\n"), p)
		s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: srv.url(), TLS: p.trust(t)}, Retry: triggers.RetryPolicy{MaxAttempts: 1}}, WithClock(newFakeClock()))
		dt, ok := s.http.Transport.(*directTransport)
		if !ok {
			t.Fatalf("transport %T, want the direct transport", s.http.Transport)
		}
		dt.idleTimeout = idle
		for i := range 2 {
			// No context of its own: its end would retire the connection.
			if res, err := s.Deliver(context.Background(), testEvent(t, i, "k")); err != nil || res.Attempts != 1 {
				t.Fatalf("idle timeout %v, delivery %d: %+v, %v; want success at the first attempt", idle, i+1, res, err)
			}
			if idle == time.Hour {
				continue // the next delivery reuses the connection
			}
			select {
			case <-srv.ended:
			case <-time.After(time.Minute):
				t.Fatalf("%s, idle timeout %v, delivery %d: its idle connection was not closed", srv.scheme, idle, i+1)
			}
		}
		want := map[time.Duration]int{time.Hour: 1, 20 * time.Millisecond: 2}[idle]
		if _, conns := srv.recorded(); conns != want {
			t.Fatalf("%s, idle timeout %v: %d connections, want %d", srv.scheme, idle, conns, want)
		}
	}
}

// TestDirectTransportTLSFailures: an https endpoint that never completes
// the handshake fails the attempt by the webhook timeout through the direct
// transport as through net/http's; one that answers in clear text is a tls
// failure with its hint (net/http's Transport replaces crypto/tls's error
// there with its own text, a connection failure; both are retried by the
// same rule).
func TestDirectTransportTLSFailures(t *testing.T) {
	// A plain HTTP server answers the ClientHello with a 400 in clear text.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	plain.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(plain.Close)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held <- c // accepted, never answered
		}
	}()
	t.Cleanup(func() {
		_ = silent.Close()
		for {
			select {
			case c := <-held:
				_ = c.Close()
			default:
				return
			}
		}
	})
	for _, tt := range []struct {
		name, url, reason, message    string
		netHTTPReason, netHTTPMessage string
	}{
		{"plain http on an https URL", "https://" + plain.Listener.Addr().String() + "/hook", ReasonTLS, "the server does not speak TLS; check the URL's scheme and port",
			ReasonConnection, "server gave HTTP response to HTTPS client"},
		{"no handshake", "https://" + silent.Addr().String() + "/hook", ReasonTimeout, "no response within the webhook timeout",
			ReasonTimeout, "no response within the webhook timeout"},
	} {
		for _, netHTTP := range []bool{true, false} {
			reason, message := tt.reason, tt.message
			if netHTTP {
				reason, message = tt.netHTTPReason, tt.netHTTPMessage
			}
			var opts []Option
			if netHTTP {
				opts = append(opts, withNetHTTPOnly())
			}
			s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: tt.url, Timeout: 300 * time.Millisecond},
				Retry: triggers.RetryPolicy{MaxAttempts: 1}}, opts...)
			if _, direct := s.http.Transport.(*directTransport); direct == netHTTP {
				t.Fatalf("%s: transport %T with netHTTPOnly %v", tt.name, s.http.Transport, netHTTP)
			}
			res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
			if err == nil || res.Reason != reason || !strings.Contains(err.Error(), message) {
				t.Errorf("%s (net/http %v): %+v, %v; want reason %s and %q", tt.name, netHTTP, res, err, reason, message)
			}
		}
	}
}

// TestDirectTransportSkipsClosedIdleConnection checks that a keep-alive
// connection the server closed while it was idle is not used for the next
// delivery: it goes out on a new connection at its first attempt.
func TestDirectTransportSkipsClosedIdleConnection(t *testing.T) {
	srv := newRawServer(t, script("close:HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: srv.url()}, Retry: triggers.RetryPolicy{MaxAttempts: 1}}, WithClock(newFakeClock()))
	if _, ok := s.http.Transport.(*directTransport); !ok {
		t.Fatalf("transport %T, want the direct transport", s.http.Transport)
	}
	for i := range 3 {
		res, err := s.Deliver(context.Background(), testEvent(t, i, "k"))
		if err != nil || res.Attempts != 1 {
			t.Fatalf("delivery %d: %+v, %v; want success at the first attempt", i+1, res, err)
		}
		<-srv.closed // the server closed the (keep-alive) connection
	}
	if _, conns := srv.recorded(); conns != 3 {
		t.Fatalf("%d connections, want 3", conns)
	}
}

// TestDirectTransportCancel checks that canceling the delivery's context
// aborts a request in flight (the endpoint never answers; the webhook
// timeout is far away).
func TestDirectTransportCancel(t *testing.T) {
	seen := make(chan struct{})
	var once sync.Once
	// The server's answer is set before it starts: the request reaching
	// it over TCP is no happens-before edge for the race detector.
	srv := newRawServer(t, func(int) (string, bool) {
		once.Do(func() { close(seen) })
		return "", false
	})
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: srv.url(), Timeout: time.Hour}, Retry: triggers.RetryPolicy{MaxAttempts: 1}},
		WithClock(newFakeClock()))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-seen
		cancel()
	}()
	res, err := s.Deliver(ctx, testEvent(t, 1, "k"))
	if res.Reason != ReasonCanceled || !errors.Is(err, context.Canceled) {
		t.Fatalf("Deliver = %+v, %v; want canceled", res, err)
	}
}

// TestDirectTransportCancelWrappedContext checks that a connection keeps
// watching a context for the next request whose context has the same Done
// channel (a context.WithValue of it, as the runner's lease gate makes per
// request), and that canceling it still aborts that request.
func TestDirectTransportCancelWrappedContext(t *testing.T) {
	seen := make(chan struct{})
	var once sync.Once
	srv := newRawServer(t, func(n int) (string, bool) {
		if n == 1 {
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false
		}
		once.Do(func() { close(seen) })
		return "", false // never answers
	})
	u, err := url.Parse(srv.url())
	if err != nil {
		t.Fatal(err)
	}
	dt := newDirectTransport(u, 1, time.Hour, (&net.Dialer{}).DialContext, nil, http.DefaultTransport, nil)
	if dt == nil {
		t.Skip("no direct transport on this platform")
	}
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	send := func() (*http.Response, error) {
		ctx := WithSendCheck(parent, func() error { return nil }) // a new context each time
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.url(), strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		return dt.RoundTrip(req)
	}
	resp, err := send()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	c := <-dt.idle
	firstWatched := c.watched
	dt.idle <- c
	go func() {
		<-seen
		cancel()
	}()
	if _, err := send(); !errors.Is(err, context.Canceled) {
		t.Fatalf("second request: %v, want context.Canceled", err)
	}
	if c.watched != firstWatched {
		t.Errorf("the connection registered the second request's context again; want the first's registration kept")
	}
	if _, conns := srv.recorded(); conns != 1 {
		t.Errorf("%d connections, want 1 (the idle one reused)", conns)
	}
}

// TestDirectTransportConnectionBound delivers many events through a
// dispatcher with concurrency 4 over the direct transport: every event is
// delivered once, on at most 4 connections.
func TestDirectTransportConnectionBound(t *testing.T) {
	var conns, requests atomic.Int64
	seen := sync.Map{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if _, dup := seen.LoadOrStore(r.Header.Get("webhook-id"), true); dup {
			t.Errorf("webhook-id %s delivered twice", r.Header.Get("webhook-id"))
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: srv.URL}, Ordering: triggers.None, Concurrency: 4}, nil)
	if _, ok := d.sender.http.Transport.(*directTransport); !ok {
		t.Fatalf("transport %T, want the direct transport", d.sender.http.Transport)
	}
	const n = 300
	for i := range n {
		if err := d.Submit(context.Background(), testEvent(t, i, strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := requests.Load(); got != n {
		t.Fatalf("%d requests, want %d", got, n)
	}
	if c := conns.Load(); c < 1 || c > 4 {
		t.Fatalf("%d connections, want 1 to 4", c)
	}
}

// TestDirectTransportFallbackTimeout checks the requests the direct
// transport hands to its fallback (here: one with Expect: 100-continue):
// they get the webhook timeout as a context deadline, a timeout is reported
// as the webhook timeout, and the deadline's context lives until the
// response body is closed.
func TestDirectTransportFallbackTimeout(t *testing.T) {
	u, err := url.Parse("http://127.0.0.1:1/hook")
	if err != nil {
		t.Fatal(err)
	}
	var reqCtx context.Context
	fallback := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		reqCtx = r.Context()
		if r.Header.Get("X-Hold") != "" {
			<-r.Context().Done()
			return nil, r.Context().Err()
		}
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
	})
	dt := newDirectTransport(u, 1, 20*time.Millisecond, (&net.Dialer{}).DialContext, nil, fallback, nil)
	if dt == nil {
		t.Skip("no direct transport on this platform")
	}
	req, err := http.NewRequest(http.MethodPost, u.String(), strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("X-Hold", "1")
	_, err = dt.RoundTrip(req)
	var te *attemptTimeoutError
	if !errors.As(err, &te) || !isTimeout(err) {
		t.Fatalf("held fallback request: %v, want the webhook timeout", err)
	}
	req.Header.Del("X-Hold")
	resp, err := dt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := reqCtx.Deadline(); !ok || reqCtx.Err() != nil {
		t.Fatalf("fallback request context: deadline set %v, err %v; want a live deadline until the body is closed", ok, reqCtx.Err())
	}
	if body, _ := readBody(resp, 0); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if !errors.Is(reqCtx.Err(), context.Canceled) {
		t.Fatalf("after the body was closed the request context is %v, want canceled", reqCtx.Err())
	}
}

// TestDirectTransportAnswerBeforeBody: an endpoint that answers 413 and
// closes the connection after reading only the request's head (the body,
// 8 MiB, does not fit in the socket buffers, so the write fails) gets its
// answer through, a permanent client error at the first attempt, rather
// than a connection error to retry. (net/http's Transport reports the
// answer only when it wins the race with the write error: in five runs of
// this test through it, 2 saw the 413 after retries, 3 gave up on
// connection errors.)
func TestDirectTransportAnswerBeforeBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil || line == "\r\n" {
					break
				}
			}
			_, _ = io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 8\r\n\r\ntoo big!")
			_ = c.Close() // with the body unread
		}
	})
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: "http://" + ln.Addr().String() + "/hook"},
		Retry: triggers.RetryPolicy{MaxAttempts: 3}}, WithClock(newFakeClock()))
	if _, ok := s.http.Transport.(*directTransport); !ok {
		t.Fatalf("transport %T, want the direct transport", s.http.Transport)
	}
	tok := mustMarshal(t, bson.D{{Key: "_data", Value: "82AB"}})
	raw := mustMarshal(t, bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
		{Key: "fullDocument", Value: bson.D{{Key: "blob", Value: strings.Repeat("z", 8<<20)}}}})
	res, err := s.Deliver(context.Background(), Event{Raw: raw, Token: tok})
	if err == nil || res.Status != http.StatusRequestEntityTooLarge || res.Reason != ReasonClientError || res.Attempts != 1 || res.Body != "too big!" {
		t.Fatalf("Deliver = %+v, %v; want the endpoint's 413 at the first attempt, permanent", res, err)
	}
}

// TestDirectSendCheck: a request whose WithSendCheck check fails when it is
// about to be written never reaches the server, RoundTrip returns the
// check's error, and the next request (check passing) is sent normally on a
// new connection; over http and https.
func TestDirectSendCheck(t *testing.T) {
	for _, https := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[https], func(t *testing.T) { testDirectSendCheck(t, https) })
	}
}

func testDirectSendCheck(t *testing.T, https bool) {
	var got atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewServer(h)
	var tc *tls.Config
	if https {
		srv.Close()
		srv = httptest.NewTLSServer(h)
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		tc = &tls.Config{RootCAs: pool}
	}
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	dt := newDirectTransport(u, 1, 5*time.Second, (&net.Dialer{}).DialContext, nil, http.DefaultTransport, tc)
	if dt == nil {
		t.Skip("no direct transport on this platform")
	}
	errFenced := errors.New("lease lost")
	checks := 0
	refuse := func() error { checks++; return errFenced }
	req, err := http.NewRequestWithContext(WithSendCheck(context.Background(), refuse), http.MethodPost, srv.URL, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dt.RoundTrip(req); !errors.Is(err, errFenced) {
		t.Fatalf("RoundTrip with a failing send check: %v, want its error", err)
	}
	if checks != 1 {
		t.Errorf("send check called %d times, want 1", checks)
	}
	req, err = http.NewRequestWithContext(WithSendCheck(context.Background(), func() error { return nil }), http.MethodPost, srv.URL, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := dt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || got.Load() != 1 {
		t.Errorf("after a refused request: status %d, server saw %d requests; want 204 and only the second", resp.StatusCode, got.Load())
	}
}

// countingConn counts the writes made to it.
type countingConn struct {
	net.Conn
	writes *atomic.Int32
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestDirectTransportLargeBody: a body many times the connection's buffer
// (a batch's) arrives whole after the head, leaves in at most two writes
// (not one per buffer's worth), and only after the send check; a failing
// check keeps all of it from the server.
func TestDirectTransportLargeBody(t *testing.T) {
	body := bytes.Repeat([]byte(`{"k":"0123456789abcdef"},`), 3000) // 75,000 bytes
	got := make(chan []byte, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server read: %v", err)
		}
		got <- b
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: srv.URL + "/hook"}})
	if !s.directBody {
		t.Skip("no direct transport on this platform")
	}
	var writes atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: &writes}, nil
	}
	dt := newDirectTransport(s.reqURL, 1, 5*time.Second, dial, nil, http.DefaultTransport, nil)
	for _, tc := range []struct {
		name   string
		refuse bool
	}{{name: "sent"}, {name: "check fails", refuse: true}} {
		t.Run(tc.name, func(t *testing.T) {
			writes.Store(0)
			errFenced := errors.New("lease lost")
			writesAtCheck := int32(-1)
			check := func() error {
				writesAtCheck = writes.Load()
				if tc.refuse {
					return errFenced
				}
				return nil
			}
			req := s.newRequest(WithSendCheck(context.Background(), check), body)
			req.Header = s.header("msg_big", time.Unix(1_700_000_000, 0), body, nil)
			resp, err := dt.RoundTrip(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
			if writesAtCheck != 0 {
				t.Fatalf("%d writes before the send check (-1: no check), want 0", writesAtCheck)
			}
			if tc.refuse {
				if !errors.Is(err, errFenced) {
					t.Fatalf("RoundTrip with a failing send check: %v, want its error", err)
				}
				if n := writes.Load(); n != 0 {
					t.Fatalf("%d writes after a failing check, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b := <-got; !bytes.Equal(b, body) {
				t.Fatalf("server got %d bytes, want the %d sent", len(b), len(body))
			}
			if n := writes.Load(); n < 1 || n > 2 {
				t.Fatalf("body of %d bytes left in %d writes, want 1 or 2", len(body), n)
			}
		})
	}
}
