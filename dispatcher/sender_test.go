package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"math"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// newTestSender returns a Sender for cfg (trigger "orders" by default).
func newTestSender(t *testing.T, cfg *triggers.Trigger, opts ...Option) *Sender {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "orders"
	}
	s, err := NewSender(cfg, opts...)
	if err != nil {
		t.Fatalf("NewSender: %v", err)
	}
	return s
}

// TestDeliverScripted runs one event through the retry policy against
// scripted endpoints.
func TestDeliverScripted(t *testing.T) {
	tests := []struct {
		name         string
		respond      func(int, http.ResponseWriter, *http.Request)
		retry        triggers.RetryPolicy
		untilSuccess bool // DeliverUntilSuccess (a trigger without dead letters)
		timeout      time.Duration
		wantErr      string // "" = success
		wantAttempts int
		wantStatus   int
		wantReason   string
		wantSleeps   []time.Duration // nil: not checked
	}{
		{
			name:    "500 500 then 200",
			respond: statuses(500, 500, 200), retry: triggers.RetryPolicy{MaxAttempts: 5},
			wantAttempts: 3, wantStatus: 200,
		},
		{
			name: "429 with Retry-After seconds then 200",
			respond: func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", "7")
					w.WriteHeader(429)
					return
				}
				w.WriteHeader(200)
			},
			retry:        triggers.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Minute},
			wantAttempts: 2, wantStatus: 200, wantSleeps: []time.Duration{7 * time.Second},
		},
		{
			name: "503 with Retry-After date capped at max backoff",
			respond: func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
					w.WriteHeader(503)
					return
				}
				w.WriteHeader(202)
			},
			retry:        triggers.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Second},
			wantAttempts: 2, wantStatus: 202, wantSleeps: []time.Duration{5 * time.Second},
		},
		{
			name: "timeout then 200",
			respond: func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					<-r.Context().Done() // hold the request until the client gives up
					return
				}
				w.WriteHeader(200)
			},
			// The timeout also bounds the second attempt: long enough for
			// a loaded machine to answer it (the first is held until the
			// client gives up, so the test takes the timeout once).
			timeout: 500 * time.Millisecond, retry: triggers.RetryPolicy{MaxAttempts: 3},
			wantAttempts: 2, wantStatus: 200,
		},
		{
			name: "connection reset then 200",
			respond: func(n int, w http.ResponseWriter, _ *http.Request) {
				if n == 1 {
					conn, _, err := w.(http.Hijacker).Hijack()
					if err == nil {
						_ = conn.Close()
					}
					return
				}
				w.WriteHeader(200)
			},
			retry:        triggers.RetryPolicy{MaxAttempts: 3},
			wantAttempts: 2, wantStatus: 200,
		},
		{
			name:    "500 exhausts attempts",
			respond: statuses(500), retry: triggers.RetryPolicy{MaxAttempts: 4},
			wantErr: "giving up after 4 attempts: server_error: HTTP 500", wantAttempts: 4, wantStatus: 500, wantReason: ReasonServerError,
		},
		{
			name:    "400 is permanent",
			respond: statuses(400), retry: triggers.RetryPolicy{MaxAttempts: 4},
			wantErr: "giving up after 1 attempt: client_error: HTTP 400", wantAttempts: 1, wantStatus: 400, wantReason: ReasonClientError,
		},
		{
			name: "redirect is not followed",
			respond: func(_ int, w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					w.WriteHeader(200)
					return
				}
				w.Header().Set("Location", "/elsewhere?token=abc")
				w.WriteHeader(308)
			},
			retry:   triggers.RetryPolicy{MaxAttempts: 4},
			wantErr: "redirect to /elsewhere?token=REDACTED not followed", wantAttempts: 1, wantStatus: 308, wantReason: ReasonRedirect,
		},
		{
			name:    "without dead letters a 400 is retried until it succeeds",
			respond: statuses(400, 400, 400, 200), retry: triggers.RetryPolicy{MaxAttempts: 1}, untilSuccess: true,
			wantAttempts: 4, wantStatus: 200,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, tt.respond)
			clock := newFakeClock()
			s := newTestSender(t, &triggers.Trigger{
				Webhook: triggers.Webhook{URL: rc.srv.URL + "/hook", Timeout: tt.timeout},
				Retry:   tt.retry,
			}, WithClock(clock))
			ev := testEvent(t, 1, "k")
			deliver := s.Deliver
			if tt.untilSuccess {
				deliver = s.DeliverUntilSuccess
			}
			res, err := deliver(context.Background(), ev)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Deliver error = %v, want one containing %q", err, tt.wantErr)
			}
			if res.Attempts != tt.wantAttempts || res.Status != tt.wantStatus || res.Reason != tt.wantReason {
				t.Fatalf("Result = %+v, want attempts %d status %d reason %q", res, tt.wantAttempts, tt.wantStatus, tt.wantReason)
			}
			if res.WebhookID != WebhookID("orders", ev.Token) {
				t.Fatalf("Result.WebhookID = %s, want %s", res.WebhookID, WebhookID("orders", ev.Token))
			}
			if got := clock.Sleeps(); len(got) != tt.wantAttempts-1 {
				t.Fatalf("slept %d times (%v), want %d", len(got), got, tt.wantAttempts-1)
			} else if tt.wantSleeps != nil && !equalDurations(got, tt.wantSleeps) {
				t.Fatalf("slept %v, want %v", got, tt.wantSleeps)
			}
			// Every attempt carried the same webhook-id.
			for i, dv := range rc.deliveries() {
				if id := dv.header.Get("webhook-id"); id != res.WebhookID {
					t.Fatalf("attempt %d: webhook-id %q, want %q", i+1, id, res.WebhookID)
				}
			}
		})
	}
}
func equalDurations(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestConnectionRefusedThenSuccess starts the endpoint only during the
// first backoff: the first attempt finds nothing listening.
func TestConnectionRefusedThenSuccess(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()

	var hits atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}), ReadHeaderTimeout: 5 * time.Second}
	t.Cleanup(func() { _ = srv.Close() })
	clock := newFakeClock()
	var startErr error
	clock.onSleep = func(n int) {
		if n != 1 {
			return
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			startErr = err
			return
		}
		go func() { _ = srv.Serve(l) }()
	}
	s := newTestSender(t, &triggers.Trigger{
		Webhook: triggers.Webhook{URL: "http://" + addr + "/h"},
		Retry:   triggers.RetryPolicy{MaxAttempts: 3},
	}, WithClock(clock))
	res, err := s.Deliver(context.Background(), testEvent(t, 1, ""))
	if startErr != nil {
		t.Skipf("port %s was taken before the endpoint could start: %v", addr, startErr)
	}
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if res.Attempts != 2 || hits.Load() != 1 {
		t.Fatalf("attempts %d, endpoint hits %d; want 2 and 1", res.Attempts, hits.Load())
	}
}
func TestRequestHeadersAndSignature(t *testing.T) {
	rc := newReceiver(t, statuses(500, 200))
	clock := newFakeClock()
	rotated := "whsec_" + "c2Vjb25kLWtleS1mb3Itcm90YXRpb24="
	s := newTestSender(t, &triggers.Trigger{
		Name: "low_stock",
		Webhook: triggers.Webhook{
			URL:     rc.srv.URL + "/hook",
			Method:  "put",
			Headers: map[string]triggers.Secret{"Authorization": "Bearer tok", "X-Tenant": "acme"},
			Secrets: []triggers.Secret{testSecret, triggers.Secret(rotated)},
		},
		Retry: triggers.RetryPolicy{MaxAttempts: 2},
	}, WithUserAgent("changehook/v1.2.3"), WithClock(clock), WithBackoff(func(time.Duration, time.Duration, int, *http.Response) time.Duration {
		return time.Minute
	}))
	ev := testEvent(t, 3, "k")
	if _, err := s.Deliver(context.Background(), ev); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	got := rc.deliveries()
	if len(got) != 2 {
		t.Fatalf("receiver saw %d requests, want 2", len(got))
	}
	want, err := BuildPayload(triggers.Webhook{}, ev)
	if err != nil {
		t.Fatal(err)
	}
	for i, dv := range got {
		h := dv.header
		for k, v := range map[string]string{
			"Content-Type":         "application/json",
			"User-Agent":           "changehook/v1.2.3",
			"Webhook-Id":           WebhookID("low_stock", ev.Token),
			"X-Changehook-Trigger": "low_stock",
			"Authorization":        "Bearer tok",
			"X-Tenant":             "acme",
		} {
			if h.Get(k) != v {
				t.Errorf("attempt %d: %s = %q, want %q", i+1, k, h.Get(k), v)
			}
		}
		if !bytes.Equal(dv.body, want) {
			t.Errorf("attempt %d: body %s, want %s", i+1, dv.body, want)
		}
		// Each attempt is signed at its own (virtual) time, verified by the
		// independent implementation with both keys.
		now := clock.Now()
		for _, s := range []string{testSecret, rotated} {
			if err := verifySignature(s, h, dv.body, now, 2*time.Minute); err != nil {
				t.Errorf("attempt %d: signature: %v", i+1, err)
			}
		}
		if err := verifySignature("whsec_"+"d3Jvbmcta2V5", h, dv.body, now, 2*time.Minute); err == nil {
			t.Errorf("attempt %d: signature verifies with a wrong key", i+1)
		}
	}
	if a, b := got[0].header.Get("webhook-timestamp"), got[1].header.Get("webhook-timestamp"); a == b {
		t.Errorf("retry reused webhook-timestamp %s; each attempt must be stamped", a)
	}
}
func TestNoSignatureWithoutSecrets(t *testing.T) {
	rc := newReceiver(t, nil)
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}})
	if _, err := s.Deliver(context.Background(), testEvent(t, 1, "")); err != nil {
		t.Fatal(err)
	}
	h := rc.deliveries()[0].header
	if h.Get("webhook-signature") != "" || h.Get("webhook-timestamp") == "" || !strings.HasPrefix(h.Get("User-Agent"), "changehook/") {
		t.Fatalf("headers %v: want no signature, a timestamp and the default user agent", h)
	}
}

// TestObserverSeesEveryAttempt: the observer gets each attempt's number,
// status, reason, retry verdict, error and response body, in order.
func TestObserverSeesEveryAttempt(t *testing.T) {
	rc := newReceiver(t, statuses(503, 429, 200))
	var seen []Attempt
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Retry: triggers.RetryPolicy{MaxAttempts: 5}},
		WithClock(newFakeClock()), WithObserver(func(a Attempt) { seen = append(seen, a) }))
	ev := testEvent(t, 1, "k1")
	res, err := s.Deliver(context.Background(), ev)
	if err != nil || res.Attempts != 3 {
		t.Fatalf("Deliver = %+v, %v; want success on attempt 3", res, err)
	}
	want := []struct {
		status int
		reason string
		retry  bool
	}{{503, ReasonServerError, true}, {429, ReasonRateLimited, true}, {200, "", false}}
	if len(seen) != len(want) {
		t.Fatalf("observer saw %d attempts, want %d", len(seen), len(want))
	}
	for i, a := range seen {
		w := want[i]
		if a.Number != i+1 || a.WebhookID != res.WebhookID || a.Status != w.status || a.Reason != w.reason || a.Retry != w.retry ||
			(a.Err == nil) != (w.reason == "") || a.Body != "status "+http.StatusText(w.status) || a.Latency < 0 {
			t.Fatalf("attempt %d = %+v, want status %d reason %q retry %v", i+1, a, w.status, w.reason, w.retry)
		}
		if a.Trigger != "orders" || a.Operation != "insert" || a.DocumentKey.Lookup("_id").StringValue() != "k1" || a.Start.IsZero() {
			t.Fatalf("attempt %d: trigger %q operation %q documentKey %v start %v; want orders, insert, {_id: k1}, set",
				i+1, a.Trigger, a.Operation, a.DocumentKey, a.Start)
		}
	}
}

// TestObserversAppend: every WithObserver adds an observer (a nil one is
// ignored); all of them see every attempt, in the order they were given.
func TestObserversAppend(t *testing.T) {
	rc := newReceiver(t, statuses(503, 200))
	var calls []string
	obs := func(name string) func(Attempt) {
		return func(a Attempt) { calls = append(calls, fmt.Sprintf("%s:%d", name, a.Number)) }
	}
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Retry: triggers.RetryPolicy{MaxAttempts: 3}},
		WithClock(newFakeClock()), WithObserver(obs("a")), WithObserver(nil), WithObserver(obs("b")), WithObserver(obs("c")))
	if _, err := s.Deliver(context.Background(), testEvent(t, 1, "")); err != nil {
		t.Fatal(err)
	}
	want := []string{"a:1", "b:1", "c:1", "a:2", "b:2", "c:2"}
	if fmt.Sprint(calls) != fmt.Sprint(want) {
		t.Fatalf("observer calls %v, want %v", calls, want)
	}
}

// TestSendOnce: one attempt, classified; a permanent failure says "do not
// retry", a canceled context says canceled.
func TestSendOnce(t *testing.T) {
	rc := newReceiver(t, statuses(404))
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}})
	at, retry, err := s.SendOnce(context.Background(), "msg_x", []byte(`{}`), 1)
	var ae *AttemptError
	if retry || !errors.As(err, &ae) || ae.Status != 404 || at.Reason != ReasonClientError || at.Number != 1 {
		t.Fatalf("SendOnce = %+v, %v, %v; want a permanent client_error", at, retry, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	at, retry, err = s.SendOnce(ctx, "msg_x", []byte(`{}`), 2)
	if retry || !errors.Is(err, context.Canceled) || at.Reason != ReasonCanceled {
		t.Fatalf("SendOnce on a canceled ctx = %+v, %v, %v", at, retry, err)
	}
}

// TestFullJitterBackoff: the wait before retry n lies in [0, min(max,
// initial·2ⁿ)], with both ends reachable, and no overflow for large n or
// the largest maxWait (its upper end is then one nanosecond short).
func TestFullJitterBackoff(t *testing.T) {
	tests := []struct {
		n             int
		initial, maxW time.Duration
		ceiling       time.Duration
	}{
		{0, time.Second, time.Minute, time.Second},
		{3, time.Second, time.Minute, 8 * time.Second},
		{10, time.Second, time.Minute, time.Minute},
		{200, time.Second, time.Minute, time.Minute},
		{-1, time.Second, time.Minute, time.Minute},
		{2, 0, time.Minute, 0},
		{5, time.Second, math.MaxInt64, 32 * time.Second},
		{70, time.Second, math.MaxInt64, math.MaxInt64 - 1},
	}
	for _, tt := range tests {
		lo := fullJitter(tt.n, tt.initial, tt.maxW, func(int64) int64 { return 0 })
		hi := fullJitter(tt.n, tt.initial, tt.maxW, func(n int64) int64 { return n - 1 })
		if lo != 0 || hi != tt.ceiling {
			t.Errorf("fullJitter(%d, %v, %v) spans [%v, %v], want [0, %v]", tt.n, tt.initial, tt.maxW, lo, hi, tt.ceiling)
		}
		if d := FullJitterBackoff(tt.n, tt.initial, tt.maxW); d < 0 || d > tt.ceiling {
			t.Errorf("FullJitterBackoff(%d, %v, %v) = %v, outside [0, %v]", tt.n, tt.initial, tt.maxW, d, tt.ceiling)
		}
	}
}

// TestActiveObserver: an observer of WithActiveObserver is called only
// while it is on; while every observer is off a delivery reads nothing for
// them, and an observer turned on sees the event's documentKey and
// operation again.
func TestActiveObserver(t *testing.T) {
	rc := newReceiver(t, statuses(503, 200, 200, 200))
	var on atomic.Bool
	var seen, always []Attempt
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Retry: triggers.RetryPolicy{MaxAttempts: 3}},
		WithClock(newFakeClock()), WithActiveObserver(func(a Attempt) { seen = append(seen, a) }, on.Load))
	if _, err := s.Deliver(context.Background(), testEvent(t, 1, "k1")); err != nil {
		t.Fatal(err)
	}
	if info := s.eventInfo(testEvent(t, 2, "k2")); len(seen) != 0 || s.observed() || info.documentKey != nil || info.operation != "" {
		t.Fatalf("an observer that is off saw %d attempts", len(seen))
	}
	on.Store(true)
	if _, err := s.Deliver(context.Background(), testEvent(t, 2, "k2")); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0].Operation != "insert" || seen[0].DocumentKey.Lookup("_id").StringValue() != "k2" {
		t.Fatalf("an observer turned on saw %+v", seen)
	}
	// With an observer that is always on too, both see the attempts.
	on.Store(false)
	s2 := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}},
		WithClock(newFakeClock()), WithActiveObserver(func(a Attempt) { seen = append(seen, a) }, on.Load),
		WithObserver(func(a Attempt) { always = append(always, a) }), WithActiveObserver(nil, on.Load))
	if _, err := s2.Deliver(context.Background(), testEvent(t, 3, "k3")); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || len(always) != 1 || always[0].Operation != "insert" {
		t.Fatalf("observers saw %d and %d attempts", len(seen), len(always))
	}
}

// TestEventInfoMatchesDriver: the operationType read without allocating
// is what the driver's StringValueOK reads, for every operation type,
// unknown ones and values that are not strings.
func TestEventInfoMatchesDriver(t *testing.T) {
	s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: "http://127.0.0.1:1"}}, WithObserver(func(Attempt) {}))
	for _, op := range []any{"insert", "update", "replace", "delete", "drop", "rename", "dropDatabase", "invalidate",
		"createIndexes", "", "ïnsert", int32(5), nil, bson.D{}} {
		raw := mustMarshal(t, bson.D{{Key: "_id", Value: bson.D{{Key: "_data", Value: "82"}}}, {Key: "operationType", Value: op},
			{Key: "documentKey", Value: bson.D{{Key: "_id", Value: 1}}}})
		info := s.eventInfo(Event{Raw: raw})
		want, _ := bson.Raw(raw).Lookup("operationType").StringValueOK()
		if info.operation != want || info.documentKey.Lookup("_id").Int32() != 1 {
			t.Errorf("operationType %v: read %q, want %q", op, info.operation, want)
		}
	}
	ev := testEvent(t, 1, "k")
	if n := testing.AllocsPerRun(100, func() { s.eventInfo(ev) }); n != 0 {
		t.Errorf("eventInfo allocates %v times", n)
	}
}

// TestRedirectLocationRedacted: a redirect's Location is redacted as the
// webhook URL is: with webhook.secret_path its whole path is hidden (the
// usual redirect adds a trailing slash to the secret path), also when the
// policy is plugged in.
func TestRedirectLocationRedacted(t *testing.T) {
	tests := []struct {
		name       string
		secretPath bool
		checkRetry CheckRetry // nil: the trigger's rules
		location   string     // "": the request's path with a trailing slash
		want       string
	}{
		{"secret path, trailing slash", true, nil, "",
			"redirect: HTTP 301 Moved Permanently: redirect to /REDACTED not followed"},
		{"secret path, other host", true, nil, "https://other.example/in/teamsecretlowercasepath?sig=abc",
			"redirect: HTTP 301 Moved Permanently: redirect to https://other.example/REDACTED?sig=REDACTED not followed"},
		{"secret path, root", true, nil, "/",
			"redirect: HTTP 301 Moved Permanently: redirect to / not followed"},
		{"secret path, plugged-in policy", true, DefaultCheckRetry, "",
			"redirect: HTTP 301 Moved Permanently: redirect to /REDACTED not followed"},
		{"ordinary path", false, nil, "",
			"redirect: HTTP 301 Moved Permanently: redirect to /hooks/teamsecretlowercasepath/ not followed"},
		{"ordinary path, token-shaped segment", false, nil, "/hooks/Xk39fjQm2Lp8Zr7Tq1Vw",
			"redirect: HTTP 301 Moved Permanently: redirect to /hooks/REDACTED not followed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				loc := tt.location
				if loc == "" {
					loc = r.URL.Path + "/"
				}
				w.Header().Set("Location", loc)
				w.WriteHeader(http.StatusMovedPermanently)
			})
			var observed []string
			opts := []Option{WithClock(newFakeClock()), WithObserver(func(a Attempt) { observed = append(observed, a.Err.Error()) })}
			if tt.checkRetry != nil {
				opts = append(opts, WithCheckRetry(tt.checkRetry))
			}
			s := newTestSender(t, &triggers.Trigger{
				Webhook: triggers.Webhook{URL: rc.srv.URL + "/hooks/teamsecretlowercasepath", SecretPath: tt.secretPath},
				Retry:   triggers.RetryPolicy{MaxAttempts: 3},
			}, opts...)
			res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
			var ae *AttemptError
			if !errors.As(err, &ae) || res.Reason != ReasonRedirect {
				t.Fatalf("Deliver: %+v, %v; want a redirect AttemptError", res, err)
			}
			if got := ae.Error(); got != tt.want {
				t.Errorf("error\n got %q\nwant %q", got, tt.want)
			}
			if len(observed) != 1 || observed[0] != tt.want {
				t.Errorf("observed errors %q, want [%q]", observed, tt.want)
			}
		})
	}
}
