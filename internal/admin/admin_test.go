package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/runner"
)

type fakeRunner struct {
	ready bool
	sts   []runner.TriggerStatus
}

func (f fakeRunner) Status() []runner.TriggerStatus { return f.sts }
func (f fakeRunner) Ready() bool                    { return f.ready }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestReadyz(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	running := runner.TriggerStatus{Name: "a", State: runner.StateRunning, StreamOpen: true}
	disabled := runner.TriggerStatus{Name: "b", State: runner.StateDisabled}
	failed := runner.TriggerStatus{Name: "c", State: runner.StateFailed, LastError: "history lost", WayOut: "resume it --from now"}
	blocked := runner.TriggerStatus{Name: "d", State: runner.StateFailed, StreamOpen: true, LastError: "delivery msg_1: HTTP 410",
		WayOut: "changehook skip d"}
	retryingShort := runner.TriggerStatus{Name: "e", State: runner.StateRetrying, StreamOpen: true, Since: now.Add(-time.Minute), LastError: "HTTP 503"}
	retryingLong := runner.TriggerStatus{Name: "f", State: runner.StateRetrying, StreamOpen: true, Since: now.Add(-6 * time.Minute),
		LastError: "delivery msg_2: HTTP 503", HeadOfLine: &runner.HeadOfLine{NextAttemptAt: now.Add(30 * time.Second)}}
	streamRetrying := runner.TriggerStatus{Name: "g", State: runner.StateRetrying, Since: now.Add(-10 * time.Second), LastError: "connection refused"}
	paused := runner.TriggerStatus{Name: "h", State: runner.StatePaused}
	starting := runner.TriggerStatus{Name: "i", State: runner.StateStarting}
	leaseWait := runner.TriggerStatus{Name: "k", State: runner.StateStarting, LeaseWait: &runner.LeaseWait{Member: "web-1",
		Reason: "its lease is held by member web-1: this member takes it once that lease is released or expires"}}
	waiting := runner.TriggerStatus{Name: "j", State: runner.StateWaiting, StartsAt: now.Add(time.Hour)}
	for _, tc := range []struct {
		name     string
		r        fakeRunner
		code     int
		contains string
	}{
		{"all open", fakeRunner{ready: true, sts: []runner.TriggerStatus{running, disabled, paused}}, 200, "ready"},
		{"one failed", fakeRunner{sts: []runner.TriggerStatus{running, failed}}, 503, "trigger c: failed: history lost; way out: resume it --from now"},
		{"head of line failed permanently", fakeRunner{ready: true, sts: []runner.TriggerStatus{running, blocked}}, 503,
			"trigger d: failed: delivery msg_1: HTTP 410; way out: changehook skip d"},
		{"retrying shorter than the limit", fakeRunner{ready: true, sts: []runner.TriggerStatus{running, retryingShort}}, 200, "ready"},
		{"stream retrying shorter than the limit", fakeRunner{sts: []runner.TriggerStatus{running, streamRetrying}}, 200, "ready"},
		{"retrying longer than the limit", fakeRunner{ready: true, sts: []runner.TriggerStatus{running, retryingLong}}, 503,
			"trigger f: retrying for 6m0s (longer than 5m0s): delivery msg_2: HTTP 503; next attempt at 2026-01-02T03:04:35Z"},
		{"waiting for start_at (planned)", fakeRunner{ready: true, sts: []runner.TriggerStatus{running, waiting}}, 200, "ready"},
		{"starting", fakeRunner{sts: []runner.TriggerStatus{running, starting}}, 503, "trigger i: starting, change stream not open"},
		{"waiting for its cluster lease", fakeRunner{sts: []runner.TriggerStatus{running, leaseWait}}, 503,
			"trigger k: starting, change stream not open; its lease is held by member web-1: this member takes it once that lease is released or expires"},
		{"not started", fakeRunner{}, 503, "runner not started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := routes(tc.r, nil, readiness{limit: 5 * time.Minute, now: func() time.Time { return now }})
			code, body := get(t, h, "/readyz")
			if code != tc.code || !strings.Contains(body, tc.contains) {
				t.Errorf("/readyz = %d %q, want %d containing %q", code, body, tc.code, tc.contains)
			}
		})
	}
}

func TestHealthzMetricsAPI(t *testing.T) {
	reg := prometheus.NewRegistry()
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "changehook_deliveries_total"}, []string{"trigger", "outcome"})
	reg.MustRegister(deliveries)
	deliveries.WithLabelValues("a", "delivered").Add(3)

	cp := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	r := fakeRunner{ready: true, sts: []runner.TriggerStatus{{Name: "a", State: runner.StateRunning, StreamOpen: true, EventsReceived: 4, CheckpointTime: cp, CheckpointLag: 1500 * time.Millisecond,
		Deliveries: map[string]uint64{"delivered": 3, "dead_lettered": 1}, Attempts: map[string]uint64{"ok": 3, "server_error": 2}, DeadLetters: 1, InFlight: 2}}}
	h := Handler(r, reg)

	if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, h, "/metrics"); code != 200 || !strings.Contains(body, `changehook_deliveries_total{outcome="delivered",trigger="a"} 3`) {
		t.Errorf("/metrics = %d\n%s", code, body)
	}
	code, body := get(t, h, "/api/triggers")
	if code != 200 {
		t.Fatalf("/api/triggers = %d", code)
	}
	var resp TriggersResponse
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatal(err)
	}
	if !resp.Ready || len(resp.Triggers) != 1 {
		t.Fatalf("response %+v", resp)
	}
	v := resp.Triggers[0]
	if v.Deliveries["delivered"] != 3 || v.Deliveries["dead_lettered"] != 1 || v.Attempts["server_error"] != 2 || v.DeadLetters != 1 || v.InFlight != 2 ||
		v.EventsReceived != 4 || !v.CheckpointTime.Equal(cp) || v.CheckpointLagSeconds != 1.5 {
		t.Errorf("trigger view %+v", v)
	}
	if code, _ := get(t, h, "/nope"); code != http.StatusNotFound {
		t.Errorf("/nope = %d", code)
	}
}

func TestServerLifecycle(t *testing.T) {
	s, err := Start(Options{Addr: "127.0.0.1:0", Runner: fakeRunner{ready: true}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.URL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz = %d", resp.StatusCode)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, err := http.Get(s.URL() + "/healthz"); err == nil {
		t.Error("server still answering after Shutdown")
	}
	if _, err := Start(Options{Addr: "127.0.0.1:0"}); err == nil {
		t.Error("Start without a runner succeeded")
	}
}

// TestReadyzErrorTextNeedsToken: with admin.token set, /readyz stays open
// for probes, but the reasons' error text (a payload error quoting a
// changed document's value, an endpoint's answer) goes only to a request
// presenting the token; without it, or with a wrong one, each line is the
// trigger and its state, and a way out (free text that may quote errors of
// any partition or endpoint) is only pointed to.
func TestReadyzErrorTextNeedsToken(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const secret = "078-05-1120" // a document's value, quoted by the errors
	sts := []runner.TriggerStatus{
		{Name: "a", State: runner.StatePaused, Paused: &runner.PauseInfo{By: runner.PauseByPayloadErrors,
			Reason: `build payload: $convert: Failed to parse number '` + secret + `'`}, WayOut: "fix webhook.payload"},
		{Name: "b", State: runner.StateFailed, LastError: "delivery msg_1: HTTP 422: bad ssn " + secret, WayOut: "changehook skip b"},
		{Name: "c", State: runner.StateRetrying, Since: now.Add(-time.Hour), LastError: "HTTP 400: " + secret},
		{Name: "d", State: runner.StateStarting, LastError: "open stream: " + secret},
		{Name: "e", State: runner.StateRetrying, Since: now.Add(-time.Hour), StreamOpen: true,
			Circuit: &dispatcher.CircuitStatus{State: dispatcher.CircuitOpen, LastError: "HTTP 422: bad ssn " + secret},
			WayOut:  "the endpoint's circuit is open (last failure: HTTP 422: bad ssn " + secret + "): fix the endpoint"},
	}
	s, err := Start(Options{Addr: "127.0.0.1:0", Runner: fakeRunner{ready: true, sts: sts}, Token: authToken, authDelay: -1,
		Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	const wayOut = "; its way out: GET /api/triggers with the admin token"
	brief := "trigger a: paused by payload_errors" + wayOut + "\n" +
		"trigger b: failed" + wayOut + "\n" +
		"trigger c: retrying for 1h0m0s (longer than 5m0s)\n" +
		"trigger d: starting, change stream not open\n" +
		"trigger e: retrying for 1h0m0s (longer than 5m0s)" + wayOut + "\n"
	for _, tc := range []struct {
		name, auth string
		full       bool
	}{
		{"no credentials", "", false},
		{"wrong token", "Bearer not-" + authToken, false},
		{"bearer token", "Bearer " + authToken, true},
		{"basic credentials", basic("probe", authToken), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, s.URL()+"/readyz", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			body := string(b)
			if res.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("status %d, want 503", res.StatusCode)
			}
			if tc.full {
				for _, want := range []string{"trigger a: paused by payload_errors: build payload: $convert: Failed to parse number '" + secret + "'; way out: fix webhook.payload",
					"trigger b: failed: delivery msg_1: HTTP 422: bad ssn " + secret + "; way out: changehook skip b",
					"trigger c: retrying for 1h0m0s (longer than 5m0s): HTTP 400: " + secret,
					"trigger d: starting, change stream not open: open stream: " + secret,
					"trigger e: retrying for 1h0m0s (longer than 5m0s); way out: the endpoint's circuit is open (last failure: HTTP 422: bad ssn " + secret + "): fix the endpoint"} {
					if !strings.Contains(body, want) {
						t.Errorf("body %q, want a line %q", body, want)
					}
				}
				return
			}
			if body != brief {
				t.Errorf("body %q, want %q", body, brief)
			}
		})
	}
	// Guessing the token through /readyz: once an address sent more wrong
	// tokens than a guarded path tolerates undelayed, it gets the brief
	// text even with the right token, so /readyz tells it nothing.
	readyz := func(auth string) string {
		req, err := http.NewRequest(http.MethodGet, s.URL()+"/readyz", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", auth)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	for i := range authFailsBeforeDelay + 1 {
		readyz(fmt.Sprintf("Bearer guess-%d", i))
	}
	if body := readyz("Bearer " + authToken); body != brief {
		t.Errorf("right token after %d wrong ones from the address: body %q, want the brief one", authFailsBeforeDelay+1, body)
	}
}
