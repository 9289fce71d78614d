package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
)

// recordingOps is a Controller, Reloader and DeadLetterOps that records the
// calls that reached it.
type recordingOps struct {
	mu    sync.Mutex
	calls []string
}

func (o *recordingOps) record(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, s)
}

// take returns the calls recorded since the last take.
func (o *recordingOps) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls
	o.calls = nil
	return c
}

func (o *recordingOps) RequestControl(_ context.Context, name, _ string, req store.ControlRequest) (string, error) {
	o.record(req.Kind + " " + name)
	return req.Kind + " done", nil
}

func (o *recordingOps) Reload(context.Context, string) (runner.ReloadResult, error) {
	o.record("reload")
	return runner.ReloadResult{}, nil
}

func (o *recordingOps) Replay(_ context.Context, sel deadletter.Selection) (deadletter.Summary, error) {
	o.record(fmt.Sprintf("replay %+v", sel))
	return deadletter.Summary{}, nil
}

func (o *recordingOps) Purge(_ context.Context, sel deadletter.Selection) (int64, error) {
	o.record(fmt.Sprintf("purge %+v", sel))
	return 0, nil
}

// TestMutatingCallsRefuseOtherOrigins sends the mutating calls as a page of
// another site can make a browser send them (a CORS "simple" request: no
// preflight), as the console sends them, and as curl or a script does: the
// first are refused before any control applies, with or without the admin
// token; the others work as before.
func TestMutatingCallsRefuseOtherOrigins(t *testing.T) {
	ops := &recordingOps{}
	open := startServer(t, Options{Control: ops, Reload: ops, DeadLetters: ops})
	tokened := startServer(t, Options{Control: ops, Reload: ops, DeadLetters: ops, Token: "s3cret"})

	const (
		evil        = `"http://evil.example"`
		crossSite   = "; the admin API accepts changes only from its own console or from clients that are not browsers (curl, scripts)"
		proxy       = "; behind a reverse proxy, pass the browser's Host header on"
		jsonOnly    = "mutating calls take their body as JSON: send Content-Type: application/json"
		foreignHost = " The admin server listens on loopback and answers only requests for 127.0.0.1, [::1] or localhost, " +
			"so that a web page on another name cannot reach it through DNS rebinding; " +
			"behind a reverse proxy, send the upstream's address as Host (nginx's default), or listen on another address with admin.token"
	)
	type headers struct{ host, origin, site, ctype, token string }
	for _, tc := range []struct {
		name   string
		token  bool // the server with admin.token
		method string
		path   string
		h      headers // "{host}" stands for the server's address
		body   string
		code   int
		err    string // the exact error; "" on success
		calls  string // what reached the control, reload or dead-letter ops
	}{
		// The reviewer's requests: text/plain from another site's page.
		{name: "pause from another site's page, old browser", method: "POST", path: "/api/triggers/other/pause",
			h: headers{origin: "http://evil.example", ctype: "text/plain"}, body: `{"reason":"csrf"}`,
			code: 403, err: `cross-origin request refused: Origin ` + evil + ` is not this server (Host "{host}")` + crossSite + proxy},
		{name: "purge all from another site's page, old browser", method: "POST", path: "/api/deadletters/purge",
			h: headers{origin: "http://evil.example", ctype: "text/plain"}, body: `{"all":true}`,
			code: 403, err: `cross-origin request refused: Origin ` + evil + ` is not this server (Host "{host}")` + crossSite + proxy},
		{name: "pause from another site's page", method: "POST", path: "/api/triggers/other/pause",
			h: headers{origin: "http://evil.example", site: "cross-site", ctype: "text/plain"}, body: `{"reason":"csrf"}`,
			code: 403, err: `cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: "cross-site", Origin ` + evil + `)` + crossSite},
		{name: "resume from another site's page", method: "POST", path: "/api/triggers/other/resume",
			h: headers{origin: "http://evil.example", site: "cross-site", ctype: "application/x-www-form-urlencoded"}, body: `from=now`,
			code: 403, err: `cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: "cross-site", Origin ` + evil + `)` + crossSite},
		{name: "skip from another site's page, no body", method: "POST", path: "/api/triggers/other/skip",
			h:    headers{origin: "http://evil.example", site: "cross-site"},
			code: 403, err: `cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: "cross-site", Origin ` + evil + `)` + crossSite},
		{name: "redeliver from another site's page", method: "POST", path: "/api/triggers/other/redeliver",
			h: headers{origin: "http://evil.example", ctype: "multipart/form-data; boundary=x"}, body: "--x--\r\n",
			code: 403, err: `cross-origin request refused: Origin ` + evil + ` is not this server (Host "{host}")` + crossSite + proxy},
		{name: "replay from another site's page", method: "POST", path: "/api/deadletters/replay",
			h: headers{origin: "http://evil.example", site: "cross-site", ctype: "text/plain"}, body: `{"all":true}`,
			code: 403, err: `cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: "cross-site", Origin ` + evil + `)` + crossSite},
		{name: "reload from another site's page", method: "POST", path: "/api/reload",
			h:    headers{origin: "http://evil.example", site: "cross-site"},
			code: 403, err: `cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: "cross-site", Origin ` + evil + `)` + crossSite},
		{name: "a sandboxed or data: page (Origin null)", method: "POST", path: "/api/triggers/other/pause",
			h: headers{origin: "null", ctype: "text/plain"}, body: `{}`,
			code: 403, err: `cross-origin request refused: Origin "null" is not this server (Host "{host}")` + crossSite + proxy},
		{name: "another port of this host", method: "POST", path: "/api/triggers/other/pause",
			h: headers{origin: "http://127.0.0.1:1", site: "same-site", ctype: "application/json"}, body: `{}`,
			code: 403, err: `cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: "same-site", Origin "http://127.0.0.1:1")` + crossSite},
		{name: "a browser saying cross-site is believed over a matching Origin", method: "POST", path: "/api/triggers/other/pause",
			h: headers{origin: "http://{host}", site: "cross-site", ctype: "application/json"}, body: `{}`,
			code: 403, err: `cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: "cross-site", Origin "http://{host}")` + crossSite},
		{name: "an unknown Sec-Fetch-Site", method: "POST", path: "/api/triggers/other/pause",
			h: headers{site: "cross-galaxy", ctype: "application/json"}, body: `{}`,
			code: 403, err: `cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: "cross-galaxy")` + crossSite},
		{name: "another site's page with the admin token", token: true, method: "POST", path: "/api/triggers/other/pause",
			h: headers{origin: "http://evil.example", site: "cross-site", ctype: "application/json", token: "s3cret"}, body: `{}`,
			code: 403, err: `cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: "cross-site", Origin ` + evil + `)` + crossSite},
		{name: "another site's page without the token", token: true, method: "POST", path: "/api/deadletters/purge",
			h: headers{origin: "http://evil.example", ctype: "text/plain"}, body: `{"all":true}`,
			code: 403, err: `cross-origin request refused: Origin ` + evil + ` is not this server (Host "{host}")` + crossSite + proxy},
		{name: "any other method", method: "DELETE", path: "/api/deadletters/msg_1",
			h:    headers{origin: "http://evil.example", site: "cross-site"},
			code: 403, err: `cross-site request refused: the browser sent it from another site's page (Sec-Fetch-Site: "cross-site", Origin ` + evil + `)` + crossSite},

		// Bodies that are not JSON, from any client.
		{name: "text/plain from curl", method: "POST", path: "/api/triggers/other/pause",
			h: headers{ctype: "text/plain"}, body: `{"reason":"x"}`,
			code: 415, err: jsonOnly + ` (got "text/plain")`},
		{name: "a body without Content-Type", method: "POST", path: "/api/deadletters/purge",
			body: `{"all":true}`, code: 415, err: jsonOnly + " (the request has a body and no Content-Type)"},
		{name: "form-encoded from curl -d", method: "POST", path: "/api/triggers/other/skip",
			h:    headers{ctype: "application/x-www-form-urlencoded"},
			code: 415, err: jsonOnly + ` (got "application/x-www-form-urlencoded")`},
		{name: "a JSON look-alike", method: "POST", path: "/api/reload",
			h: headers{ctype: "application/jsonp"}, body: `{}`,
			code: 415, err: jsonOnly + ` (got "application/jsonp")`},
		{name: "text/plain with the token", token: true, method: "POST", path: "/api/triggers/other/pause",
			h: headers{ctype: "text/plain", token: "s3cret"}, body: `{}`,
			code: 415, err: jsonOnly + ` (got "text/plain")`},

		// The console: same origin, as a browser sends it.
		{name: "the console", method: "POST", path: "/api/triggers/other/pause",
			h: headers{origin: "http://{host}", site: "same-origin", ctype: "application/json"}, body: `{"reason":"paused from the web console"}`,
			code: 200, calls: "pause other"},
		{name: "the console, old browser", method: "POST", path: "/api/deadletters/purge",
			h: headers{origin: "http://{host}", ctype: "application/json"}, body: `{"all":true}`,
			code: 200, calls: "purge {Trigger: IDs:[] All:true After:}"},
		{name: "the console with the token", token: true, method: "POST", path: "/api/deadletters/replay",
			h: headers{origin: "http://{host}", site: "same-origin", ctype: "application/json", token: "s3cret"}, body: `{"trigger":"other"}`,
			code: 200, calls: "replay {Trigger:other IDs:[] All:false After:}"},
		{name: "the console without the token", token: true, method: "POST", path: "/api/triggers/other/resume",
			h: headers{origin: "http://{host}", site: "same-origin", ctype: "application/json"}, body: `{"from":""}`,
			code: 401, err: unauthorizedAPI},
		// A loopback listener answers only loopback names (DNS rebinding):
		// a proxy in front of it sends the upstream's address as Host.
		{name: "a page on a name rebound to 127.0.0.1", method: "POST", path: "/api/triggers/other/pause",
			h: headers{host: "rebound.example:{port}", origin: "http://rebound.example:{port}", site: "same-origin", ctype: "application/json"}, body: `{}`,
			code: 403, err: `request refused: Host "rebound.example:{port}" is not a loopback name.` + foreignHost},
		{name: "a page on a name rebound to 127.0.0.1, with the token", token: true, method: "POST", path: "/api/triggers/other/pause",
			h: headers{host: "rebound.example:{port}", origin: "http://rebound.example:{port}", site: "same-origin", ctype: "application/json", token: "s3cret"}, body: `{}`,
			code: 403, err: `request refused: Host "rebound.example:{port}" is not a loopback name.` + foreignHost},
		{name: "a proxy that keeps Host, in front of a loopback listener", method: "POST", path: "/api/triggers/other/resume",
			h: headers{host: "admin.example.com", origin: "https://admin.example.com", site: "same-origin", ctype: "application/json"}, body: `{"from":"now"}`,
			code: 403, err: `request refused: Host "admin.example.com" is not a loopback name.` + foreignHost},
		{name: "localhost", method: "POST", path: "/api/triggers/other/skip",
			h:    headers{host: "localhost:{port}", origin: "http://localhost:{port}", site: "same-origin"},
			code: 200, calls: "skip other"},
		{name: "a proxy that rewrites Host, the browser vouching", method: "POST", path: "/api/triggers/other/pause",
			h: headers{origin: "https://admin.example.com", site: "same-origin", ctype: "application/json"}, body: `{}`,
			code: 200, calls: "pause other"},
		{name: "a proxy that rewrites Host, old browser", method: "POST", path: "/api/triggers/other/pause",
			h: headers{origin: "https://admin.example.com", ctype: "application/json"}, body: `{}`,
			code: 403, err: `cross-origin request refused: Origin "https://admin.example.com" is not this server (Host "{host}")` + crossSite + proxy},
		{name: "a same-site page of this origin", method: "POST", path: "/api/reload",
			h:    headers{origin: "http://{host}", site: "same-site"},
			code: 200, calls: "reload"},

		// curl and scripts: no Origin, no Sec-Fetch-Site.
		{name: "curl with JSON", method: "POST", path: "/api/triggers/other/redeliver",
			h: headers{ctype: "application/json; charset=utf-8"}, body: `{"since":"2026-01-02T03:04:05Z"}`,
			code: 200, calls: "redeliver other"},
		{name: "curl without a body", method: "POST", path: "/api/triggers/other/skip",
			code: 200, calls: "skip other"},
		{name: "curl reload without a body", method: "POST", path: "/api/reload",
			code: 200, calls: "reload"},
		{name: "curl with the token", token: true, method: "POST", path: "/api/deadletters/purge",
			h: headers{ctype: "application/json", token: "s3cret"}, body: `{"ids":["a"]}`,
			code: 200, calls: "purge {Trigger: IDs:[a] All:false After:}"},
		{name: "curl without the token", token: true, method: "POST", path: "/api/reload",
			code: 401, err: unauthorizedAPI},
		{name: "curl with a wrong token", token: true, method: "POST", path: "/api/triggers/other/pause",
			h: headers{ctype: "application/json", token: "nope"}, body: `{}`,
			code: 401, err: unauthorizedAPI},
		{name: "a user-initiated request (Sec-Fetch-Site none)", method: "POST", path: "/api/triggers/other/skip",
			h: headers{site: "none"}, code: 200, calls: "skip other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open
			if tc.token {
				s = tokened
			}
			_, port, _ := net.SplitHostPort(s.Addr())
			fill := func(v string) string {
				return strings.NewReplacer("{host}", s.Addr(), "{port}", port).Replace(v)
			}
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, s.URL()+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.h.host != "" {
				req.Host = fill(tc.h.host)
			}
			for k, v := range map[string]string{"Origin": tc.h.origin, "Sec-Fetch-Site": tc.h.site, "Content-Type": tc.h.ctype} {
				if v != "" {
					req.Header.Set(k, fill(v))
				}
			}
			if tc.h.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.h.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			var got struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%s %s = %d %q: not JSON: %v", tc.method, tc.path, resp.StatusCode, b, err)
			}
			if resp.StatusCode != tc.code || got.Error != fill(tc.err) {
				t.Errorf("%s %s = %d %s\nwant %d with error %q", tc.method, tc.path, resp.StatusCode, b, tc.code, fill(tc.err))
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if calls := strings.Join(ops.take(), "; "); calls != tc.calls {
				t.Errorf("calls applied = %q, want %q", calls, tc.calls)
			}
		})
	}
}

// TestNoCORS: another origin's page cannot read the GET endpoints through
// the browser, since no response allows it (no Access-Control-* header),
// and a preflight for a mutating call is refused.
func TestNoCORS(t *testing.T) {
	ops := &recordingOps{}
	s := startServer(t, Options{Control: ops, Reload: ops, DeadLetters: ops})
	for _, tc := range []struct {
		method, path string
		h            map[string]string
		code         int
	}{
		{"GET", "/api/triggers", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, 200},
		{"GET", "/metrics", map[string]string{"Origin": "http://evil.example"}, 200},
		{"GET", "/readyz", map[string]string{"Origin": "http://evil.example"}, 200},
		{"GET", "/", map[string]string{"Origin": "http://evil.example"}, 200},
		{"OPTIONS", "/api/triggers", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site",
			"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}, 403},
		{"OPTIONS", "/api/triggers/other/pause", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site",
			"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}, 403},
	} {
		req, err := http.NewRequest(tc.method, s.URL()+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range tc.h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.code)
		}
		for k := range resp.Header {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("%s %s answers %s: %q", tc.method, tc.path, k, resp.Header.Values(k))
			}
		}
	}
	if calls := ops.take(); len(calls) != 0 {
		t.Errorf("calls applied = %q, want none", calls)
	}
}

// TestOriginIsHost compares an Origin header with a Host header.
func TestOriginIsHost(t *testing.T) {
	for _, tc := range []struct {
		origin, host string
		want         bool
	}{
		{"http://127.0.0.1:9470", "127.0.0.1:9470", true},
		{"http://127.0.0.1:9470", "127.0.0.1:9471", false},
		{"http://localhost:9470", "127.0.0.1:9470", false},
		{"http://[::1]:9470", "[::1]:9470", true},
		{"http://[::1]", "[::1]:80", true},
		{"https://admin.example.com", "admin.example.com", true},
		{"https://admin.example.com", "admin.example.com:443", true},
		{"https://admin.example.com", "admin.example.com:80", false},
		{"http://admin.example.com", "admin.example.com:80", true},
		{"HTTPS://Admin.Example.COM", "admin.example.com", true},
		{"https://admin.example.com.evil.example", "admin.example.com", false},
		{"https://admin.example.com/", "admin.example.com", true},
		{"https://admin.example.com/path", "admin.example.com", false},
		{"https://user@admin.example.com", "admin.example.com", false},
		{"null", "null", false},
		{"file://", "", false},
		{"chrome-extension://abcdef", "abcdef", false},
		{"ws://127.0.0.1:9470", "127.0.0.1:9470", false},
		{"http://127.0.0.1:9470", "", false},
		{"", "127.0.0.1:9470", false},
	} {
		if got := originIsHost(tc.origin, tc.host); got != tc.want {
			t.Errorf("originIsHost(%q, %q) = %v, want %v", tc.origin, tc.host, got, tc.want)
		}
	}
}

// TestCrossOriginBehindProxy: on a listener beyond loopback (where the Host
// check does not apply) the console behind a TLS proxy that keeps Host is
// of this server's origin, and another site's page is not.
func TestCrossOriginBehindProxy(t *testing.T) {
	for _, tc := range []struct {
		name                       string
		host, origin, site, wantIn string // wantIn: a part of the refusal; "" when accepted
	}{
		{"the console behind a TLS proxy that keeps Host", "admin.example.com", "https://admin.example.com", "same-origin", ""},
		{"the same, old browser", "admin.example.com", "https://admin.example.com", "", ""},
		{"a proxy that writes the default port", "Admin.Example.com:443", "https://admin.example.com", "", ""},
		{"another site's page", "admin.example.com", "https://evil.example", "cross-site", "cross-site request refused"},
		{"another site's page, old browser", "admin.example.com", "https://evil.example", "", `Origin "https://evil.example" is not this server`},
	} {
		r := httptest.NewRequest("POST", "http://"+tc.host+"/api/reload", nil)
		r.Host = tc.host
		r.Header.Set("Origin", tc.origin)
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		got := crossOrigin(r)
		if (got == "") != (tc.wantIn == "") || !strings.Contains(got, tc.wantIn) {
			t.Errorf("%s: crossOrigin = %q, want %q", tc.name, got, tc.wantIn)
		}
	}
}

// TestForeignHostRefused: a loopback listener answers reads and changes
// only for loopback names, with or without the token; beyond loopback the
// Host is not checked.
func TestForeignHostRefused(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1:9470", true}, {"127.1.2.3", true}, {"[::1]:9470", true}, {"localhost", true}, {"LocalHost:1", true},
		{"admin.localhost:9470", true}, {"localhost.:9470", true},
		{"rebound.example:9470", false}, {"localhost.example", false}, {"127.0.0.1.nip.io", false}, {"[::2]", false}, {"10.0.0.1:9470", false},
	} {
		if got := loopbackHost(tc.host); got != tc.want {
			t.Errorf("loopbackHost(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
	s := startServer(t, Options{})
	for _, path := range []string{"/api/triggers", "/", "/metrics", "/api/deadletters"} {
		req, err := http.NewRequest("GET", s.URL()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "rebound.example"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s for Host rebound.example = %d, want 403", path, resp.StatusCode)
		}
	}
	ok := refuseForeignHost(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }), false)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://admin.example.com/api/triggers", nil)
	ok.ServeHTTP(rec, req)
	if rec.Code != 204 {
		t.Errorf("beyond loopback, Host admin.example.com = %d, want 204 (not checked)", rec.Code)
	}
}
