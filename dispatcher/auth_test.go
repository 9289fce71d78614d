package dispatcher

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

func TestStaticAuth(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth *triggers.Auth
		want string
	}{
		{"basic", &triggers.Auth{Basic: &triggers.BasicAuth{Username: "shop", Password: "pa55:word"}},
			"Basic " + base64.StdEncoding.EncodeToString([]byte("shop:pa55:word"))},
		{"bearer", &triggers.Auth{Bearer: &triggers.BearerAuth{Token: "tok-123"}}, "Bearer tok-123"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan string, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got <- r.Header.Get("Authorization") }))
			t.Cleanup(srv.Close)
			s, err := NewSender(&triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: srv.URL, Auth: tc.auth}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Deliver(context.Background(), testEvent(t, 1, "a")); err != nil {
				t.Fatal(err)
			}
			if g := <-got; g != tc.want {
				t.Errorf("Authorization %q, want %q", g, tc.want)
			}
		})
	}
	_, err := NewSender(&triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: "http://x", Auth: &triggers.Auth{Bearer: &triggers.BearerAuth{Token: "x"}},
		Headers: map[string]triggers.Secret{"authorization": "y"}}})
	if err == nil || !strings.Contains(err.Error(), "Authorization is set by webhook auth") {
		t.Errorf("Authorization in headers and auth: %v", err)
	}
}

// tokenServer is an OAuth2 token endpoint that counts requests and issues
// tok-1, tok-2, … valid for expiresIn seconds.
type tokenServer struct {
	*httptest.Server
	requests  atomic.Int64
	expiresIn int
	status    int // answer this status instead (0: issue tokens)
	mu        sync.Mutex
	forms     []string
}

func newTokenServer(t *testing.T, expiresIn int) *tokenServer {
	ts := &tokenServer{expiresIn: expiresIn}
	ts.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ts.requests.Add(1)
		_ = r.ParseForm()
		user, pass, _ := r.BasicAuth()
		ts.mu.Lock()
		ts.forms = append(ts.forms, fmt.Sprintf("%s %s:%s scope=%s", r.PostForm.Get("grant_type"), user, pass, r.PostForm.Get("scope")))
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if ts.status != 0 {
			w.WriteHeader(ts.status)
			fmt.Fprint(w, `{"error":"invalid_client","error_description":"client secret is sup3rs3cret"}`)
			return
		}
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":%d}`, n, ts.expiresIn)
	}))
	t.Cleanup(ts.Close)
	return ts
}

// authEndpoint answers 401 to tokens listed in reject, 200 otherwise, and
// records the Authorization of every request.
type authEndpoint struct {
	*httptest.Server
	mu     sync.Mutex
	seen   []string
	reject map[string]bool
	always bool // 401 to everything
}

func newAuthEndpoint(t *testing.T, reject ...string) *authEndpoint {
	e := &authEndpoint{reject: map[string]bool{}}
	for _, r := range reject {
		e.reject[r] = true
	}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		e.mu.Lock()
		e.seen = append(e.seen, a)
		deny := e.always || e.reject[strings.TrimPrefix(a, "Bearer ")]
		e.mu.Unlock()
		if deny {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *authEndpoint) Seen() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.seen...)
}

func oauthSender(t *testing.T, url, tokenURL string, opts ...Option) *Sender {
	t.Helper()
	s, err := NewSender(&triggers.Trigger{Name: "t", Retry: triggers.RetryPolicy{MaxAttempts: 3}, Webhook: triggers.Webhook{URL: url,
		Auth: &triggers.Auth{OAuth2: &triggers.OAuth2ClientCredentials{TokenURL: tokenURL, ClientID: "changehook", ClientSecret: "sup3rs3cret", Scopes: []string{"events.write", "b"}}}}},
		append([]Option{WithClock(newFakeClock())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOAuth2TokenCachedAndExpiring(t *testing.T) {
	tokens := newTokenServer(t, 3600)
	ep := newAuthEndpoint(t)
	s := oauthSender(t, ep.URL, tokens.URL)
	for i := range 5 {
		if _, err := s.Deliver(context.Background(), testEvent(t, i, "a")); err != nil {
			t.Fatal(err)
		}
	}
	if n := tokens.requests.Load(); n != 1 {
		t.Errorf("token requests for 5 deliveries with a 1h token: %d, want 1", n)
	}
	for _, a := range ep.Seen() {
		if a != "Bearer tok-1" {
			t.Errorf("Authorization %q, want Bearer tok-1", a)
		}
	}
	if f := tokens.forms[0]; f != "client_credentials changehook:sup3rs3cret scope=events.write b" {
		t.Errorf("token request %q", f)
	}

	// A token that expires within oauth2's 10 s margin is requested again
	// for every delivery.
	short := newTokenServer(t, 5)
	ep2 := newAuthEndpoint(t)
	s2 := oauthSender(t, ep2.URL, short.URL)
	for i := range 3 {
		if _, err := s2.Deliver(context.Background(), testEvent(t, i, "a")); err != nil {
			t.Fatal(err)
		}
	}
	if n := short.requests.Load(); n != 3 {
		t.Errorf("token requests with expiring tokens: %d, want 3", n)
	}
	if got := strings.Join(ep2.Seen(), ","); got != "Bearer tok-1,Bearer tok-2,Bearer tok-3" {
		t.Errorf("endpoint saw %s", got)
	}
}

func TestOAuth2UnauthorizedRefreshesOnce(t *testing.T) {
	// The endpoint revoked tok-1: the 401 drops it, a new token is
	// requested and the attempt is sent again, once.
	tokens := newTokenServer(t, 3600)
	ep := newAuthEndpoint(t, "tok-1")
	var attempts []Attempt
	s := oauthSender(t, ep.URL, tokens.URL, WithObserver(func(a Attempt) { attempts = append(attempts, a) }))
	res, err := s.Deliver(context.Background(), testEvent(t, 1, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 1 || len(attempts) != 1 || tokens.requests.Load() != 2 {
		t.Errorf("attempts %d observed %d token requests %d, want 1 1 2", res.Attempts, len(attempts), tokens.requests.Load())
	}
	if got := strings.Join(ep.Seen(), ","); got != "Bearer tok-1,Bearer tok-2" {
		t.Errorf("endpoint saw %s", got)
	}
	// The new token is cached.
	if _, err := s.Deliver(context.Background(), testEvent(t, 2, "a")); err != nil || tokens.requests.Load() != 2 {
		t.Errorf("second delivery: %v, token requests %d", err, tokens.requests.Load())
	}

	// An endpoint that refuses every token: each attempt refreshes once and
	// retries once, no loop; 401 is permanent by the default rules.
	tokens2 := newTokenServer(t, 3600)
	ep2 := newAuthEndpoint(t)
	ep2.always = true
	s2 := oauthSender(t, ep2.URL, tokens2.URL)
	res, err = s2.Deliver(context.Background(), testEvent(t, 1, "a"))
	var ae *AttemptError
	if err == nil || !errors.As(err, &ae) || ae.Status != 401 || ae.Retryable || res.Attempts != 1 {
		t.Fatalf("always 401: res %+v err %v", res, err)
	}
	if n, m := tokens2.requests.Load(), len(ep2.Seen()); n != 2 || m != 2 {
		t.Errorf("always 401: token requests %d, endpoint requests %d, want 2 and 2", n, m)
	}
}

func TestOAuth2TokenEndpointFailures(t *testing.T) {
	ep := newAuthEndpoint(t)
	for _, tc := range []struct {
		status int
		retry  bool
	}{{http.StatusUnauthorized, false}, {http.StatusServiceUnavailable, true}} {
		tokens := newTokenServer(t, 3600)
		tokens.status = tc.status
		s := oauthSender(t, ep.URL, tokens.URL+"/token?key=qu3ryv4l")
		res, err := s.Deliver(context.Background(), testEvent(t, 1, "a"))
		var ae *AttemptError
		if err == nil || !errors.As(err, &ae) || ae.Reason != ReasonAuth || ae.Retryable != tc.retry || res.Reason != ReasonAuth {
			t.Fatalf("token status %d: res %+v err %v", tc.status, res, err)
		}
		wantAttempts := 1
		if tc.retry {
			wantAttempts = 3
		}
		if res.Attempts != wantAttempts {
			t.Errorf("token status %d: %d attempts, want %d", tc.status, res.Attempts, wantAttempts)
		}
		for _, leak := range []string{"sup3rs3cret", "qu3ryv4l"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("error leaks %q: %v", leak, err)
			}
		}
		if !strings.Contains(err.Error(), fmt.Sprintf("answered HTTP %d", tc.status)) || !strings.Contains(err.Error(), "(invalid_client)") {
			t.Errorf("error %v", err)
		}
	}
	if len(ep.Seen()) != 0 {
		t.Errorf("the endpoint got %d requests without a token", len(ep.Seen()))
	}
	// The network guard applies to the token endpoint too.
	tokens := newTokenServer(t, 3600)
	s, err := NewSender(&triggers.Trigger{Name: "t", Network: triggers.NetworkPolicy{Deny: denyLoopback()}, Webhook: triggers.Webhook{URL: "http://192.0.2.1/",
		Auth: &triggers.Auth{OAuth2: &triggers.OAuth2ClientCredentials{TokenURL: tokens.URL, ClientID: "c", ClientSecret: "s"}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Deliver(context.Background(), testEvent(t, 1, "a"))
	if err == nil || !strings.Contains(err.Error(), "blocked by the network guard") || tokens.requests.Load() != 0 {
		t.Errorf("token request to a denied address: %v (token requests %d)", err, tokens.requests.Load())
	}
}

// TestOAuth2TokenErrorQuotesOnlyErrorCodes: the token endpoint's "error"
// field is quoted only when it is an error code; free text (an endpoint
// echoing the request, client secret included) is left out, and the client
// secret is masked in any text the answer still yields.
func TestOAuth2TokenErrorQuotesOnlyErrorCodes(t *testing.T) {
	echo := func(r *http.Request) string {
		b, _ := io.ReadAll(r.Body)
		return string(b) + " " + r.Header.Get("Authorization")
	}
	tests := []struct {
		name   string
		secret string
		status int
		// errorField returns the answer's "error" field for the request.
		errorField func(r *http.Request) string
		want       string // %s: the token URL
	}{
		{"rfc 6749 code", "sup3rs3cret", 401, func(*http.Request) string { return "invalid_client" },
			"auth: token endpoint %s answered HTTP 401 Unauthorized (invalid_client)"},
		{"other short code", "sup3rs3cret", 400, func(*http.Request) string { return "slow_down" },
			"auth: token endpoint %s answered HTTP 400 Bad Request (slow_down)"},
		{"echo of the request", "sup3rs3cret", 401, func(r *http.Request) string { return "invalid_client: " + echo(r) },
			"auth: token endpoint %s answered HTTP 401 Unauthorized"},
		{"echo of the request only", "sup3rs3cret", 401, echo,
			"auth: token endpoint %s answered HTTP 401 Unauthorized"},
		{"upper case", "sup3rs3cret", 401, func(*http.Request) string { return "Invalid_Client" },
			"auth: token endpoint %s answered HTTP 401 Unauthorized"},
		{"over 40 characters", "sup3rs3cret", 401, func(*http.Request) string { return strings.Repeat("x", 41) },
			"auth: token endpoint %s answered HTTP 401 Unauthorized"},
		{"code-shaped secret", "lowercase_secret", 401, func(*http.Request) string { return "lowercase_secret" },
			"auth: token endpoint %s answered HTTP 401 Unauthorized (<secret>)"},
		{"error on a 200", "sup3rs3cret", 200, func(*http.Request) string { return "invalid_grant" },
			"auth: token endpoint %s answered HTTP 200 OK (invalid_grant)"},
	}
	ep := newAuthEndpoint(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				b, _ := json.Marshal(map[string]string{"error": tt.errorField(r), "error_description": echo(r)})
				_, _ = w.Write(b)
			}))
			t.Cleanup(tok.Close)
			s, err := NewSender(&triggers.Trigger{Name: "t", Retry: triggers.RetryPolicy{MaxAttempts: 1}, Webhook: triggers.Webhook{URL: ep.URL,
				Auth: &triggers.Auth{OAuth2: &triggers.OAuth2ClientCredentials{TokenURL: tok.URL, ClientID: "changehook", ClientSecret: triggers.Secret(tt.secret)}}}},
				WithClock(newFakeClock()))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Deliver(context.Background(), testEvent(t, 1, "a"))
			var ae *AttemptError
			if !errors.As(err, &ae) || ae.Reason != ReasonAuth {
				t.Fatalf("Deliver error %v, want an auth AttemptError", err)
			}
			if got, want := ae.Error(), fmt.Sprintf(tt.want, tok.URL); got != want {
				t.Errorf("error\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestOAuth2TokenErrorScrubsClientSecret: the client secret, in each form a
// token request carries it, is masked in the text of a failed token
// request that did not yield a status (x/oauth2's parse errors quote the
// answer), and the error still unwraps to its cause.
func TestOAuth2TokenErrorScrubsClientSecret(t *testing.T) {
	const secret = "s3cret/with+signs"
	basicRaw := base64.StdEncoding.EncodeToString([]byte("app:" + secret))
	basicForm := base64.StdEncoding.EncodeToString([]byte("app:s3cret%2Fwith%2Bsigns"))
	tests := []struct {
		name   string
		secret string
		cause  string
		want   string
	}{
		{"raw", secret, "oauth2: cannot parse json: near " + secret + " here",
			"auth: request a token from https://idp.example/token: oauth2: cannot parse json: near <secret> here"},
		{"form-encoded", secret, "oauth2: cannot parse response: client_secret=s3cret%2Fwith%2Bsigns&grant_type=client_credentials",
			"auth: request a token from https://idp.example/token: oauth2: cannot parse response: client_secret=<secret>&grant_type=client_credentials"},
		{"basic credentials", secret, "echo: Basic " + basicForm + " and Basic " + basicRaw,
			"auth: request a token from https://idp.example/token: echo: Basic <secret> and Basic <secret>"},
		{"nothing to scrub", secret, "oauth2: server response missing access_token",
			"auth: request a token from https://idp.example/token: oauth2: server response missing access_token"},
		{"secret too short to search for", "abc", "oauth2: cannot parse json: abc",
			"auth: request a token from https://idp.example/token: oauth2: cannot parse json: abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenSource(&triggers.OAuth2ClientCredentials{TokenURL: "https://idp.example/token", ClientID: "app", ClientSecret: triggers.Secret(tt.secret)},
				http.DefaultTransport, time.Second, triggers.RetryPolicy{}.WithDefaults())
			cause := errors.New(tt.cause)
			err := ts.tokenError(context.Background(), cause)
			if got := err.Error(); got != tt.want {
				t.Errorf("error\n got %q\nwant %q", got, tt.want)
			}
			if !errors.Is(err, cause) {
				t.Errorf("error %v does not unwrap to its cause", err)
			}
		})
	}
}

// TestOAuth2TokenErrorScrubsTokenURLSecrets: the token URL's own secrets
// (its query values, a path segment triggers.RedactURL hides, its userinfo
// and the Basic credentials net/http makes of it) are masked in the text
// of a failed token request, as the client secret is, in the forms a
// request line or header carries them, and the error still unwraps to its
// cause.
func TestOAuth2TokenErrorScrubsTokenURLSecrets(t *testing.T) {
	const (
		queryURL = "https://idp.example/oauth/token?api_key=k3y%2Fin%2Bthe-url"
		pathURL  = "https://idp.example/oauth/Xk39fjQm2Lp8aB7cD9eF/token"
		userURL  = "https://svc:pa55w0rd-x@idp.example/oauth/token"
	)
	userBasic := base64.StdEncoding.EncodeToString([]byte("svc:pa55w0rd-x"))
	tests := []struct {
		name     string
		tokenURL string
		cause    string
		want     string // %s: the redacted token URL
		secrets  []string
	}{
		{"query value as sent", queryURL, `malformed HTTP response "POST /oauth/token?api_key=k3y%2Fin%2Bthe-url HTTP/1.1"`,
			`auth: request a token from %s: malformed HTTP response "POST /oauth/token?api_key=<secret> HTTP/1.1"`, []string{"k3y%2Fin%2Bthe-url"}},
		{"query value decoded", queryURL, "echo: api_key is k3y/in+the-url",
			"auth: request a token from %s: echo: api_key is <secret>", []string{"k3y/in+the-url"}},
		{"hidden path segment", pathURL, `malformed HTTP response "POST /oauth/Xk39fjQm2Lp8aB7cD9eF/token HTTP/1.1"`,
			`auth: request a token from %s: malformed HTTP response "POST /oauth/<secret>/token HTTP/1.1"`, []string{"Xk39fjQm2Lp8aB7cD9eF"}},
		{"userinfo password", userURL, "echo: password pa55w0rd-x",
			"auth: request a token from %s: echo: password <secret>", []string{"pa55w0rd-x"}},
		{"userinfo as Basic credentials", userURL, "echo: Authorization: Basic " + userBasic,
			"auth: request a token from %s: echo: Authorization: Basic <secret>", []string{userBasic}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenSource(&triggers.OAuth2ClientCredentials{TokenURL: tt.tokenURL, ClientID: "app", ClientSecret: "sup3rs3cret"},
				http.DefaultTransport, time.Second, triggers.RetryPolicy{}.WithDefaults())
			cause := errors.New(tt.cause)
			err := ts.tokenError(context.Background(), cause)
			if got, want := err.Error(), fmt.Sprintf(tt.want, triggers.RedactURL(tt.tokenURL)); got != want {
				t.Errorf("error\n got %q\nwant %q", got, want)
			}
			for _, sec := range tt.secrets {
				if strings.Contains(err.Error(), sec) {
					t.Errorf("error quotes %q: %v", sec, err)
				}
			}
			if !errors.Is(err, cause) {
				t.Errorf("error %v does not unwrap to its cause", err)
			}
		})
	}
}

// TestOAuth2TokenEndpointEchoKeepsTokenURLSecrets: a token endpoint that
// answers with the request's target and Basic credentials as its status
// code (a malformed status line, which net/http quotes) gets none of the
// token URL's secrets into the attempt's error: not its query value, nor
// the userinfo net/http sends as Basic credentials when the client
// credentials go in the body (after the endpoint refused them in the
// header).
func TestOAuth2TokenEndpointEchoKeepsTokenURLSecrets(t *testing.T) {
	echo := rawEndpoint(t, func(c net.Conn) {
		r, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		if user, _, _ := r.BasicAuth(); user == "app" {
			// The client credentials in the header: refused, so that they
			// are sent in the body next.
			const body = `{"error":"invalid_client"}`
			fmt.Fprintf(c, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
			return
		}
		cred, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Basic ")
		fmt.Fprintf(c, "HTTP/1.1 %s,%s\r\n\r\n", r.RequestURI, cred)
	})
	userBasic := base64.StdEncoding.EncodeToString([]byte("svc:pa55w0rd-x"))
	tests := []struct {
		name     string
		tokenURL string
		secrets  []string
	}{
		{"query value", "http://" + echo + "/oauth/token?api_key=k3y-in-the-token-url", []string{"k3y-in-the-token-url"}},
		{"userinfo", "http://svc:pa55w0rd-x@" + echo + "/oauth/token", []string{"pa55w0rd-x", userBasic}},
	}
	ep := newAuthEndpoint(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSender(&triggers.Trigger{Name: "t", Retry: triggers.RetryPolicy{MaxAttempts: 1}, Webhook: triggers.Webhook{URL: ep.URL,
				Auth: &triggers.Auth{OAuth2: &triggers.OAuth2ClientCredentials{TokenURL: tt.tokenURL, ClientID: "app", ClientSecret: "sup3rs3cret"}}}},
				WithClock(newFakeClock()))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.Deliver(context.Background(), testEvent(t, 1, "a"))
			var ae *AttemptError
			if !errors.As(err, &ae) || ae.Reason != ReasonAuth || !strings.Contains(err.Error(), "malformed HTTP") {
				t.Fatalf("Deliver error %v, want an auth AttemptError quoting the malformed answer", err)
			}
			for _, sec := range tt.secrets {
				if strings.Contains(err.Error(), sec) {
					t.Errorf("error quotes %q: %v", sec, err)
				}
			}
		})
	}
}

// TestOAuth2TokenEndpointOutageBoundedByTimeout: a token endpoint that
// does not answer costs each of several concurrent attempts one webhook
// timeout, not one per attempt waiting before it: they share one token
// request, which is sent once (not again with the credentials in the body
// after the timeout), and each fails as a retryable auth timeout.
func TestOAuth2TokenEndpointOutageBoundedByTimeout(t *testing.T) {
	const conc, timeout = 4, 300 * time.Millisecond
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var requests atomic.Int64
	hang := rawEndpoint(t, func(c net.Conn) {
		requests.Add(1)
		<-release
	})
	ep := newAuthEndpoint(t)
	s := newTestSender(t, &triggers.Trigger{Name: "orders", Ordering: triggers.PerDocument, Concurrency: conc,
		Webhook: triggers.Webhook{URL: ep.URL, Timeout: timeout,
			Auth: &triggers.Auth{OAuth2: &triggers.OAuth2ClientCredentials{TokenURL: "http://" + hang + "/token", ClientID: "app", ClientSecret: "sup3rs3cret"}}},
		Retry: triggers.RetryPolicy{MaxAttempts: 1}})
	var wg sync.WaitGroup
	took := make([]time.Duration, conc)
	errs := make([]error, conc)
	for i := range conc {
		wg.Go(func() {
			start := time.Now()
			_, errs[i] = s.Deliver(context.Background(), testEvent(t, i+1, fmt.Sprint("k", i)))
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if took[i] > 2*timeout {
			t.Errorf("attempt %d took %v with webhook.timeout %v", i, took[i], timeout)
		}
		var ae *AttemptError
		if !errors.As(err, &ae) || ae.Reason != ReasonAuth || !ae.Retryable || !isTimeout(err) {
			t.Errorf("attempt %d: %v, want a retryable auth timeout", i, err)
		}
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d token requests for %d concurrent attempts, want 1", n, conc)
	}
	if len(ep.Seen()) != 0 {
		t.Errorf("the endpoint got %d requests without a token", len(ep.Seen()))
	}
}

// TestOAuth2FailedTokenRequestNotHeld: a failed token request is the
// answer of the attempts that waited for it, not of the ones asking after
// it: a delivery's retry, however soon its backoff comes (the fake clock's
// sleeps take no time), asks the token endpoint again, so each failure of
// the token endpoint costs the delivery one attempt and no more.
func TestOAuth2FailedTokenRequestNotHeld(t *testing.T) {
	tests := []struct {
		name        string
		failures    int64 // token requests answered 503 before tokens are issued
		maxAttempts int
		wantErr     bool
		// wantRequests is the number of token requests: one per attempt.
		wantRequests int64
	}{
		{"one failure, two attempts", 1, 2, false, 2},
		{"two failures, three attempts", 2, 3, false, 3},
		{"two failures, two attempts", 2, 2, true, 2},
		{"no failure", 0, 2, false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int64
			tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := requests.Add(1)
				w.Header().Set("Content-Type", "application/json")
				if n <= tt.failures {
					w.WriteHeader(http.StatusServiceUnavailable)
					fmt.Fprint(w, `{"error":"temporarily_unavailable"}`)
					return
				}
				fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":3600}`, n)
			}))
			t.Cleanup(tokens.Close)
			ep := newAuthEndpoint(t)
			s := newTestSender(t, &triggers.Trigger{Name: "orders",
				Webhook: triggers.Webhook{URL: ep.URL,
					Auth: &triggers.Auth{OAuth2: &triggers.OAuth2ClientCredentials{TokenURL: tokens.URL, ClientID: "app", ClientSecret: "sup3rs3cret"}}},
				Retry: triggers.RetryPolicy{MaxAttempts: tt.maxAttempts}.WithDefaults()}, WithClock(newFakeClock()))
			res, err := s.Deliver(context.Background(), testEvent(t, 1, "a"))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Deliver after %d attempts: %v, want error %v", res.Attempts, err, tt.wantErr)
			}
			if n := requests.Load(); n != tt.wantRequests {
				t.Errorf("%d token requests in %d attempts, want %d", n, res.Attempts, tt.wantRequests)
			}
			if want := int(tt.wantRequests); res.Attempts != want {
				t.Errorf("%d attempts, want %d", res.Attempts, want)
			}
		})
	}
}

// TestOAuth2TokenRequestsPerFetch: how many requests a token costs. The
// client credentials go in the Authorization header first; only an
// endpoint refusing them there with a 4xx gets them in the body next, and
// the way that got a token is used from then on. A server error or no
// answer in time is not asked twice.
func TestOAuth2TokenRequestsPerFetch(t *testing.T) {
	tests := []struct {
		name string
		// answer is the endpoint's status for credentials in the header
		// or the body (0: a token; -1: no answer).
		header, body int
		// want lists the requests of the first token and of one requested
		// after the first was dropped: "h" in the header, "b" in the body.
		want string
	}{
		{"header accepted", 0, 0, "h h"},
		{"body only", http.StatusUnauthorized, 0, "hb b"},
		{"body only, 400", http.StatusBadRequest, 0, "hb b"},
		{"refused both ways", http.StatusUnauthorized, http.StatusUnauthorized, "hb"},
		{"server error", http.StatusServiceUnavailable, 0, "h"},
		{"no answer", -1, 0, "h"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen strings.Builder
			n := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm()
				how, status := "b", tt.body
				if _, _, ok := r.BasicAuth(); ok {
					how, status = "h", tt.header
				}
				mu.Lock()
				seen.WriteString(how)
				n++
				tok := n
				mu.Unlock()
				w.Header().Set("Content-Type", "application/json")
				switch status {
				case -1:
					<-r.Context().Done()
				case 0:
					fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"Bearer","expires_in":3600}`, tok)
				default:
					w.WriteHeader(status)
					fmt.Fprint(w, `{"error":"invalid_client"}`)
				}
			}))
			t.Cleanup(srv.Close)
			ts := newTokenSource(&triggers.OAuth2ClientCredentials{TokenURL: srv.URL, ClientID: "app", ClientSecret: "sup3rs3cret"},
				http.DefaultTransport, 200*time.Millisecond, triggers.RetryPolicy{}.WithDefaults())
			tok, err := ts.token(context.Background())
			if err == nil {
				mu.Lock()
				seen.WriteString(" ")
				mu.Unlock()
				ts.invalidate(tok)
				if _, err := ts.token(context.Background()); err != nil {
					t.Fatalf("second token: %v", err)
				}
			}
			mu.Lock()
			got := seen.String()
			mu.Unlock()
			if got != tt.want {
				t.Errorf("requests %q, want %q (error %v)", got, tt.want, err)
			}
		})
	}
}

// TestOAuth2TokenRequestCanceledWithItsAttempts: a token request whose
// every waiting attempt was canceled is canceled too, and not remembered
// as a failure: the next attempt makes a request of its own at once.
func TestOAuth2TokenRequestCanceledWithItsAttempts(t *testing.T) {
	arrived, gone := make(chan struct{}, 2), make(chan struct{}, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm() // the body read, the server notices the client leaving
		arrived <- struct{}{}
		<-r.Context().Done()
		gone <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	ts := newTokenSource(&triggers.OAuth2ClientCredentials{TokenURL: srv.URL, ClientID: "app", ClientSecret: "sup3rs3cret"},
		http.DefaultTransport, time.Minute, triggers.RetryPolicy{}.WithDefaults())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := ts.token(ctx)
			errc <- err
		}()
	}
	<-arrived
	cancel()
	for range 2 {
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("canceled attempt: %v, want context.Canceled", err)
		}
	}
	<-gone // the request was canceled

	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() {
		_, err := ts.token(ctx2)
		errc <- err
	}()
	<-arrived // a new request, not the held failure of the canceled one
	cancel2()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("second attempt: %v, want context.Canceled", err)
	}
	<-gone
	if n := ts.fetches.Load(); n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}
}

// TestOAuth2TokenRequestOutlivesItsStarter: the shared token request is
// not cut off when the attempt that started it stops waiting, at its
// deadline or on its cancellation, while another attempt still waits: the
// request runs on, within its own webhook timeout, and its token is the
// other attempt's answer and the next attempts' too.
func TestOAuth2TokenRequestOutlivesItsStarter(t *testing.T) {
	tests := []struct {
		name string
		// starter returns the starting attempt's context and how it ends.
		starter func() (context.Context, context.CancelFunc, error)
		// end: the test cancels the starting attempt (false: its deadline ends it).
		end bool
	}{
		{"starter's deadline passes", func() (context.Context, context.CancelFunc, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			return ctx, cancel, context.DeadlineExceeded
		}, false},
		{"starter canceled", func() (context.Context, context.CancelFunc, error) {
			ctx, cancel := context.WithCancel(context.Background())
			return ctx, cancel, context.Canceled
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arrived, release := make(chan struct{}, 1), make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_ = r.ParseForm() // the body read, the server notices the client leaving
				arrived <- struct{}{}
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"access_token":"tok","token_type":"Bearer","expires_in":3600}`)
			}))
			var once sync.Once
			rel := func() { once.Do(func() { close(release) }) }
			t.Cleanup(srv.Close)
			t.Cleanup(rel) // before srv.Close
			ts := newTokenSource(&triggers.OAuth2ClientCredentials{TokenURL: srv.URL, ClientID: "app", ClientSecret: "sup3rs3cret"},
				http.DefaultTransport, 5*time.Second, triggers.RetryPolicy{}.WithDefaults())

			ctx, cancel, wantErr := tt.starter()
			defer cancel()
			starterErr, otherErr := make(chan error, 1), make(chan error, 1)
			go func() {
				_, err := ts.token(ctx)
				starterErr <- err
			}()
			<-arrived
			go func() {
				tok, err := ts.token(context.Background())
				if err == nil && tok != "tok" {
					err = fmt.Errorf("token %q, want tok", tok)
				}
				otherErr <- err
			}()
			for { // until the second attempt waits for the request too
				ts.mu.Lock()
				n := ts.inflight.waiters
				ts.mu.Unlock()
				if n == 2 {
					break
				}
				runtime.Gosched()
			}
			if tt.end {
				cancel()
			}
			if err := <-starterErr; !errors.Is(err, wantErr) {
				t.Errorf("starting attempt: %v, want %v", err, wantErr)
			}
			rel() // the endpoint answers once the starting attempt is gone
			if err := <-otherErr; err != nil {
				t.Errorf("the attempt still waiting: %v, want the token", err)
			}
			if _, err := ts.token(context.Background()); err != nil {
				t.Errorf("the next attempt: %v, want the cached token", err)
			}
			if n := ts.fetches.Load(); n != 1 {
				t.Errorf("%d token requests, want 1", n)
			}
		})
	}
}

// TestOAuth2TokenWaitEndsWithItsAttempt: an attempt whose webhook timeout
// ends while the token request it waits for is still under way fails
// with a retryable auth timeout saying it waited for a token, and leaves
// the request as it is for the attempts still waiting (neither failed nor
// canceled); the last attempt to leave cancels it.
func TestOAuth2TokenWaitEndsWithItsAttempt(t *testing.T) {
	tests := []struct {
		name       string
		others     int // attempts still waiting for the request
		wantCancel bool
	}{
		{"others wait", 1, false},
		{"the last one leaves", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenSource(&triggers.OAuth2ClientCredentials{TokenURL: "http://127.0.0.1:1/token", ClientID: "app", ClientSecret: "sup3rs3cret"},
				http.DefaultTransport, 50*time.Millisecond, triggers.RetryPolicy{}.WithDefaults())
			canceled := make(chan struct{})
			// A request under way that never answers, as another attempt
			// started it.
			f := &tokenFetch{done: make(chan struct{}), cancel: func() { close(canceled) }, waiters: tt.others}
			ts.inflight = f
			_, err := ts.token(context.Background())
			var ae *AttemptError
			if !errors.As(err, &ae) || ae.Reason != ReasonAuth || !ae.Retryable || !isTimeout(err) ||
				!strings.Contains(err.Error(), "waited for a token from http://127.0.0.1:1/token, which did not come within this attempt's webhook timeout (50ms)") {
				t.Errorf("token: %v, want a retryable auth timeout saying it waited for a token", err)
			}
			ts.mu.Lock()
			inflight, waiters := ts.inflight, f.waiters
			ts.mu.Unlock()
			select {
			case <-canceled:
				if !tt.wantCancel {
					t.Error("the request was canceled while another attempt waits for it")
				}
				if inflight != nil {
					t.Error("a canceled request is still the one in flight")
				}
			default:
				if tt.wantCancel {
					t.Error("the request runs on with no attempt waiting for it")
				}
				if inflight != f || f.err != nil {
					t.Errorf("the request others wait for: in flight %v, error %v; want it in flight, not failed", inflight == f, f.err)
				}
			}
			if waiters != tt.others {
				t.Errorf("%d attempts wait, want %d", waiters, tt.others)
			}
		})
	}
}

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files under dir.
type testPKI struct {
	ca                    *x509.Certificate
	caFile                string
	serverCert            tls.Certificate
	clientCert, clientKey string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &testPKI{ca: ca, caFile: filepath.Join(dir, "ca.pem")}
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ip bool) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	sDER, sKey := issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, true)
	p.serverCert = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	cDER, cKey := issue(3, "changehook", x509.ExtKeyUsageClientAuth, false)
	p.clientCert, p.clientKey = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	writePEM(t, p.clientCert, "CERTIFICATE", cDER)
	kDER, _ := x509.MarshalECPrivateKey(cKey)
	writePEM(t, p.clientKey, "EC PRIVATE KEY", kDER)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mtlsServer is an httptest TLS server that requires a client certificate
// signed by p's CA and records the client's common name.
func (p *testPKI) mtlsServer(t *testing.T, maxVersion uint16) (*httptest.Server, chan string) {
	cns := make(chan string, 8)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		cns <- r.TLS.PeerCertificates[0].Subject.CommonName
	}))
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MaxVersion: maxVersion}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, cns
}

func TestMutualTLS(t *testing.T) {
	p := newTestPKI(t)
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			srv, cns := p.mtlsServer(t, version)
			send := func(tl *triggers.TLS, retryOn triggers.StatusRules) (Result, error) {
				t.Helper()
				if err := tl.LoadFiles(); err != nil {
					t.Fatal(err)
				}
				s, err := NewSender(&triggers.Trigger{Name: "t", Retry: triggers.RetryPolicy{MaxAttempts: 1, RetryOn: retryOn},
					Webhook: triggers.Webhook{URL: srv.URL, TLS: tl}})
				if err != nil {
					t.Fatal(err)
				}
				return s.Deliver(context.Background(), testEvent(t, 1, "a"))
			}
			// With the client certificate: delivered, the server saw it.
			if _, err := send(&triggers.TLS{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey}, nil); err != nil {
				t.Fatalf("with client certificate: %v", err)
			}
			if cn := <-cns; cn != "changehook" {
				t.Errorf("server saw client %q", cn)
			}
			// Without: a tls failure that names the client certificate,
			// retried by the default rules (connection), permanent without.
			for _, retryOn := range []triggers.StatusRules{nil, {"5xx"}} {
				res, err := send(&triggers.TLS{CAFile: p.caFile}, retryOn)
				var ae *AttemptError
				if err == nil || !errors.As(err, &ae) || ae.Reason != ReasonTLS || res.Reason != ReasonTLS || ae.Retryable != (retryOn == nil) {
					t.Fatalf("without client certificate (retry_on %v): res %+v err %v", retryOn, res, err)
				}
				if !strings.Contains(err.Error(), "check webhook.tls.cert_file and key_file") {
					t.Errorf("message: %v", err)
				}
			}
			// Without the CA: the server is not trusted.
			res, err := send(&triggers.TLS{CertFile: p.clientCert, KeyFile: p.clientKey}, nil)
			if err == nil || res.Reason != ReasonTLS || !strings.Contains(err.Error(), "the server's certificate is not trusted; check webhook.tls.ca_file") {
				t.Errorf("without the CA: res %+v err %v", res, err)
			}
		})
	}
	// min_version 1.3 against a TLS 1.2-only server fails the handshake.
	srv, _ := p.mtlsServer(t, tls.VersionTLS12)
	tl := &triggers.TLS{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey, MinVersion: triggers.TLSVersion13}
	if err := tl.LoadFiles(); err != nil {
		t.Fatal(err)
	}
	s, err := NewSender(&triggers.Trigger{Name: "t", Retry: triggers.RetryPolicy{MaxAttempts: 1}, Webhook: triggers.Webhook{URL: srv.URL, TLS: tl}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Deliver(context.Background(), testEvent(t, 1, "a"))
	if err == nil || res.Reason != ReasonTLS {
		t.Errorf("min_version 1.3 against 1.2: res %+v err %v", res, err)
	}
}

func TestTLSKeepsNetworkGuard(t *testing.T) {
	p := newTestPKI(t)
	srv, _ := p.mtlsServer(t, 0)
	tl := &triggers.TLS{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey}
	if err := tl.LoadFiles(); err != nil {
		t.Fatal(err)
	}
	s, err := NewSender(&triggers.Trigger{Name: "t", Network: triggers.NetworkPolicy{Deny: denyLoopback()}, Webhook: triggers.Webhook{URL: srv.URL, TLS: tl}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Deliver(context.Background(), testEvent(t, 1, "a"))
	if err == nil || res.Reason != ReasonBlocked {
		t.Errorf("TLS webhook on a denied address: res %+v err %v", res, err)
	}
}

// denyLoopback is a network.deny of every loopback address.
func denyLoopback() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// TestTransportWrapperKeepsGuardAndTLS: a wrapped transport (the runner's
// lease gate) still dials through the network guard and uses webhook.tls.
func TestTransportWrapperKeepsGuardAndTLS(t *testing.T) {
	p := newTestPKI(t)
	srv, cns := p.mtlsServer(t, 0)
	tl := &triggers.TLS{CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey}
	if err := tl.LoadFiles(); err != nil {
		t.Fatal(err)
	}
	var wrapped atomic.Int64
	wrap := WithTransportWrapper(func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) { wrapped.Add(1); return next.RoundTrip(r) })
	})
	s, err := NewSender(&triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: srv.URL, TLS: tl}}, wrap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(context.Background(), testEvent(t, 1, "a")); err != nil {
		t.Fatalf("wrapped mTLS delivery: %v", err)
	}
	if cn := <-cns; cn != "changehook" || wrapped.Load() != 1 {
		t.Errorf("client %q, wrapper calls %d", cn, wrapped.Load())
	}
	s, err = NewSender(&triggers.Trigger{Name: "t", Network: triggers.NetworkPolicy{Deny: denyLoopback()}, Webhook: triggers.Webhook{URL: srv.URL, TLS: tl}}, wrap)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := s.Deliver(context.Background(), testEvent(t, 1, "a")); err == nil || res.Reason != ReasonBlocked {
		t.Errorf("wrapped transport to a denied address: res %+v err %v", res, err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestConnectionsBoundedByConcurrency: concurrent deliveries of a trigger
// open at most Concurrency connections, reused for every event.
func TestConnectionsBoundedByConcurrency(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	const conc, per = 4, 100
	s, err := NewSender(&triggers.Trigger{Name: "t", Ordering: triggers.None, Concurrency: conc, Webhook: triggers.Webhook{URL: srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for w := range conc {
		wg.Go(func() {
			for i := range per {
				if _, err := s.Deliver(context.Background(), testEvent(t, w*per+i, "a")); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := conns.Load(); n < 1 || n > conc {
		t.Errorf("%d deliveries, %d in flight, opened %d connections; want at most %d", conc*per, conc, n, conc)
	}
}
