package scenarioutil

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/internal/demo"
)

// MaxBodyBytes bounds the request body a Receiver reads.
const MaxBodyBytes = 1 << 20

// Delivery is one webhook request as a receiver got it.
type Delivery struct {
	// Path is the request path (e.g. /hooks/low-stock).
	Path string
	// ID is the webhook-id header: the same for every attempt, replay and
	// redelivery of one event of one trigger.
	ID string
	// Trigger is the X-Changehook-Trigger header.
	Trigger string
	// Timestamp is the webhook-timestamp header.
	Timestamp time.Time
	// Body is the request body (Extended JSON).
	Body []byte
	// ReceivedAt is when the receiver read the request.
	ReceivedAt time.Time
}

// Decode parses the body (relaxed or canonical Extended JSON) into a
// document.
func (d Delivery) Decode() (bson.D, error) {
	var doc bson.D
	if err := bson.UnmarshalExtJSON(d.Body, false, &doc); err != nil {
		return nil, fmt.Errorf("decode delivery %s: %w", d.ID, err)
	}
	return doc, nil
}

// Indented returns the body re-indented for printing; a body that is not
// JSON is returned unchanged.
func (d Delivery) Indented() string {
	var b bytes.Buffer
	if err := json.Indent(&b, d.Body, "", "  "); err != nil {
		return string(d.Body)
	}
	return b.String()
}

// Handler processes a verified delivery. Returning nil answers 204 No
// Content; returning an error answers its *HTTPError status (500 for other
// errors), which makes changehook retry the same webhook-id later.
type Handler func(ctx context.Context, d Delivery) error

// HTTPError is a handler error with the HTTP status to answer.
type HTTPError struct {
	// Status is the response status code.
	Status int
	// Message is the response body.
	Message string
}

// Error returns the status and message.
func (e *HTTPError) Error() string { return strconv.Itoa(e.Status) + " " + e.Message }

// ReceiverOptions configure StartReceiver.
type ReceiverOptions struct {
	// Listener, when set, is served instead of listening on Addr (useful when
	// the URL must be known before the receiver's options are).
	Listener net.Listener
	// Addr is the listen address when Listener is nil; "" means 127.0.0.1:0
	// (a free port).
	Addr string
	// Secrets are the Standard Webhooks keys ("whsec_" + base64) signatures
	// are checked against. Empty: every request is accepted unverified.
	Secrets []string
	// Handler processes each verified delivery (nil: accept it).
	Handler Handler
	// Now is the clock for the timestamp tolerance (default time.Now).
	Now func() time.Time
	// ConnContext, when set, derives the context of every request on a new
	// connection, when the connection is accepted (http.Server.ConnContext).
	// A scenario that restarts its sender uses it to tell which sender a
	// request came from: a TCP connection belongs to one process, while a
	// request's arrival time does not (a killed process's last request can
	// still be read after its successor started).
	ConnContext func(ctx context.Context, c net.Conn) context.Context
}

// Receiver is a webhook endpoint listening on loopback. It verifies every
// request's Standard Webhooks signature, hands verified deliveries to its
// Handler and records every acknowledged one in Deliveries.
type Receiver struct {
	srv      *http.Server
	ln       net.Listener
	keys     [][]byte
	handler  Handler
	now      func() time.Time
	log      Log[Delivery]
	rejected atomic.Int64
	failed   atomic.Int64
	done     chan struct{} // closed when Serve returned

	mu      sync.Mutex
	active  int           // requests being handled
	closing bool          // Close was called: refuse new requests
	drained chan struct{} // closed when active drops to 0 while closing
}

// StartReceiver decodes opts.Secrets, listens on opts.Addr and serves in a
// background goroutine until Close.
func StartReceiver(opts ReceiverOptions) (*Receiver, error) {
	keys, err := DecodeSecrets(opts.Secrets)
	if err != nil {
		return nil, fmt.Errorf("start receiver: %w", err)
	}
	ln := opts.Listener
	if ln == nil {
		if ln, err = Listen(opts.Addr); err != nil {
			return nil, fmt.Errorf("start receiver: %w", err)
		}
	}
	r := &Receiver{ln: ln, keys: keys, handler: opts.Handler, now: opts.Now, done: make(chan struct{})}
	if r.now == nil {
		r.now = time.Now
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second, ConnContext: opts.ConnContext}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return r, nil
}

// Listen listens on addr ("" means 127.0.0.1:0, a free loopback port).
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// URLOf returns the base URL http://HOST:PORT of a listener.
func URLOf(ln net.Listener) string { return "http://" + ln.Addr().String() }

// DecodeSecrets decodes Standard Webhooks keys ("whsec_" + base64, or bare
// base64) into HMAC keys.
func DecodeSecrets(secrets []string) ([][]byte, error) {
	keys := make([][]byte, 0, len(secrets))
	for i, s := range secrets {
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil || len(k) == 0 {
			return nil, fmt.Errorf("decode signing key %d: not a whsec_ base64 key", i+1)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// URL returns the receiver's base URL, http://127.0.0.1:PORT (no trailing
// slash).
func (r *Receiver) URL() string { return URLOf(r.ln) }

// Deliveries is the log of acknowledged deliveries, in arrival order.
func (r *Receiver) Deliveries() *Log[Delivery] { return &r.log }

// Rejected returns how many requests failed signature verification (or
// were malformed); they were answered 401 or 400.
func (r *Receiver) Rejected() int64 { return r.rejected.Load() }

// Failed returns how many verified deliveries the handler refused.
func (r *Receiver) Failed() int64 { return r.failed.Load() }

// Close stops handling requests (new ones are answered 503, so changehook
// retries them), waits until the requests being handled finish or ctx ends,
// then closes the listener and every connection. It does not wait for idle
// or never-used client connections, unlike http.Server.Shutdown.
func (r *Receiver) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closing = true
	var drained chan struct{}
	if r.active > 0 {
		r.drained = make(chan struct{})
		drained = r.drained
	}
	r.mu.Unlock()
	var err error
	if drained != nil {
		select {
		case <-drained:
		case <-ctx.Done():
			err = fmt.Errorf("close receiver %s: requests still in progress: %w", r.URL(), ctx.Err())
		}
	}
	if cerr := r.srv.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close receiver %s: %w", r.URL(), cerr)
	}
	<-r.done
	return err
}

// begin registers a request; false means the receiver is closing.
func (r *Receiver) begin() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	r.active++
	return true
}

// end unregisters a request registered by begin.
func (r *Receiver) end() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active--
	if r.active == 0 && r.drained != nil {
		close(r.drained)
		r.drained = nil
	}
}

// ServeHTTP verifies, handles and records one delivery.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !r.begin() {
		http.Error(w, "receiver shutting down", http.StatusServiceUnavailable)
		return
	}
	defer r.end()
	if req.Method != http.MethodPost && req.Method != http.MethodPut && req.Method != http.MethodPatch {
		r.rejected.Add(1)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxBodyBytes))
	if err != nil {
		r.rejected.Add(1)
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	d := Delivery{
		Path:       req.URL.Path,
		ID:         req.Header.Get("webhook-id"),
		Trigger:    req.Header.Get("X-Changehook-Trigger"),
		Body:       body,
		ReceivedAt: r.now(),
	}
	tsText := req.Header.Get("webhook-timestamp")
	if sec, err := strconv.ParseInt(tsText, 10, 64); err == nil {
		d.Timestamp = time.Unix(sec, 0)
	}
	if len(r.keys) > 0 {
		if err := demo.Verify(r.keys, d.ID, tsText, req.Header.Get("webhook-signature"), body, d.ReceivedAt, demo.SignatureTolerance); err != nil {
			r.rejected.Add(1)
			http.Error(w, "signature: "+err.Error(), http.StatusUnauthorized)
			return
		}
	}
	if r.handler != nil {
		if err := r.handler(req.Context(), d); err != nil {
			r.failed.Add(1)
			status := http.StatusInternalServerError
			if he, ok := errors.AsType[*HTTPError](err); ok {
				status = he.Status
			}
			http.Error(w, err.Error(), status)
			return
		}
	}
	r.log.Append(d)
	w.WriteHeader(http.StatusNoContent)
}
