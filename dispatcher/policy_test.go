package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

func TestRedactError(t *testing.T) {
	inner := errors.New("connection refused")
	err := redactError(&url.Error{Op: "Post", URL: "https://u:pw@h.example/x?key=abc", Err: inner})
	if s := err.Error(); strings.Contains(s, "pw") || strings.Contains(s, "abc") {
		t.Fatalf("redacted error %q leaks a secret", s)
	}
	if !errors.Is(err, inner) {
		t.Fatalf("redacted error %v does not wrap the cause", err)
	}
	plain := errors.New("x")
	if redactError(plain) != plain {
		t.Fatal("redactError changed a non-URL error")
	}
}

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var _ net.Error = timeoutErr{}

func TestDefaultCheckRetry(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	resp := func(code int, hdr ...string) *http.Response {
		h := http.Header{}
		for i := 0; i+1 < len(hdr); i += 2 {
			h.Set(hdr[i], hdr[i+1])
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	tests := []struct {
		name       string
		ctx        context.Context
		resp       *http.Response
		err        error
		wantRetry  bool
		wantReason string // "" = success
		wantErrIs  error
	}{
		{name: "200", resp: resp(200)},
		{name: "204", resp: resp(204)},
		{name: "301 not followed", resp: resp(301, "Location", "https://other.example/?sig=x"), wantReason: ReasonRedirect},
		{name: "307", resp: resp(307), wantReason: ReasonRedirect},
		{name: "400", resp: resp(400), wantReason: ReasonClientError},
		{name: "401", resp: resp(401), wantReason: ReasonClientError},
		{name: "404", resp: resp(404), wantReason: ReasonClientError},
		{name: "408", resp: resp(408), wantRetry: true, wantReason: ReasonTimeout},
		{name: "429", resp: resp(429), wantRetry: true, wantReason: ReasonRateLimited},
		{name: "500", resp: resp(500), wantRetry: true, wantReason: ReasonServerError},
		{name: "501", resp: resp(501), wantRetry: true, wantReason: ReasonServerError},
		{name: "503", resp: resp(503), wantRetry: true, wantReason: ReasonServerError},
		{name: "unknown 999", resp: resp(999), wantRetry: true, wantReason: ReasonServerError},
		{name: "connection refused", err: &url.Error{Op: "Post", URL: "http://h", Err: errors.New("dial tcp: connection refused")}, wantRetry: true, wantReason: ReasonConnection},
		{name: "client timeout", err: &url.Error{Op: "Post", URL: "http://h", Err: timeoutErr{}}, wantRetry: true, wantReason: ReasonTimeout},
		{name: "deadline", err: fmt.Errorf("x: %w", os.ErrDeadlineExceeded), wantRetry: true, wantReason: ReasonTimeout},
		{name: "context canceled", ctx: canceled, err: context.Canceled, wantErrIs: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			retry, err := DefaultCheckRetry(ctx, tt.resp, tt.err)
			if retry != tt.wantRetry {
				t.Fatalf("retry = %v, want %v", retry, tt.wantRetry)
			}
			if tt.wantErrIs != nil {
				if !errors.Is(err, tt.wantErrIs) {
					t.Fatalf("err = %v, want %v", err, tt.wantErrIs)
				}
				return
			}
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				return
			}
			var ae *AttemptError
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *AttemptError", err, err)
			}
			if ae.Reason != tt.wantReason || ae.Retryable != tt.wantRetry {
				t.Fatalf("AttemptError = %+v, want reason %s retryable %v", ae, tt.wantReason, tt.wantRetry)
			}
			if strings.Contains(err.Error(), "sig=x") {
				t.Fatalf("error %q leaks the redirect query", err)
			}
		})
	}
}

func TestExponentialJitterBackoff(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	maxJitter := func(n int64) int64 { return n - 1 } // the top of the range
	minJitter := func(int64) int64 { return 0 }       // the bottom of the range
	withRA := func(v string) *http.Response {
		return &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {v}}}
	}
	tests := []struct {
		name    string
		lowDraw bool // jitter draws 0 instead of the top of the range
		lo, hi  time.Duration
		attempt int
		resp    *http.Response
		want    time.Duration
	}{
		{"first retry", false, time.Second, time.Minute, 0, nil, time.Second},
		{"doubles", false, time.Second, time.Minute, 3, nil, 8 * time.Second},
		{"capped", false, time.Second, time.Minute, 10, nil, time.Minute},
		{"no overflow", false, time.Second, time.Minute, 200, nil, time.Minute},
		{"retry-after seconds above the backoff wins", false, time.Second, time.Minute, 0, withRA("7"), 7 * time.Second},
		{"retry-after seconds below the backoff keeps it", false, time.Second, time.Minute, 3, withRA("7"), 8 * time.Second},
		{"retry-after above a zero draw wins", true, time.Second, time.Minute, 3, withRA("7"), 7 * time.Second},
		{"retry-after 0 keeps the backoff", false, time.Second, time.Minute, 2, withRA("0"), 4 * time.Second},
		{"retry-after 0 keeps a zero draw", true, time.Second, time.Minute, 2, withRA("0"), 0},
		{"retry-after capped at max", false, time.Second, time.Minute, 0, withRA("3600"), time.Minute},
		{"retry-after of int64's most seconds capped at max", true, time.Second, time.Minute, 0, withRA("9223372036854775807"), time.Minute},
		{"retry-after beyond int64 seconds capped at max", true, time.Second, time.Minute, 0, withRA("99999999999999999999"), time.Minute},
		{"retry-after beyond int64 seconds, negative, ignored", false, time.Second, time.Minute, 1, withRA("-99999999999999999999"), 2 * time.Second},
		{"retry-after http-date", false, time.Second, time.Minute, 0, withRA(now.Add(30 * time.Second).Format(http.TimeFormat)), 30 * time.Second},
		{"retry-after date in the past keeps the backoff", false, time.Second, time.Minute, 5, withRA(now.Add(-time.Hour).Format(http.TimeFormat)), 32 * time.Second},
		{"retry-after garbage ignored", false, time.Second, time.Minute, 1, withRA("soon"), 2 * time.Second},
		{"retry-after negative ignored", false, time.Second, time.Minute, 1, withRA("-5"), 2 * time.Second},
	}
	high := ExponentialJitterBackoff(func() time.Time { return now }, maxJitter)
	low := ExponentialJitterBackoff(func() time.Time { return now }, minJitter)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := high
			if tt.lowDraw {
				b = low
			}
			if got := b(tt.lo, tt.hi, tt.attempt, tt.resp); got != tt.want {
				t.Fatalf("backoff = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("full jitter stays in range", func(t *testing.T) {
		rb := ExponentialJitterBackoff(nil, nil)
		seenLow := false
		for i := range 2000 {
			attempt := i % 8
			ceiling := min(time.Second<<attempt, 30*time.Second)
			got := rb(time.Second, 30*time.Second, attempt, nil)
			if got < 0 || got > ceiling {
				t.Fatalf("attempt %d: backoff %v outside [0, %v]", attempt, got, ceiling)
			}
			if got < ceiling/2 {
				seenLow = true
			}
		}
		if !seenLow {
			t.Fatal("no draw in the lower half of the range: not full jitter")
		}
	})
}

// TestRetryAfterCannotShortenBackoff: an endpoint answering Retry-After: 0
// or a date in the past gets the trigger's backoff between attempts (a
// hostile endpoint cannot turn the retries into a hot loop), one asking for
// a longer wait gets it, capped at max_backoff.
func TestRetryAfterCannotShortenBackoff(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		wantSleeps []time.Duration
	}{
		{"zero", "0", []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}},
		{"date in the past", "Mon, 02 Jan 2006 15:04:05 GMT", []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}},
		{"longer than the backoff", "3", []time.Duration{3 * time.Second, 3 * time.Second, 3 * time.Second}},
		{"longer than max_backoff", "3600", []time.Duration{10 * time.Second, 10 * time.Second, 10 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				if n < 4 {
					w.Header().Set("Retry-After", tt.retryAfter)
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
			clock := newFakeClock()
			top := func(n int64) int64 { return n - 1 } // the longest wait the jitter allows
			s := newTestSender(t, &triggers.Trigger{
				Webhook: triggers.Webhook{URL: rc.srv.URL + "/hook"},
				Retry:   triggers.RetryPolicy{MaxAttempts: 1, InitialBackoff: 500 * time.Millisecond, MaxBackoff: 10 * time.Second},
			}, WithClock(clock), WithBackoff(ExponentialJitterBackoff(clock.Now, top)))
			res, err := s.DeliverUntilSuccess(context.Background(), testEvent(t, 1, "k"))
			if err != nil {
				t.Fatalf("DeliverUntilSuccess: %v", err)
			}
			if res.Attempts != 4 {
				t.Fatalf("attempts = %d, want 4", res.Attempts)
			}
			if got := clock.Sleeps(); !equalDurations(got, tt.wantSleeps) {
				t.Fatalf("slept %v, want %v", got, tt.wantSleeps)
			}
		})
	}
}
