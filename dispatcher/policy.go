package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/changehook/changehook/internal/textcut"
	"github.com/changehook/changehook/triggers"
	"github.com/hashicorp/go-retryablehttp"
)

// Failure reasons: the reason label of changehook_delivery_attempts_total,
// DeadLetter.LastReason and Result.Reason.
const (
	// ReasonClientError: a 4xx response other than 408 and 429 (permanent).
	ReasonClientError = "client_error"
	// ReasonServerError: a 5xx response (retried by default), or any other
	// status no rule names: a 1xx, a 2xx outside retry.success_on, a code
	// outside 100–599 (retried only when retry.retry_on lists it, as 5xx
	// for the last; else permanent).
	ReasonServerError = "server_error"
	// ReasonRateLimited: a 429 response (retried, waiting at least its
	// Retry-After).
	ReasonRateLimited = "rate_limited"
	// ReasonTimeout: the attempt timed out, or a 408 response (retried).
	ReasonTimeout = "timeout"
	// ReasonConnection: no response: refused, reset, DNS, TLS (retried).
	ReasonConnection = "connection"
	// ReasonRedirect: a 3xx response. Redirects are not followed: a webhook
	// URL that redirects is a misconfiguration, and following it could send
	// signed events to a host the operator did not choose. Permanent. The
	// error names the Location, redacted as the webhook URL is (a Sender
	// applies webhook.secret_path to it), up to 512 bytes of it.
	ReasonRedirect = "redirect"
	// ReasonCanceled: the delivery's context ended (shutdown). The event is
	// not considered done.
	ReasonCanceled = "canceled"
	// ReasonPayload: the payload could not be built (an expression error).
	// No request was sent.
	ReasonPayload = "payload_error"
	// ReasonDropped: the response status is in retry.drop_on: the endpoint
	// acknowledged the event without accepting it ("409: already have
	// it"). The event is done, without a dead letter.
	ReasonDropped = "dropped"
	// ReasonBlocked: the network guard refused the endpoint's address
	// (network.deny, or a cloud metadata address). Permanent.
	ReasonBlocked = "blocked"
)

// respBodyLimit bounds how much of a response body is kept (Result.Body,
// DeadLetter.LastResponse).
const respBodyLimit = 4 << 10

// drainLimit bounds how much more of a response body is read and discarded
// so that the connection can be reused.
const drainLimit = 64 << 10

// AttemptError is the failure of one delivery attempt. Its message never
// contains secrets: URLs are redacted and header values are never included.
type AttemptError struct {
	// Reason is one of the Reason* constants.
	Reason string
	// Status is the HTTP status, 0 when there was no response.
	Status int
	// Retryable reports whether the failure is transient.
	Retryable bool
	// Err is the underlying (redacted) error, nil for status failures.
	Err error
	// detail is appended to status failures (a redacted redirect target).
	detail string
}

// Error describes the failure in at most MaxErrorText bytes: the text of
// an underlying error may quote an endpoint's answer at any length (the
// names of its TLS certificate, a malformed response line), so a longer
// message is cut and marked as cut (textcut.Marked).
func (e *AttemptError) Error() string {
	if e.Err != nil {
		return textcut.Marked(e.Reason+": "+e.Err.Error(), MaxErrorText)
	}
	msg := fmt.Sprintf("%s: HTTP %d %s", e.Reason, e.Status, http.StatusText(e.Status))
	if e.detail != "" {
		msg += ": " + e.detail
	}
	return textcut.Marked(msg, MaxErrorText)
}

// Unwrap returns the underlying error.
func (e *AttemptError) Unwrap() error { return e.Err }

// CheckRetry is a retry policy: go-retryablehttp's CheckRetry, so its stock
// policies (retryablehttp.DefaultRetryPolicy, ErrorPropagatedRetryPolicy)
// plug in as they are. It classifies the outcome of one attempt (resp is nil
// when err, the transport's error, is not) and says whether to retry it.
// (false, nil) is success — but only for a response the trigger's
// retry.success_on accepts: a policy that answers (false, nil) to anything
// else (retryablehttp's policies do so for a 404) gets a permanent failure,
// classified by the trigger's status rules. Any error is the attempt's
// failure, best an *AttemptError so its reason is known; (true, nil) is a
// retryable failure classified by the status rules. The response body has
// already been read (up to 4 KiB) and replaced.
type CheckRetry = retryablehttp.CheckRetry

// Backoff is a backoff policy: go-retryablehttp's Backoff, so its stock
// policies (retryablehttp.DefaultBackoff, LinearJitterBackoff) plug in as
// they are. It returns the wait before retry attemptNum (0 for the first
// retry) between min and max (retry.initial_backoff and max_backoff), given
// the failed attempt's response (nil when there was none).
type Backoff = retryablehttp.Backoff

// DefaultCheckRetry is the CheckRetry of the default status rules
// (StatusCheckRetry of triggers' DefaultRetryOn and DefaultSuccessOn, no
// drop_on): a 2xx is success (false, nil); connection errors, timeouts,
// 408, 429 and 5xx are retried (true, *AttemptError); 3xx (redirects are not
// followed) and other 4xx are permanent (false, *AttemptError); a done ctx
// stops retrying with ctx.Err(). Sender.DeliverUntilSuccess (a trigger
// without dead letters) overrides "permanent" with "retry", since an event
// may then never be skipped.
func DefaultCheckRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	return classify(ctx, resp, err, &defaultRules)
}

// defaultRules are the default status rules. Read-only.
var defaultRules = triggers.RetryPolicy{}.WithDefaults()

// StatusCheckRetry returns the CheckRetry of p's status rules (a Sender's
// default policy). The list that decides a response's status is
// p.ListOf's (the most specific rule wins: a code beats its class,
// whichever lists they are in): success_on's is success; drop_on's is an
// *AttemptError with ReasonDropped (the event is acknowledged without a
// dead letter); anything else is a failure with its reason (see Reason*),
// retried when retry_on decides its status, or lists RuleTimeout (a
// timeout) or RuleConnection (no response), permanent otherwise. A status
// outside 100–599 is a server error, retried when 5xx is listed. nil lists
// take triggers' defaults. A done ctx stops retrying with ctx.Err().
func StatusCheckRetry(p triggers.RetryPolicy) CheckRetry {
	p = p.WithDefaults()
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		return classify(ctx, resp, err, &p)
	}
}

// classify is StatusCheckRetry's policy for the rules of p.
func classify(ctx context.Context, resp *http.Response, err error, p *triggers.RetryPolicy) (bool, error) {
	if cerr := ctx.Err(); cerr != nil {
		return false, cerr
	}
	if err != nil {
		var be *BlockedError
		if errors.As(err, &be) {
			return false, &AttemptError{Reason: ReasonBlocked, Err: redactError(err)}
		}
		ae := &AttemptError{Reason: ReasonConnection, Err: redactError(err)}
		if hint := tlsFailure(err); hint != "" {
			ae.Reason, ae.Err = ReasonTLS, &tlsError{err: ae.Err, hint: hint}
			ae.Retryable = p.RetryOn.Has(triggers.RuleConnection)
		} else if isTimeout(err) {
			ae.Reason = ReasonTimeout
			ae.Retryable = p.RetryOn.Has(triggers.RuleTimeout)
		} else {
			ae.Retryable = p.RetryOn.Has(triggers.RuleConnection)
		}
		return ae.Retryable, ae
	}
	code := resp.StatusCode
	list := p.ListOf(code)
	if list == triggers.ListSuccessOn {
		return false, nil
	}
	ae := &AttemptError{Status: code}
	switch {
	case list == triggers.ListDropOn:
		ae.Reason = ReasonDropped
		return false, ae
	case code >= 300 && code < 400:
		ae.Reason = ReasonRedirect
		ae.detail = redirectDetail(resp, triggers.RedactURL)
	case code == http.StatusRequestTimeout:
		ae.Reason = ReasonTimeout
	case code == http.StatusTooManyRequests:
		ae.Reason = ReasonRateLimited
	case code >= 400 && code < 500:
		ae.Reason = ReasonClientError
	default: // 5xx, 1xx, 2xx outside success_on and codes outside the registry
		ae.Reason = ReasonServerError
	}
	ae.Retryable = list == triggers.ListRetryOn
	if code < 100 || code > 599 {
		// Outside the registry: a server error, retried with 5xx.
		ae.Retryable = slices.Contains(p.RetryOn, "5xx")
	}
	return ae.Retryable, ae
}

// maxQuoted bounds what an error quotes of one value an endpoint chose (a
// redirect's Location): longer values are cut and marked as cut.
const maxQuoted = 512

// redirectDetail describes a redirect that was not followed, its Location
// redacted by redact (triggers.RedactURL here; in a Sender the webhook's
// own rule, webhook.secret_path, and the masking of what the request
// carried) and quoted up to maxQuoted bytes. The whole Location is
// redacted before it is cut, never the other way round: a secret the cut
// splits would no longer be found whole.
func redirectDetail(resp *http.Response, redact func(string) string) string {
	if loc := resp.Header.Get("Location"); loc != "" {
		return "redirect to " + textcut.Marked(redact(loc), maxQuoted) + " not followed"
	}
	return "redirect not followed"
}

// isTimeout reports whether err is a timeout (http.Client.Timeout, a dial or
// TLS handshake timeout, a deadline).
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ExponentialJitterBackoff returns the default Backoff policy: for retry
// attemptNum (0-based) FullJitterBackoff(attemptNum, lo, hi) — exponential
// backoff with full jitter. A Retry-After header on resp (delta-seconds or
// an HTTP-date, relative to now()) is honoured as a lower bound only: the
// wait is the longer of the two, capped at hi. An endpoint may so ask for a
// longer wait, never for a shorter one ("Retry-After: 0" or a date in the
// past leaves the backoff as it is). jitter returns a uniform value in
// [0, n) (math/rand/v2's Int64N when nil).
func ExponentialJitterBackoff(now func() time.Time, jitter func(n int64) int64) Backoff {
	if jitter == nil {
		jitter = rand.Int64N
	}
	if now == nil {
		now = time.Now
	}
	return func(lo, hi time.Duration, attemptNum int, resp *http.Response) time.Duration {
		if hi <= 0 {
			hi = lo
		}
		wait := fullJitter(attemptNum, lo, hi, jitter)
		if resp != nil {
			if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now()); ok {
				return min(max(wait, d), hi)
			}
		}
		return wait
	}
}

// FullJitterBackoff is changehook's one backoff function, used between
// delivery attempts and between the watch loop's reconnects: the wait before
// retry n (0-based) is drawn uniformly from [0, min(maxWait, initial·2ⁿ)]
// ("full jitter", so that many triggers or events failing together do not
// retry in lockstep). It is 0 when initial or maxWait is not positive.
func FullJitterBackoff(n int, initial, maxWait time.Duration) time.Duration {
	return fullJitter(n, initial, maxWait, rand.Int64N)
}

// fullJitter is FullJitterBackoff with the random source jitter, which
// returns a uniform value in [0, n).
func fullJitter(n int, initial, maxWait time.Duration, jitter func(int64) int64) time.Duration {
	if initial <= 0 || maxWait <= 0 {
		return 0
	}
	ceiling := maxWait
	if n >= 0 && n < 62 {
		if exp := initial << n; exp > 0 && exp>>n == initial && exp < maxWait {
			ceiling = exp
		}
	}
	if ceiling == math.MaxInt64 {
		ceiling-- // [0, ceiling] has one value too many for an int64 count
	}
	return time.Duration(jitter(int64(ceiling) + 1))
}

// maxRetryAfter bounds the wait a Retry-After asks for (a year): more
// than any max_backoff, and within a time.Duration.
const maxRetryAfter = 365 * 24 * time.Hour

// parseRetryAfter parses a Retry-After value (RFC 9110 §10.2.3):
// delta-seconds or an HTTP-date. A date in the past means "now" (0).
// Delta-seconds are capped at maxRetryAfter, and so is a value of more
// digits than an int64 holds: it is valid delta-seconds (1*DIGIT) asking
// for a longer wait than any cap, not a malformed header.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second, true
	} else if errors.Is(err, strconv.ErrRange) && allDigits(v) {
		return maxRetryAfter, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
