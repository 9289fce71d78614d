package admin

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

const (
	authToken = "adm-tok-0123456789abcdef"
	// piiEmail is in the dead letter's event: no answer without the
	// token may show it.
	piiEmail = "alice@example.com"
)

// memStore holds one dead letter, msg_1, of trigger orders.
type memStore struct{}

func (memStore) dl() store.StoredDeadLetter {
	tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: "82AB"}})
	ev, _ := bson.Marshal(bson.D{{Key: "_id", Value: bson.Raw(tok)}, {Key: "operationType", Value: "insert"},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: 1}}},
		{Key: "fullDocument", Value: bson.D{{Key: "email", Value: piiEmail}}}})
	return store.StoredDeadLetter{ID: "msg_1", DeadLetter: dispatcher.DeadLetter{Trigger: "orders", WebhookID: "msg_1", Event: ev, Token: tok,
		Attempts: 1, LastStatus: 500, DeadLetteredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
}

func (memStore) LoadCheckpoint(context.Context, string) (store.Checkpoint, bool, error) {
	return store.Checkpoint{}, false, nil
}

func (m memStore) ListDeadLetters(context.Context, store.DeadLetterFilter) ([]store.StoredDeadLetter, error) {
	return []store.StoredDeadLetter{m.dl()}, nil
}

func (m memStore) GetDeadLetter(_ context.Context, id string) (store.StoredDeadLetter, bool, error) {
	if id != "msg_1" {
		return store.StoredDeadLetter{}, false, nil
	}
	return m.dl(), true, nil
}

func (memStore) ListAttempts(context.Context, store.AttemptFilter) ([]store.AttemptRecord, string, error) {
	return []store.AttemptRecord{{Trigger: "orders", WebhookID: "msg_1", Error: "to " + piiEmail}}, "", nil
}

// startAuthServer starts a server with every route, on addr, with token
// ("": none), no delay after failures, logging to the returned buffer.
func startAuthServer(t *testing.T, addr, token string) (*Server, *recordingOps, *syncbuf.Buffer) {
	t.Helper()
	ops := &recordingOps{}
	logs := &syncbuf.Buffer{}
	s, err := Start(Options{Addr: addr, Runner: fakeRunner{ready: true, sts: []runner.TriggerStatus{{Name: "orders", State: runner.StateRunning, StreamOpen: true}}},
		Store: memStore{}, History: memStore{}, Control: ops, Reload: ops, DeadLetters: ops, Token: token, authDelay: -1,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, ops, logs
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// TestTokenGuardsEveryPath: with admin.token set, every path but the
// probes, /metrics and the console's assets needs it, as a bearer token or
// as HTTP Basic credentials' password, reads (the dead letters' events,
// the history, the console's pages) included, its scheme named in any
// case; without a token, nothing changes (reads open, mutating calls on
// loopback).
func TestTokenGuardsEveryPath(t *testing.T) {
	paths := []struct {
		method, path, body string
		open               bool // served without the token
		want               int  // the answer when authorised
	}{
		{"GET", "/healthz", "", true, 200},
		{"HEAD", "/healthz", "", true, 200},
		{"GET", "/readyz", "", true, 200},
		{"HEAD", "/readyz", "", true, 200},
		{"GET", "/metrics", "", true, 200},
		{"HEAD", "/metrics", "", true, 200},
		{"GET", "/assets/console.js", "", true, 200},
		{"GET", "/assets/console.css", "", true, 200},
		{"HEAD", "/assets/console.css", "", true, 200},
		{"GET", "/favicon.ico", "", true, 204},
		{"HEAD", "/favicon.ico", "", true, 204},
		{"GET", "/assets/", "", false, 404},        // the console's not found, no listing
		{"GET", "/assets/nope.js", "", false, 404}, // assets are routed by their exact names
		{"POST", "/assets/console.js", "", false, 404},
		{"GET", "/healthz/", "", false, 404},
		{"POST", "/healthz", "", false, 404}, // the console's not found
		{"GET", "/api/triggers", "", false, 200},
		{"GET", "/api/history", "", false, 200},
		{"GET", "/api/deadletters", "", false, 200},
		{"GET", "/api/deadletters/msg_1", "", false, 200},
		{"HEAD", "/api/deadletters/msg_1", "", false, 200},
		{"GET", "/api/nope", "", false, 404},
		{"GET", "/", "", false, 200},
		{"GET", "/triggers/orders", "", false, 200},
		{"GET", "/deadletters", "", false, 200},
		{"GET", "/deadletters/msg_1", "", false, 200},
		{"GET", "/nope", "", false, 404},
		{"POST", "/api/triggers/orders/pause", `{"reason":"x"}`, false, 200},
		{"POST", "/api/reload", "", false, 200},
		{"POST", "/api/deadletters/purge", `{"ids":["msg_1"]}`, false, 200},
	}
	creds := []struct {
		name, auth string
		right      bool
	}{
		{"no credentials", "", false},
		{"wrong bearer", "Bearer not-" + authToken, false},
		{"right bearer", "Bearer " + authToken, true},
		// An authentication scheme is case-insensitive (RFC 9110, 11.1).
		{"right bearer, lower-case scheme", "bearer " + authToken, true},
		{"right bearer, upper-case scheme", "BEARER " + authToken, true},
		{"wrong bearer, lower-case scheme", "bearer not-" + authToken, false},
		{"right basic, lower-case scheme", "basic " + strings.TrimPrefix(basic("anyone", authToken), "Basic "), true},
		{"right basic", basic("anyone", authToken), true},
		{"right basic, empty user", basic("", authToken), true},
		{"wrong basic", basic("admin", authToken+"x"), false},
		{"token as basic user", basic(authToken, ""), false},
	}
	for _, cfg := range []struct {
		name, addr, token string
	}{
		{"no token configured", "127.0.0.1:0", ""},
		// The Kubernetes example: every interface, a token.
		{"token configured", "0.0.0.0:0", authToken},
	} {
		t.Run(cfg.name, func(t *testing.T) {
			s, _, logs := startAuthServer(t, cfg.addr, cfg.token)
			_, port, _ := net.SplitHostPort(s.Addr())
			base := "http://127.0.0.1:" + port
			for _, p := range paths {
				for _, c := range creds {
					want := p.want
					if cfg.token != "" && !p.open && !c.right {
						want = http.StatusUnauthorized
					}
					req, _ := http.NewRequest(p.method, base+p.path, strings.NewReader(p.body))
					if p.body == "" {
						req.Body, req.ContentLength = nil, 0
					} else {
						req.Header.Set("Content-Type", "application/json")
					}
					if c.auth != "" {
						req.Header.Set("Authorization", c.auth)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != want {
						t.Errorf("%s %s, %s: %d, want %d: %.200s", p.method, p.path, c.name, resp.StatusCode, want, b)
						continue
					}
					if want != http.StatusUnauthorized {
						continue
					}
					if strings.Contains(string(b), piiEmail) {
						t.Errorf("%s %s, %s: the 401 shows the event", p.method, p.path, c.name)
					}
					challenges := strings.Join(resp.Header.Values("WWW-Authenticate"), " | ")
					if !strings.Contains(challenges, `Basic realm="changehook admin", charset="UTF-8"`) {
						t.Errorf("%s %s, %s: WWW-Authenticate %q, want the Basic challenge", p.method, p.path, c.name, challenges)
					}
					if api := strings.HasPrefix(p.path, "/api/"); api != strings.Contains(challenges, "Bearer") ||
						api != (resp.Header.Get("Content-Type") == "application/json") {
						t.Errorf("%s %s, %s: WWW-Authenticate %q, Content-Type %q: want Bearer and JSON exactly under /api/",
							p.method, p.path, c.name, challenges, resp.Header.Get("Content-Type"))
					}
				}
			}
			if strings.Contains(logs.String(), authToken) {
				t.Errorf("the token is in the logs:\n%s", logs)
			}
		})
	}
}

// TestTokenPathTricks: a path that only looks like an open one is not.
// The token check decides from the route the server takes, not from a
// decoded or cleaned copy of the path: dots and slashes escaped in a
// segment ("%2F", "%2f", "%2e") stay inside that segment of a guarded
// route. A path the server only redirects to its clean form is answered
// as the clean form would be.
func TestTokenPathTricks(t *testing.T) {
	s, _, _ := startAuthServer(t, "127.0.0.1:0", authToken)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		method, path string
		want         int // the answer without the token
	}{
		{"GET", "/assets/../api/deadletters/msg_1", 401},
		{"GET", "/assets/%2e%2e/deadletters/msg_1", 401},
		{"GET", "/healthz/../api/history", 401},
		{"GET", "/api/deadletters/x%2F..%2F..%2Fmetrics", 401},
		{"GET", "/api/deadletters/x%2f..%2f..%2fmetrics", 401},
		{"GET", "/api/deadletters/msg_1%2F..%2F..%2F..%2Fhealthz", 401},
		{"GET", "/triggers/x%2F..%2F..%2Fhealthz", 401},
		{"GET", "/triggers/x%2f..%2f..%2fhealthz", 401},
		{"HEAD", "/triggers/x%2F..%2F..%2Fhealthz", 401},
		{"GET", "/deadletters/x%2F..%2F..%2Freadyz", 401},
		{"GET", "/deadletters/x%2f..%2f..%2freadyz", 401},
		{"GET", "/deadletters/x%2F..%2F..%2Fassets%2Fconsole.js", 401},
		{"GET", "/deadletters/msg_1%2F%2E%2E%2F%2E%2E%2Ffavicon.ico", 401},
		{"GET", "/triggers/orders%2F..%2F..%2Fassets/console.js", 401},
		// One escaped segment under /assets/ is no asset's name: the
		// console's 404 behind the token, never the assets' listing.
		{"GET", "/assets/..%2F", 401},
		{"GET", "/assets/.%2F", 401},
		{"GET", "/assets/x%2F..%2F", 401},
		{"GET", "/assets/%2E%2E%2F", 401},
		{"GET", "/assets/%2e", 401},
		{"GET", "/assets/%2e%2e", 401},
		{"GET", "/assets/console.js%2F..%2F", 401},
		{"HEAD", "/assets/..%2F", 401},
		// Open: redirected to the clean path, an open one.
		{"GET", "/api/../healthz", 307},
		{"GET", "/deadletters/../assets/console.js", 307},
		// Guarded: the clean path is.
		{"GET", "/assets/../deadletters", 401},
	} {
		for _, token := range []bool{false, true} {
			req, _ := http.NewRequest(tc.method, s.URL()+tc.path, nil)
			req.URL.Opaque = tc.path // sent as is, not cleaned by the client
			if token {
				req.Header.Set("Authorization", "Bearer "+authToken)
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case !token && (resp.StatusCode != tc.want || strings.Contains(string(b), piiEmail)):
				t.Errorf("%s %s without the token: %d %.200s; want %d", tc.method, tc.path, resp.StatusCode, b, tc.want)
			case token && resp.StatusCode == http.StatusUnauthorized:
				t.Errorf("%s %s with the token: 401 %.200s", tc.method, tc.path, b)
			case strings.Contains(string(b), `<a href="console.js">`):
				t.Errorf("%s %s (token %v): a directory listing: %.200s", tc.method, tc.path, token, b)
			}
		}
	}
}

// TestBasicCredentialsDoNotPassCrossSite: a browser sends Basic
// credentials it was given with any request to the server, those a page
// of another site makes it send included; the cross-site and JSON checks
// still refuse such mutating calls.
func TestBasicCredentialsDoNotPassCrossSite(t *testing.T) {
	s, ops, _ := startAuthServer(t, "0.0.0.0:0", authToken)
	_, port, _ := net.SplitHostPort(s.Addr())
	for _, tc := range []struct {
		name    string
		headers map[string]string
		body    string
		want    int
	}{
		{"cross-site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example", "Content-Type": "application/json"}, `{}`, 403},
		{"same-site other origin", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}, ``, 403},
		{"foreign Origin, old browser", map[string]string{"Origin": "https://evil.example"}, ``, 403},
		{"form body", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, `reason=x`, 415},
		{"text/plain body", map[string]string{"Content-Type": "text/plain"}, `{"reason":"x"}`, 415},
		{"the console", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:" + port, "Content-Type": "application/json"}, `{}`, 200},
	} {
		req, _ := http.NewRequest("POST", "http://127.0.0.1:"+port+"/api/triggers/orders/pause", strings.NewReader(tc.body))
		if tc.body == "" {
			req.Body, req.ContentLength = nil, 0
		}
		for k, v := range tc.headers {
			req.Header.Set(k, v)
		}
		req.Header.Set("Authorization", basic("admin", authToken))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		calls := ops.take()
		if resp.StatusCode != tc.want || (tc.want == 200) != (len(calls) == 1) {
			t.Errorf("%s: %d, calls %v; want %d", tc.name, resp.StatusCode, calls, tc.want)
		}
	}
}

// TestFailedAuthenticationLogged: wrong credentials are logged at warn with
// the remote address, method and path, at most one line per authLogEvery
// counting the failures since the last one, never with the credentials;
// missing ones (a browser's first request) are not logged.
func TestFailedAuthenticationLogged(t *testing.T) {
	logs := &syncbuf.Buffer{}
	a := newTokenAuth(authToken, slog.New(slog.NewTextHandler(logs, nil)))
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a.now = func() time.Time { return now }
	a.delay = 0 // TestFailedAuthenticationDelay covers it
	h := a.require(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }),
		func(*http.Request) bool { return false })
	call := func(remote, method, path, auth string) int {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, nil)
		req.RemoteAddr = remote + ":5555"
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	lines := func() []string {
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			if l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	for range 5 {
		if code := call("192.0.2.7", "GET", "/", ""); code != 401 {
			t.Fatalf("no credentials: %d", code)
		}
	}
	if l := lines(); len(l) != 0 {
		t.Fatalf("missing credentials were logged: %q", l)
	}
	for i := range 200 {
		if code := call("192.0.2.8", "GET", "/api/deadletters/msg_1", fmt.Sprintf("Bearer guess-%d", i)); code != 401 {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	l := lines()
	if len(l) != 1 {
		t.Fatalf("200 failures within %s gave %d lines, want 1: %q", authLogEvery, len(l), l)
	}
	for _, want := range []string{"level=WARN", "remote=192.0.2.8", "method=GET", "path=/api/deadletters/msg_1", "failures_since_last_line=1"} {
		if !strings.Contains(l[0], want) {
			t.Errorf("log line %q lacks %q", l[0], want)
		}
	}
	now = now.Add(authLogEvery)
	if code := call("198.51.100.1", "POST", "/api/reload", basic("x", "guess-last")); code != 401 {
		t.Fatalf("last guess: %d", code)
	}
	l = lines()
	if len(l) != 2 || !strings.Contains(l[1], "failures_since_last_line=200") || !strings.Contains(l[1], "remote=198.51.100.1") || !strings.Contains(l[1], "method=POST") {
		t.Fatalf("after %s: %q; want a second line counting the 199 unlogged failures and this one", authLogEvery, l)
	}
	if strings.Contains(logs.String(), "guess") || strings.Contains(logs.String(), authToken) {
		t.Errorf("credentials in the logs:\n%s", logs)
	}
	if code := call("192.0.2.8", "GET", "/", "Bearer "+authToken); code != http.StatusNoContent {
		t.Errorf("the right token: %d", code)
	}
}

// TestFailedAuthenticationDelay: a remote address that presented wrong
// credentials more than authFailsBeforeDelay times within authFailWindow
// waits a bounded delay before each further 401, others do not, the right
// token clears its record, and the addresses remembered are capped.
func TestFailedAuthenticationDelay(t *testing.T) {
	a := newTokenAuth(authToken, slog.New(slog.DiscardHandler))
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a.now = func() time.Time { return now }
	req := func(remote, auth string) *http.Request {
		r := httptest.NewRequest("GET", "/api/triggers", nil)
		r.RemoteAddr = remote + ":1"
		r.Header.Set("Authorization", auth)
		return r
	}
	for i := 1; i <= authFailsBeforeDelay+3; i++ {
		want := time.Duration(0)
		if i > authFailsBeforeDelay {
			want = authFailDelay
		}
		if d := a.failed(req("192.0.2.1", "Bearer x")); d != want {
			t.Fatalf("failure %d: delay %s, want %s", i, d, want)
		}
	}
	if authFailDelay > time.Second {
		t.Errorf("authFailDelay %s is not short", authFailDelay)
	}
	if d := a.failed(req("192.0.2.2", "Bearer x")); d != 0 {
		t.Errorf("another address is delayed too: %s", d)
	}
	now = now.Add(authFailWindow + time.Second)
	if d := a.failed(req("192.0.2.1", "Bearer x")); d != 0 {
		t.Errorf("after %s without failures: delay %s, want none", authFailWindow, d)
	}
	for range authFailsBeforeDelay + 1 {
		a.failed(req("192.0.2.1", "Bearer x"))
	}
	a.succeeded(req("192.0.2.1", "Bearer "+authToken))
	if d := a.failed(req("192.0.2.1", "Bearer x")); d != 0 {
		t.Errorf("after the right token: delay %s, want none", d)
	}
	for i := range 3 * maxAuthFailRemotes {
		a.failed(req(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "Bearer x"))
	}
	if n := len(a.remotes); n > maxAuthFailRemotes {
		t.Errorf("%d remote addresses remembered, want at most %d", n, maxAuthFailRemotes)
	}
}

// TestStartWarnsAboutAuth: the server warns when it listens beyond
// loopback without a token; a short token is the configuration's warning
// (triggers.Config.Warnings), which run logs once, so the server does not
// repeat it.
func TestStartWarnsAboutAuth(t *testing.T) {
	for _, tc := range []struct {
		addr, token, want string
	}{
		{"0.0.0.0:0", "", "anyone who can reach it can read the dead letters' events and the delivery history; set admin.token"},
		{"127.0.0.1:0", "short-token", ""},
		{"127.0.0.1:0", "", ""},
		{"0.0.0.0:0", authToken, ""},
	} {
		logs := &syncbuf.Buffer{}
		s, err := Start(Options{Addr: tc.addr, Runner: fakeRunner{}, Token: tc.token, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		_ = s.Shutdown(context.Background())
		got := logs.String()
		if tc.want == "" && strings.Contains(got, "level=WARN") || tc.want != "" && (!strings.Contains(got, tc.want) || !strings.Contains(got, "level=WARN")) {
			t.Errorf("%s, token %q: logs %q; want a warning %q", tc.addr, tc.token, got, tc.want)
		}
		if tc.token != "" && strings.Contains(got, tc.token) {
			t.Errorf("the token is in the logs: %q", got)
		}
	}
}
