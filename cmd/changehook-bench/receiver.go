package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// maxBody bounds the request body the receiver reads.
const maxBody = 1 << 20

// receiver is the local webhook endpoint of one benchmark phase. Every
// document the phase writes carries a sequence number seq in [0, want); the
// receiver finds it in the request body and records when each seq first
// arrived, as a monotonic offset from the benchmark's clock base.
type receiver struct {
	clock *clock
	delay time.Duration // how long each request takes (backpressure run)
	want  int64

	first    []atomic.Int64 // first receipt per seq, clock offset + 1 (0: not yet)
	requests atomic.Int64
	distinct atomic.Int64
	bad      atomic.Int64 // requests whose body had no usable seq
	conns    atomic.Int64 // connections accepted
	scheme   string
	done     chan struct{}
	doneOnce sync.Once
	started  chan struct{} // closed when the first seq arrives
	startOne sync.Once

	ln  net.Listener
	srv *http.Server
}

// startReceiver listens on a free loopback port and serves until close.
// The phase is complete (done is closed) once every seq in [0, want) has
// arrived at least once.
func startReceiver(c *clock, want int, delay time.Duration) (*receiver, error) {
	return startReceiverTLS(c, want, delay, nil)
}

// startReceiverTLS is startReceiver serving HTTPS (HTTP/1.1) with tc when
// it is not nil.
func startReceiverTLS(c *clock, want int, delay time.Duration, tc *tls.Config) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start receiver: %w", err)
	}
	r := &receiver{
		clock: c, delay: delay, want: int64(want),
		first:   make([]atomic.Int64, want),
		done:    make(chan struct{}),
		started: make(chan struct{}),
		ln:      ln,
		scheme:  "http",
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			r.conns.Add(1)
		}
	}}
	if tc != nil {
		r.scheme = "https"
		r.srv.TLSConfig = tc
		r.ln = tls.NewListener(ln, tc)
	}
	go func() { _ = r.srv.Serve(r.ln) }()
	return r, nil
}

// url is the endpoint's URL.
func (r *receiver) url() string { return r.scheme + "://" + r.ln.Addr().String() + "/hook" }

// close stops the server and drops its connections.
func (r *receiver) close() { _ = r.srv.Close() }

// bodyPool holds the receivers' request body buffers: a batch body is tens
// of kilobytes, and reading each into a fresh slice grown from 512 bytes
// cost the receiver — which shares the machine with the system under
// test, in the baselines as in the drains — a copy per doubling.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// readBody reads at most maxBody bytes of r into buf[:0], growing it as
// io.ReadAll does.
func readBody(buf []byte, r io.Reader) ([]byte, error) {
	r = io.LimitReader(r, maxBody)
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// ServeHTTP records one delivery and answers 204 (after delay, if any).
func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	bp := bodyPool.Get().(*[]byte)
	body, err := readBody(*bp, req.Body)
	defer func() {
		if cap(body) <= maxBody {
			*bp = body[:0]
			bodyPool.Put(bp)
		}
	}()
	now := r.clock.now()
	r.requests.Add(1)
	if err != nil {
		r.bad.Add(1)
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	var seqs [128]int64
	found := seqs[:0]
	if len(body) > 0 && body[0] == '[' {
		// A batch: every element's seq, in order.
		found = findSeqs(found, body)
	} else if seq, ok := findSeq(body); ok {
		found = append(found, seq)
	}
	if len(found) == 0 {
		r.bad.Add(1)
		http.Error(w, "no seq in body", http.StatusBadRequest)
		return
	}
	for _, seq := range found {
		if seq < 0 || seq >= r.want {
			r.bad.Add(1)
			http.Error(w, "seq out of range", http.StatusBadRequest)
			return
		}
	}
	if r.delay > 0 {
		t := time.NewTimer(r.delay)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return
		}
	}
	for _, seq := range found {
		if r.first[seq].CompareAndSwap(0, int64(now)+1) {
			n := r.distinct.Add(1)
			if n == 1 {
				r.startOne.Do(func() { close(r.started) })
			}
			if n == r.want {
				r.doneOnce.Do(func() { close(r.done) })
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// wait blocks until every seq arrived, ctx ends or timeout passes.
func (r *receiver) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for deliveries: %w", ctx.Err())
	case <-t.C:
		return fmt.Errorf("wait for deliveries: %d of %d events arrived within %v (%d requests, %d unusable)",
			r.distinct.Load(), r.want, timeout, r.requests.Load(), r.bad.Load())
	}
}

// receipts returns the first-receipt offset of every seq that arrived
// (index = seq; -1 for one that did not).
func (r *receiver) receipts() []time.Duration {
	out := make([]time.Duration, len(r.first))
	for i := range r.first {
		v := r.first[i].Load()
		if v == 0 {
			out[i] = -1
			continue
		}
		out[i] = time.Duration(v - 1)
	}
	return out
}

// span returns the first and last first-receipt offsets.
func (r *receiver) span() (first, last time.Duration, err error) {
	first, last = -1, -1
	for _, d := range r.receipts() {
		if d < 0 {
			continue
		}
		if first < 0 || d < first {
			first = d
		}
		if d > last {
			last = d
		}
	}
	if first < 0 {
		return 0, 0, errors.New("no event arrived")
	}
	return first, last, nil
}

// seqKey is the field every benchmark document carries its sequence
// number in.
var seqKey = []byte(`"seq"`)

// findSeq extracts the first "seq": <integer> in a JSON body (relaxed
// Extended JSON from changehook, JSON.stringify from the Node baseline). It
// is a scan, not a JSON decoder, so that the receiver costs little CPU on
// the machine it shares with the system under test.
func findSeq(body []byte) (int64, bool) {
	i := bytes.Index(body, seqKey)
	if i < 0 {
		return 0, false
	}
	return seqValue(body[i+len(seqKey):])
}

// seqValue reads the ": <integer>" that follows a "seq" key.
func seqValue(rest []byte) (int64, bool) {
	j := 0
	for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t' || rest[j] == '\n' || rest[j] == '\r') {
		j++
	}
	if j >= len(rest) || rest[j] != ':' {
		return 0, false
	}
	j++
	for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t' || rest[j] == '\n' || rest[j] == '\r') {
		j++
	}
	var n int64
	digits := 0
	for ; j < len(rest) && rest[j] >= '0' && rest[j] <= '9'; j++ {
		if digits >= 18 {
			return 0, false
		}
		n = n*10 + int64(rest[j]-'0')
		digits++
	}
	return n, digits > 0
}

// findSeqs appends every "seq": <integer> of a batch body (a JSON array
// of events, one seq each) to out, in order. It looks for the key's 'q',
// rare in the benchmark's events, rather than its opening quote, which
// starts every key and string: one vectorised pass over the body instead
// of a search restarted at every quote.
func findSeqs(out []int64, body []byte) []int64 {
	for i := 0; ; {
		j := bytes.IndexByte(body[i:], 'q')
		if j < 0 {
			return out
		}
		q := i + j // the 'q' of a candidate "seq"
		i = q + 1
		if q < 3 || q+2 > len(body) || string(body[q-3:q+2]) != `"seq"` {
			continue
		}
		if seq, ok := seqValue(body[q+2:]); ok {
			out = append(out, seq)
		}
	}
}

// clock is the benchmark's single monotonic time base: writers record write
// acknowledgements and receivers record receipts against it.
type clock struct{ base time.Time }

func newClock() *clock { return &clock{base: time.Now()} }

// now returns the monotonic offset since the base.
func (c *clock) now() time.Duration { return time.Since(c.base) }
