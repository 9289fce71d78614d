package dispatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/changehook/changehook/triggers"
)

// TestResponseBodySecretsMasked: an endpoint echoing the request (httpbin's
// /anything, proxy and WAF error pages) has every secret the Sender sent
// masked in the kept body (Result.Body, the observers' Attempt.Body: the
// history, dead letters, the API), failures and successes alike.
func TestResponseBodySecretsMasked(t *testing.T) {
	authz := func(r *http.Request) string { return "authorization=" + r.Header.Get("Authorization") }
	basic := func(r *http.Request) string {
		u, p, _ := r.BasicAuth()
		return "basic=" + u + ":" + p
	}
	uri := func(r *http.Request) string { return r.Method + " " + r.RequestURI }
	apiKeyJSON := func(r *http.Request) string {
		b, _ := json.Marshal(map[string]string{"X-Api-Key": r.Header.Get("X-Api-Key")})
		return string(b)
	}
	long := strings.Repeat("x", respBodyLimit-6)
	tests := []struct {
		name    string
		path    string // after the server's URL ("/h" when empty)
		webhook triggers.Webhook
		status  int
		echo    func(r *http.Request) string
		want    string
	}{
		{name: "header value", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Api-Key": "h3adervalue", "X-Env": "dev"}},
			echo: func(r *http.Request) string {
				return "x-api-key=" + r.Header.Get("X-Api-Key") + " x-env=" + r.Header.Get("X-Env") + " " + apiKeyJSON(r)
			},
			want: `x-api-key=<secret> x-env=dev {"X-Api-Key":"<secret>"}`},
		{name: "header value json-escaped", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Api-Key": `k3y<&>"v`}},
			echo: apiKeyJSON, want: `{"X-Api-Key":"<secret>"}`},
		{name: "basic auth", webhook: triggers.Webhook{Auth: &triggers.Auth{Basic: &triggers.BasicAuth{Username: "alice", Password: "pa55word"}}},
			echo: func(r *http.Request) string { return authz(r) + " " + basic(r) },
			want: "authorization=Basic <secret> basic=alice:<secret>"},
		{name: "bearer token", webhook: triggers.Webhook{Auth: &triggers.Auth{Bearer: &triggers.BearerAuth{Token: "b3arertoken"}}},
			echo: authz, want: "authorization=Bearer <secret>"},
		{name: "url userinfo", path: "UIUSERNAME:UIPASS%2FSECRET7@/h",
			echo: func(r *http.Request) string { return authz(r) + " " + basic(r) },
			want: "authorization=Basic <secret> basic=<secret>:<secret>"},
		// A token as the user name, without a password: net/http sends
		// Basic base64("TOKEN:").
		{name: "url user name alone", path: "sk_live_4eC39HqLyjWDarjtT1zdp7dc@/h",
			echo: func(r *http.Request) string { return authz(r) + " " + basic(r) },
			want: "authorization=Basic <secret> basic=<secret>:"},
		{name: "url user name, empty password", path: "sk_live_4eC39HqLyjWDarjtT1zdp7dc:@/h",
			echo: func(r *http.Request) string { return authz(r) + " " + basic(r) },
			want: "authorization=Basic <secret> basic=<secret>:"},
		{name: "url user name escaped", path: "tok%2Fen%40x4Yz@/h",
			echo: basic, want: "basic=<secret>:"},
		{name: "query values", path: "/h?token=qu3ry%2Fv4lue&mode=fast&v=1",
			echo: uri, want: "POST /h?token=<secret>&mode=<secret>&v=1"},
		{name: "query value decoded", path: "/h?token=qu3ry%2Fv4lue",
			echo: func(r *http.Request) string { return "token=" + r.URL.Query().Get("token") }, want: "token=<secret>"},
		{name: "secret path", path: "/hooks/teamsecretlowercasepath", webhook: triggers.Webhook{SecretPath: true},
			echo: func(r *http.Request) string { return uri(r) + " no hook named teamsecretlowercasepath" },
			want: "POST /<secret> no hook named <secret>"},
		{name: "token-shaped path segment", path: "/in/Xk39fjQm2Lp8Zr7Tq1Vw",
			echo: uri, want: "POST /in/<secret>"},
		{name: "token in a segment with sub-delimiters", path: "/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
			echo: func(r *http.Request) string {
				return uri(r) + " unknown token " + strings.TrimPrefix(r.URL.Path, "/bot123456789:")
			},
			want: "POST /<secret>/sendMessage unknown token <secret>/sendMessage"},
		{name: "ordinary path", path: "/status/hooks",
			echo: uri, want: "POST /status/hooks"},
		{name: "signing key", webhook: triggers.Webhook{Secrets: []triggers.Secret{testSecret}},
			echo: func(*http.Request) string {
				return "expected " + string(testSecret) + " or " + strings.TrimPrefix(string(testSecret), secretPrefix)
			},
			want: "expected <secret> or <secret>"},
		{name: "2xx echo", status: http.StatusOK, webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Api-Key": "h3adervalue"}},
			echo: func(r *http.Request) string { return "x-api-key=" + r.Header.Get("X-Api-Key") }, want: "x-api-key=<secret>"},
		{name: "secret cut by truncation", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Api-Key": "h3adervalue"}},
			echo: func(r *http.Request) string { return long + r.Header.Get("X-Api-Key") },
			want: long[:respBodyLimit-6] + "<secret>"},
		{name: "no secret", echo: func(*http.Request) string { return "bad request" }, want: "bad request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status := tt.status
			if status == 0 {
				status = http.StatusBadRequest
			}
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(status)
				fmt.Fprint(w, tt.echo(r))
			})
			wh := tt.webhook
			wh.URL = rc.srv.URL + "/h"
			if tt.path != "" {
				if user, path, ok := strings.Cut(tt.path, "@"); ok {
					wh.URL = "http://" + user + "@" + strings.TrimPrefix(rc.srv.URL, "http://") + path
				} else {
					wh.URL = rc.srv.URL + tt.path
				}
			}
			var bodies []string
			s := newTestSender(t, &triggers.Trigger{Webhook: wh, Retry: triggers.RetryPolicy{MaxAttempts: 1}},
				WithClock(newFakeClock()), WithObserver(func(a Attempt) { bodies = append(bodies, a.Body) }))
			res, _ := s.Deliver(context.Background(), testEvent(t, 1, "k"))
			if res.Status != status {
				t.Fatalf("status %d, want %d", res.Status, status)
			}
			if res.Body != tt.want {
				t.Errorf("Result.Body (%d bytes)\n got …%q\nwant …%q (%d bytes)", len(res.Body), tail(res.Body), tail(tt.want), len(tt.want))
			}
			if len(bodies) != 1 || bodies[0] != tt.want {
				t.Errorf("observed %d bodies, want 1 equal to Result.Body's", len(bodies))
			}
		})
	}
}

// tail returns the last 200 bytes of s.
func tail(s string) string { return s[max(0, len(s)-200):] }

// TestResponseBodyOAuth2SecretsMasked: the OAuth2 access token the request
// carried and the client secret are masked in a kept body.
func TestResponseBodyOAuth2SecretsMasked(t *testing.T) {
	tokens := newTokenServer(t, 3600)
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, "authorization="+r.Header.Get("Authorization")+" client secret sup3rs3cret")
	})
	s := oauthSender(t, rc.srv.URL+"/h", tokens.URL)
	res, err := s.Deliver(context.Background(), testEvent(t, 1, "a"))
	if err == nil {
		t.Fatal("Deliver succeeded, want a 403")
	}
	if want := "authorization=Bearer <secret> client secret <secret>"; res.Body != want {
		t.Errorf("Result.Body\n got %q\nwant %q", res.Body, want)
	}
}

// TestScrubForms: one pass, longest form first, a mask never searched
// again.
func TestScrubForms(t *testing.T) {
	tests := []struct {
		name  string
		s     string
		forms []string
		want  string
	}{
		{"none", "nothing here", []string{"secret"}, "nothing here"},
		{"longest first", "abcdsecret1 and secret", []string{"abcdsecret1", "secret"}, "<secret> and <secret>"},
		{"mask not searched again", "abcdsecret1", []string{"abcdsecret1", "secret"}, "<secret>"},
		{"every occurrence", "k3y k3yk3y", []string{"k3y"}, "<secret> <secret><secret>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scrubForms(tt.s, tt.forms); got != tt.want {
				t.Errorf("scrubForms(%q) = %q, want %q", tt.s, got, tt.want)
			}
		})
	}
}
