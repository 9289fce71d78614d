// Package demo is the `changehook dev --demo` experience: a local webhook
// receiver that verifies Standard Webhooks signatures and prints every
// delivery readably, and a writer that reproduces the inventory lesson
// (fruit quantities dropping until the low-stock trigger fires).
package demo

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
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
	"time"
)

// MaxBodyBytes bounds the request body the receiver reads.
const MaxBodyBytes = 1 << 20

// SignatureTolerance is how far webhook-timestamp may be from the receiver's
// clock (the Standard Webhooks recommendation).
const SignatureTolerance = 5 * time.Minute

// ReceiverOptions configure a Receiver.
type ReceiverOptions struct {
	// Addr is the listen address (host:port).
	Addr string
	// Secrets are the Standard Webhooks keys ("whsec_..." or raw base64)
	// signatures are checked against; none: signatures are not checked.
	Secrets []string
	// Out receives one line per delivery.
	Out io.Writer
	// Now is the clock for the timestamp tolerance (default time.Now).
	Now func() time.Time
}

// Receiver is a running demo webhook receiver.
type Receiver struct {
	opts ReceiverOptions
	keys [][]byte
	ln   net.Listener
	srv  *http.Server
	done chan error
	mu   sync.Mutex // serializes writes to opts.Out
}

// StartReceiver decodes the secrets, listens on opts.Addr and serves in a
// background goroutine until Close. Every request is answered 204 when its
// signature verifies (or no secret is configured) and 401 otherwise; each is
// printed on opts.Out.
func StartReceiver(opts ReceiverOptions) (*Receiver, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Receiver{opts: opts, done: make(chan error, 1)}
	for i, s := range opts.Secrets {
		k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil {
			return nil, fmt.Errorf("start demo receiver: secret %d is not valid base64", i+1)
		}
		r.keys = append(r.keys, k)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("start demo receiver: %w", err)
	}
	r.ln = ln
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		err := r.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		r.done <- err
	}()
	return r, nil
}

// Addr returns the address the receiver listens on.
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// Close stops the receiver, letting active requests finish until ctx is done.
func (r *Receiver) Close(ctx context.Context) error {
	err := r.srv.Shutdown(ctx)
	if err != nil {
		_ = r.srv.Close()
		err = fmt.Errorf("stop demo receiver: %w", err)
	}
	if serr := <-r.done; serr != nil && err == nil {
		err = fmt.Errorf("demo receiver: %w", serr)
	}
	return err
}

// ServeHTTP verifies and prints one delivery.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxBodyBytes+1))
	if err != nil || len(body) > MaxBodyBytes {
		http.Error(w, "body unreadable or too large", http.StatusRequestEntityTooLarge)
		return
	}
	id := req.Header.Get("webhook-id")
	verdict := "unsigned (no secret configured)"
	status := http.StatusNoContent
	if len(r.keys) > 0 {
		if err := Verify(r.keys, id, req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature"), body, r.opts.Now(), SignatureTolerance); err != nil {
			verdict, status = "signature INVALID: "+err.Error(), http.StatusUnauthorized
		} else {
			verdict = "signature ok"
		}
	}
	r.mu.Lock()
	fmt.Fprintf(r.opts.Out, "[receiver] %s  %s %s  trigger=%s id=%s  %s\n           %s\n",
		r.opts.Now().Format("15:04:05"), req.Method, req.URL.Path, req.Header.Get("X-Changehook-Trigger"), id, verdict, describe(body))
	r.mu.Unlock()
	w.WriteHeader(status)
}

// describe renders a payload for a person: the "text" field of a chat-style
// message, or the compact JSON, shortened.
func describe(body []byte) string {
	var msg struct {
		Text *string `json:"text"`
	}
	if json.Unmarshal(body, &msg) == nil && msg.Text != nil {
		return *msg.Text
	}
	var buf bytes.Buffer
	if json.Compact(&buf, body) != nil {
		buf.Reset()
		buf.Write(body)
	}
	s := buf.String()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// Verify checks a Standard Webhooks signature: webhook-timestamp must be
// within tolerance of now, and one of the space-separated "v1,<base64>"
// signatures must equal the HMAC-SHA256 of "id.timestamp.body" under one of
// keys (already base64-decoded). Comparisons are constant-time.
func Verify(keys [][]byte, id, timestamp, signatures string, body []byte, now time.Time, tolerance time.Duration) error {
	if id == "" || timestamp == "" || signatures == "" {
		return errors.New("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("webhook-timestamp is not a number of seconds")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook-timestamp is %s away from now", d.Round(time.Second))
	}
	for _, key := range keys {
		mac := hmac.New(sha256.New, key)
		fmt.Fprintf(mac, "%s.%s.", id, timestamp)
		mac.Write(body)
		want := mac.Sum(nil)
		for _, sig := range strings.Fields(signatures) {
			version, b64, ok := strings.Cut(sig, ",")
			if !ok || version != "v1" {
				continue
			}
			got, err := base64.StdEncoding.DecodeString(b64)
			if err == nil && hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return errors.New("no signature matches")
}
