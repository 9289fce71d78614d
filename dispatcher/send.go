package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// outcome is the result of sending one event through the retry policy.
type outcome struct {
	attempts     int
	status       int
	reason       string
	body         string
	lastErr      error // last real failure (never a cancellation), redacted
	firstAttempt time.Time
}

// sendState is the per-delivery state shared by the retryablehttp hooks.
// sendStates are pooled per Dispatcher (getSendState): each carries its own
// retryablehttp.Client whose hooks are bound to it once, and is used by one
// send at a time.
type sendState struct {
	d       *Dispatcher
	id      string
	payload []byte
	out     outcome
	wait    time.Duration // next wait, computed by the Backoff hook
	lastLog string        // last logged failure message
	client  retryablehttp.Client
}

// newSendState returns a sendState for d with its client's hooks bound.
func newSendState(d *Dispatcher) *sendState {
	st := &sendState{d: d}
	retryMax := d.cfg.Retry.MaxAttempts - 1
	if !d.cfg.DeadLetter {
		retryMax = math.MaxInt
	}
	st.client = retryablehttp.Client{
		HTTPClient:   d.http,
		RetryWaitMin: d.cfg.Retry.InitialBackoff,
		RetryWaitMax: d.cfg.Retry.MaxBackoff,
		RetryMax:     retryMax,
		CheckRetry:   st.checkRetry,
		Backoff:      st.backoff,
		PrepareRetry: st.prepareRetry,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	return st
}

// getSendState takes a sendState from d's pool, reset for a delivery of
// payload as webhook id.
func (d *Dispatcher) getSendState(id string, payload []byte) *sendState {
	st, _ := d.sendStates.Get().(*sendState)
	if st == nil {
		st = newSendState(d)
	}
	st.id, st.payload, st.out, st.wait, st.lastLog = id, payload, outcome{}, 0, ""
	return st
}

// putSendState returns st to d's pool once its send has returned.
func (d *Dispatcher) putSendState(st *sendState) {
	st.id, st.payload, st.out, st.lastLog = "", nil, outcome{}, ""
	d.sendStates.Put(st)
}

// send delivers payload as webhook id through the retry policy.
//
// go-retryablehttp runs the attempt loop. Its own wait is a real timer, so the
// Backoff hook only computes the wait (through the configured Backoff policy)
// and returns 0, and the PrepareRetry hook sleeps on the injected Clock —
// honouring ctx — and then stamps and re-signs the request: every attempt
// carries its own webhook-timestamp and signature.
//
// err is nil on a 2xx. Otherwise it wraps the last real failure as
// "giving up after N attempts: %w", or is ctx's error when ctx ended first.
func (d *Dispatcher) send(ctx context.Context, id string, payload []byte) (outcome, error) {
	st := d.getSendState(id, payload)
	defer d.putSendState(st)
	req, err := retryablehttp.NewRequestWithContext(ctx, d.method, d.url, payload)
	if err != nil {
		return st.out, fmt.Errorf("deliver %s: build request for %s: %w", id, d.redactedURL, redactError(err))
	}
	st.out.firstAttempt = d.clock.Now()
	req.Header = d.firstHeader(id, d.clock.Now(), payload)

	resp, err := st.client.Do(req)
	if resp != nil {
		// checkRetry already replaced the body with the buffered bytes.
		_ = resp.Body.Close()
	}
	if err == nil {
		st.out.reason = ""
		return st.out, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		st.out.reason = ReasonCanceled
		return st.out, fmt.Errorf("deliver %s to %s: %w", id, d.redactedURL, cerr)
	}
	last := st.out.lastErr
	if last == nil {
		last = redactError(err)
	}
	return st.out, fmt.Errorf("deliver %s to %s: giving up after %d attempts: %w", id, d.redactedURL, st.out.attempts, last)
}

// Canonical forms of the per-request headers (what Header.Set stores).
const (
	hdrID        = "Webhook-Id"
	hdrTimestamp = "Webhook-Timestamp"
	hdrSignature = "Webhook-Signature"
)

// firstHeader returns the first attempt's header: a copy of the base header
// plus webhook-id, webhook-timestamp and (with keys) webhook-signature — the
// header Clone+Set would build, in one map and one value array.
func (d *Dispatcher) firstHeader(id string, now time.Time, payload []byte) http.Header {
	n := 3
	for _, v := range d.baseHeader {
		n += len(v)
	}
	vals := make([]string, 0, n)
	h := make(http.Header, len(d.baseHeader)+3)
	for k, v := range d.baseHeader {
		i := len(vals)
		vals = append(vals, v...)
		h[k] = vals[i:len(vals):len(vals)]
	}
	add := func(k, v string) {
		i := len(vals)
		vals = append(vals, v)
		h[k] = vals[i : i+1 : i+1]
	}
	ts, sig := d.stampValues(id, now, payload)
	add(hdrID, id)
	add(hdrTimestamp, ts)
	if sig != "" {
		add(hdrSignature, sig)
	}
	return h
}

// stampValues returns the webhook-timestamp and webhook-signature values for
// an attempt at now ("" signature without keys), signing with a pooled
// signer of d's keys.
func (d *Dispatcher) stampValues(id string, now time.Time, payload []byte) (ts, sig string) {
	if len(d.keys) == 0 {
		return strconv.FormatInt(now.Unix(), 10), ""
	}
	s, _ := d.signers.Get().(*signer)
	if s == nil {
		s = newSigner(d.keys)
	}
	ts, sig = s.stamp(id, now.Unix(), payload)
	d.signers.Put(s)
	return ts, sig
}

// stamp sets the attempt's webhook-timestamp and webhook-signature.
func (st *sendState) stamp(r *http.Request) {
	ts, sig := st.d.stampValues(st.id, st.d.clock.Now(), st.payload)
	r.Header.Set("webhook-timestamp", ts)
	if sig != "" {
		r.Header.Set("webhook-signature", sig)
	}
}

// checkRetry runs after every attempt: it keeps the response body (up to
// respBodyLimit), classifies the attempt with the configured CheckRetry,
// records it, and decides whether to retry.
func (st *sendState) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	d := st.d
	st.out.attempts++
	st.out.status = 0
	st.out.body = ""
	if resp != nil {
		st.out.status = resp.StatusCode
		st.out.body = readBody(resp)
	}
	retry, cerr := d.checkRetry(ctx, resp, err)
	if ctx.Err() != nil {
		// Shutdown: not a failure of the endpoint, and never "done".
		st.out.reason = ReasonCanceled
		return false, ctx.Err()
	}
	if cerr == nil && !retry {
		st.out.reason = ""
		d.metrics.attempt(d.cfg.Trigger, "")
		return false, nil
	}
	if cerr == nil {
		cerr = fmt.Errorf("unexpected HTTP status %d", st.out.status)
	}
	var ae *AttemptError
	if errors.As(cerr, &ae) {
		st.out.reason = ae.Reason
	} else {
		st.out.reason = ReasonServerError
		if resp == nil {
			st.out.reason = ReasonConnection
		}
	}
	st.out.lastErr = cerr
	d.metrics.attempt(d.cfg.Trigger, st.out.reason)
	if !d.cfg.DeadLetter {
		// Never skip an event: every failure is retried.
		retry = true
	}
	if msg := cerr.Error(); msg != st.lastLog {
		st.lastLog = msg
		d.log.LogAttrs(ctx, slog.LevelWarn, "delivery attempt failed",
			slog.String("webhook_id", st.id),
			slog.Int("attempt", st.out.attempts),
			slog.String("reason", st.out.reason),
			slog.Int("status", st.out.status),
			slog.Bool("retry", retry),
			slog.String("error", msg))
	}
	return retry, cerr
}

// backoff computes the wait before the next attempt; the wait itself happens
// in prepareRetry on the injected Clock, so the library's timer gets 0.
func (st *sendState) backoff(lo, hi time.Duration, attemptNum int, resp *http.Response) time.Duration {
	st.wait = st.d.backoff(lo, hi, attemptNum, resp)
	return 0
}

// prepareRetry waits for the computed backoff (returning ctx's error when the
// delivery is canceled meanwhile) and re-stamps the request.
func (st *sendState) prepareRetry(r *http.Request) error {
	if err := st.d.clock.Sleep(r.Context(), st.wait); err != nil {
		return err
	}
	// The previous attempt's request may still be referenced by the
	// transport: give this attempt its own header map.
	r.Header = r.Header.Clone()
	st.stamp(r)
	return nil
}

// readBody reads up to respBodyLimit bytes of resp's body, drains a bounded
// remainder so the connection can be reused, closes it, and replaces it with
// the bytes read (so later readers and closers are harmless).
func readBody(resp *http.Response) string {
	if resp.Body == nil || resp.Body == http.NoBody {
		return ""
	}
	bp := bodyBufPool.Get().(*[respBodyLimit]byte)
	defer bodyBufPool.Put(bp)
	n, err := 0, error(nil)
	for n < len(bp) && err == nil {
		var m int
		m, err = resp.Body.Read(bp[n:])
		n += m
	}
	body := string(bp[:n])
	if err == nil {
		// Drain at most drainLimit more bytes (over the kept ones).
		for left := drainLimit; left > 0 && err == nil; {
			var m int
			m, err = resp.Body.Read(bp[:min(left, len(bp))])
			left -= m
		}
	}
	_ = resp.Body.Close()
	sb := new(stringBody)
	sb.Reset(body)
	resp.Body = sb
	return body
}

// bodyBufPool holds readBody's scratch buffers.
var bodyBufPool = sync.Pool{New: func() any { return new([respBodyLimit]byte) }}

// stringBody is a response body replaced by the bytes kept of it.
type stringBody struct{ strings.Reader }

func (*stringBody) Close() error { return nil }
