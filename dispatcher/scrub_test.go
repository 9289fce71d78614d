package dispatcher

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

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
		// decodeURIComponent and Python's unquote decode %XX but keep '+'.
		{name: "query value %-decoded keeping +", path: "/h?key=q+s/e=cr%2Fet9Q",
			echo: func(r *http.Request) string {
				v, _ := url.PathUnescape(strings.TrimPrefix(r.URL.RawQuery, "key="))
				return "key=" + v
			}, want: "key=<secret>"},
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
		// Masked before the body is cut: a secret the cut splits is found
		// whole however little of it comes before the cut, and a start of
		// one the bytes after the cut show is no secret stays.
		{name: "secret cut by truncation, three bytes before the cut", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Api-Key": "h3adervalue"}},
			echo: func(r *http.Request) string { return long + "xxx" + r.Header.Get("X-Api-Key") + " and more" },
			want: long + "xxx<secret>"},
		{name: "secret's start at the cut, not the secret", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Api-Key": "h3adervalue"}},
			echo: func(*http.Request) string { return long + "h3ader-is-not-it, the rest of the answer" },
			want: long + "h3ader"},
		{name: "secret cut by truncation, the answer ends in it", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Api-Key": "h3adervalue"}},
			echo: func(r *http.Request) string { return long + r.Header.Get("X-Api-Key")[:8] },
			want: long + "<secret>"},
		{name: "query value cut by truncation", path: "/h?token=qu3ry%2Fv4lue",
			echo: func(r *http.Request) string { return long[4:] + r.URL.RawQuery + " was refused" },
			want: long[4:] + "token=<secret>"},
		{name: "no secret", echo: func(*http.Request) string { return "bad request" }, want: "bad request"},
		// A configured "<scheme> <credentials>" header value, echoed
		// without its scheme.
		{name: "header bearer credentials alone", status: http.StatusUnauthorized,
			webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"Authorization": "Bearer HDRTOKEN_abc123"}},
			echo: func(r *http.Request) string {
				return `{"error":"unknown token ` + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + `"}`
			},
			want: `{"error":"unknown token <secret>"}`},
		{name: "header basic credentials decoded", status: http.StatusUnauthorized,
			webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"Authorization": triggers.Secret("Basic " + basicCredentials("carol", "CAROLPW_77"))}},
			echo: func(r *http.Request) string {
				u, p, _ := r.BasicAuth()
				return authz(r) + " user=" + u + " pass=" + p + " b64=" + strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
			},
			want: "authorization=<secret> user=carol pass=<secret> b64=<secret>"},
		{name: "header basic token as user name", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"Authorization": triggers.Secret("Basic " + basicCredentials("sk_tok_91xq", ""))}},
			echo: basic, want: "basic=<secret>:"},
		{name: "header basic, lower-case scheme", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"Authorization": triggers.Secret("basic " + basicCredentials("dave", "DAVEPW_8"))}},
			echo: basic, want: "basic=dave:<secret>"},
		{name: "other header, common scheme", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Auth": "Token tok3n-xauth"}},
			echo: func(r *http.Request) string {
				return "bad token " + strings.TrimPrefix(r.Header.Get("X-Auth"), "Token ")
			},
			want: "bad token <secret>"},
		{name: "other header, token-shaped credentials", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Upstream": "Custom Xk39fjQm2Lp8Zr7Tq1Vw"}},
			echo: func(r *http.Request) string {
				return "bad " + strings.TrimPrefix(r.Header.Get("X-Upstream"), "Custom ")
			},
			want: "bad <secret>"},
		// Two words that are no credentials: the value is masked, its
		// second word elsewhere is not.
		{name: "other header, words", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Note": "Order created"}},
			echo: func(r *http.Request) string { return "note=" + r.Header.Get("X-Note") + "; created" },
			want: "note=<secret>; created"},
		// A secret quoted as other JSON encoders escape it.
		{name: "header value json-escaped by PHP", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Api-Key": "Ab/Cd+Ef/123456"}},
			echo: func(r *http.Request) string {
				return `{"bad_key":"` + strings.ReplaceAll(r.Header.Get("X-Api-Key"), "/", `\/`) + `"}`
			},
			want: `{"bad_key":"<secret>"}`},
		{name: "header value json-escaped by .NET", webhook: triggers.Webhook{Headers: map[string]triggers.Secret{"X-Api-Key": "Ab/Cd+Ef<'&>1"}},
			echo: func(r *http.Request) string {
				return `{"bad_key":"` + strings.NewReplacer("+", `\u002B`, "<", `\u003C`, ">", `\u003E`, "'", `\u0027`, "&", `\u0026`).Replace(r.Header.Get("X-Api-Key")) + `"}`
			},
			want: `{"bad_key":"<secret>"}`},
		// webhook.secret_path masks the whole path wherever it appears,
		// and its segments a body may quote alone, but not the names
		// among them in every word of the body.
		{name: "secret path, names in it", path: "/hooks/orders", webhook: triggers.Webhook{SecretPath: true},
			echo: func(r *http.Request) string {
				return uri(r) + " X-Changehook-Trigger: sp_" + r.Header.Get("X-Changehook-Trigger") + " (hooks)"
			},
			want: "POST /<secret> X-Changehook-Trigger: sp_orders (hooks)"},
		{name: "secret path, one segment", path: "/orders", webhook: triggers.Webhook{SecretPath: true},
			echo: func(r *http.Request) string { return uri(r) + " sp_" + r.Header.Get("X-Changehook-Trigger") },
			want: "POST /<secret> sp_<secret>"},
		{name: "secret path, identifiers in it", path: "/hooks/orders/a1b2c3d4/T0ABCDEF", webhook: triggers.Webhook{SecretPath: true},
			echo: func(*http.Request) string { return "orders of a1b2c3d4: no T0ABCDEF" },
			want: "orders of <secret>: no <secret>"},
		{name: "known service path, names in it", path: "/webhook/orders/a1b2c3d4",
			echo: func(r *http.Request) string { return uri(r) + " orders a1b2c3d4" },
			want: "POST /webhook/<secret> orders <secret>"},
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

// TestScrubCut: the secrets are found in the whole text before it is cut
// at n, as scrubForms finds them: one the cut splits is masked whole, a
// start of one that the bytes after the cut show to be something else is
// kept, and the start of one with which the text ends is masked.
func TestScrubCut(t *testing.T) {
	forms := []string{"abcdsecret1", "secret"}
	tests := []struct {
		name string
		s    string
		n    int
		want string
	}{
		{"no secret", "0123456789", 4, "0123"},
		{"secret before the cut", "secret 6789", 8, "<secret> 6"},
		{"secret split by the cut", "01secret89", 4, "01<secret>"},
		{"one byte before the cut", "012secret", 4, "012<secret>"},
		{"secret right after the cut", "0123secret", 4, "0123"},
		{"longest first across the cut", "0abcdsecret1", 4, "0<secret>"},
		{"a start that is no secret", "01secrexxxx", 4, "01se"},
		{"the text ends in a start", "01secre", 4, "01<secret>"},
		{"a start shorter than minScrubLen", "012sec", 4, "012s"},
		{"masks on both sides of a mask", "secret secret", 8, "<secret> <secret>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scrubCut(tt.s, tt.n, forms); got != tt.want {
				t.Errorf("scrubCut(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
			}
		})
	}
}

// TestScrubCutDifferential: on random texts over a small alphabet (so
// that the forms occur often, overlap and contain one another), scrubCut
// masks what scrubForms masks, and at every cut position exactly what a
// search of every form from each position after a mask masks (the plain
// definition of the leftmost match, longest first, that scrubCut
// computes without searching again).
func TestScrubCutDifferential(t *testing.T) {
	// naive is scrubCut as defined: at each step the leftmost occurrence
	// of any form from i, the first of forms (the longest) at a tie.
	naive := func(s string, n int, forms []string) string {
		var b strings.Builder
		i := 0
		for i < n {
			at, f := len(s), ""
			for _, g := range forms {
				if j := strings.Index(s[i:], g); j >= 0 && i+j < at {
					at, f = i+j, g
				}
			}
			if at >= n {
				break
			}
			b.WriteString(s[i:at] + triggers.RedactedMask)
			i = at + len(f)
		}
		if i < n {
			if at := tailStart(s[i:], forms); at >= 0 && i+at < n {
				b.WriteString(s[i:i+at] + triggers.RedactedMask)
			} else {
				b.WriteString(s[i:n])
			}
		}
		return b.String()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(alphabet string, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	for _, alphabet := range []string{"ab", "abc", "abcd"} {
		for range 300 {
			var forms []string
			for range 1 + rng.IntN(5) {
				if f := word(alphabet, minScrubLen+rng.IntN(5)); !slices.Contains(forms, f) {
					forms = append(forms, f)
				}
			}
			slices.SortFunc(forms, longestFirst)
			var text strings.Builder
			for range rng.IntN(12) {
				if rng.IntN(2) == 0 {
					text.WriteString(forms[rng.IntN(len(forms))])
				} else {
					text.WriteString(word(alphabet, rng.IntN(6)))
				}
			}
			s := text.String()
			if got, want := scrubCut(s+"#", len(s)+1, forms), scrubForms(s, forms)+"#"; got != want {
				t.Fatalf("forms %q: scrubCut(%q, all) = %q, scrubForms = %q", forms, s+"#", got, want)
			}
			for n := 0; n <= len(s); n++ {
				if got, want := scrubCut(s, n, forms), naive(s, n, forms); got != want {
					t.Fatalf("forms %q: scrubCut(%q, %d) = %q, want %q", forms, s, n, got, want)
				}
			}
		}
	}
}

// TestScrubCutLinear: masking a cut body reads each byte of it a bounded
// number of times per form, however many secrets it echoes: a body
// echoing a secret all along is read no more than one without any (a form
// is searched for again only once the scan has passed its occurrence, not
// from every mask to the end of the text).
func TestScrubCutLinear(t *testing.T) {
	forms := sixteenHeaderSecretForms(t)
	longest := len(forms[0])
	tests := []struct {
		name string
		body string
	}{
		{"no secret", strings.Repeat("<p>Bad request: not what this endpoint expects.</p>\n", 1+2*respBodyLimit/52)},
		{"one secret at the end", strings.Repeat("x", respBodyLimit-10) + "Sk07Qm2Lp8Zr7Tq1VwXk39"},
		{"echoing one secret", strings.Repeat("Sk07Qm2Lp8Zr7Tq1VwXk39 ", 1+2*respBodyLimit/24)},
		{"echoing every secret", strings.Repeat("Sk00Qm2Lp8Zr7Tq1VwXk39 Sk01Qm2Lp8Zr7Tq1VwXk39 Sk02Qm2Lp8Zr7Tq1VwXk39 "+
			"Sk03Qm2Lp8Zr7Tq1VwXk39 Sk04Qm2Lp8Zr7Tq1VwXk39 Sk05Qm2Lp8Zr7Tq1VwXk39 Sk06Qm2Lp8Zr7Tq1VwXk39 "+
			"Sk07Qm2Lp8Zr7Tq1VwXk39 Sk08Qm2Lp8Zr7Tq1VwXk39 Sk09Qm2Lp8Zr7Tq1VwXk39 Sk10Qm2Lp8Zr7Tq1VwXk39 "+
			"Sk11Qm2Lp8Zr7Tq1VwXk39 Sk12Qm2Lp8Zr7Tq1VwXk39 Sk13Qm2Lp8Zr7Tq1VwXk39 Sk14Qm2Lp8Zr7Tq1VwXk39 "+
			"Sk15Qm2Lp8Zr7Tq1VwXk39 ", 1+respBodyLimit/(16*23))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := 0
			index := func(s, substr string) int {
				j := strings.Index(s, substr)
				if j < 0 {
					read += len(s)
				} else {
					read += j + len(substr)
				}
				return j
			}
			got := scrubCutIndex(tt.body, respBodyLimit, forms, index)
			if want := scrubCut(tt.body, respBodyLimit, forms); got != want {
				t.Fatalf("scrubCutIndex = %q, scrubCut = %q", got, want)
			}
			// Each form's searches read the text once, and again at most
			// the length of the form from each search on.
			masks := strings.Count(got, triggers.RedactedMask)
			if bound := len(forms) * (len(tt.body) + (masks+1)*longest); read > bound {
				t.Errorf("%d forms, %d masks: %d bytes read in a %d-byte text, want at most %d", len(forms), masks, read, len(tt.body), bound)
			}
		})
	}
}

// TestResponseBodyProxyCredentialsMasked: the credentials of the proxy the
// requests go through (HTTPS_PROXY=http://user:password@host:port), which
// net/http sends to it as Proxy-Authorization, are masked in a kept body
// that echoes them (a proxy's error page, an endpoint behind a
// transparent one), in every form: the Basic value, the password as it is
// and as written in the URL.
func TestResponseBodyProxyCredentialsMasked(t *testing.T) {
	echo := func(_ int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
		v := r.Header.Get("Proxy-Authorization")
		dec, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(v, "Basic "))
		fmt.Fprintf(w, "Proxy-Authorization: %s (%s)", v, dec)
	}
	tests := []struct {
		name, userinfo string
		extra          func(*http.Request) string // more echoed text
		want           string
	}{
		{name: "user and password", userinfo: "puser:PROXYPW_4",
			want: "Proxy-Authorization: Basic <secret> (puser:<secret>)"},
		{name: "escaped password", userinfo: "puser:PROXY%2FPW%40x",
			extra: func(*http.Request) string { return " raw=PROXY%2FPW%40x" },
			want:  "Proxy-Authorization: Basic <secret> (puser:<secret>) raw=<secret>"},
		{name: "token as the user name", userinfo: "ptoken_9f3k2",
			want: "Proxy-Authorization: Basic <secret> (<secret>:)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				echo(n, w, r)
				if tt.extra != nil {
					fmt.Fprint(w, tt.extra(r))
				}
			})
			proxy := withProxy(t, "http://"+tt.userinfo+"@"+strings.TrimPrefix(rc.srv.URL, "http://"))
			s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: "http://hooks.example.test/h"}, Retry: triggers.RetryPolicy{MaxAttempts: 1}},
				WithClock(newFakeClock()), proxy)
			res, _ := s.Deliver(context.Background(), testEvent(t, 1, "k"))
			if res.Status != http.StatusProxyAuthRequired {
				t.Fatalf("status %d, want 407 (the proxy's)", res.Status)
			}
			if res.Body != tt.want {
				t.Errorf("Result.Body\n got %q\nwant %q", res.Body, tt.want)
			}
		})
	}
}

// TestResponseBodyEnvProxyCredentialsMasked: the same with the proxy
// from HTTP_PROXY, which net/http reads once per process: the test runs
// itself again with the variable set.
func TestResponseBodyEnvProxyCredentialsMasked(t *testing.T) {
	if os.Getenv("CHANGEHOOK_TEST_ENV_PROXY") == "1" {
		s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: "http://hooks.example.test/h"}, Retry: triggers.RetryPolicy{MaxAttempts: 1}},
			WithClock(newFakeClock()))
		res, _ := s.Deliver(context.Background(), testEvent(t, 1, "k"))
		if want := "Proxy-Authorization: Basic <secret> (puser:<secret>)"; res.Status != http.StatusProxyAuthRequired || res.Body != want {
			t.Fatalf("status %d, body %q; want 407 and %q", res.Status, res.Body, want)
		}
		return
	}
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusProxyAuthRequired)
		v := r.Header.Get("Proxy-Authorization")
		dec, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(v, "Basic "))
		fmt.Fprintf(w, "Proxy-Authorization: %s (%s)", v, dec)
	})
	cmd := exec.Command(os.Args[0], "-test.run=^TestResponseBodyEnvProxyCredentialsMasked$", "-test.count=1")
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUEST_METHOD":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "CHANGEHOOK_TEST_ENV_PROXY=1", "HTTP_PROXY=http://puser:PROXYPW_4@"+strings.TrimPrefix(rc.srv.URL, "http://"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("with HTTP_PROXY set: %v\n%s", err, out)
	}
	if n := len(rc.deliveries()); n != 1 {
		t.Fatalf("the proxy saw %d requests, want 1", n)
	}
}

// TestAttemptErrorHeaderCredentialsMasked: the credentials of a
// configured "<scheme> <credentials>" header, quoted alone in what
// becomes the attempt's error (a redirect's Location here: last_error,
// logs, dead letters), are masked as in a kept body.
func TestAttemptErrorHeaderCredentialsMasked(t *testing.T) {
	tests := []struct {
		name, header, value, secret string
		quote                       func(v string) string // the part of the header value the Location quotes
	}{
		{"bearer", "Authorization", "Bearer HDRTOKEN_abc123", "HDRTOKEN_abc123", func(v string) string { return strings.TrimPrefix(v, "Bearer ") }},
		{"other header", "X-Auth", "Token tok3n-xauth", "tok3n-xauth", func(v string) string { return strings.TrimPrefix(v, "Token ") }},
		{"basic password", "Authorization", "Basic " + basicCredentials("carol", "CAROLPW_77"), "CAROLPW_77", func(v string) string {
			dec, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(v, "Basic "))
			_, pw, _ := strings.Cut(string(dec), ":")
			return pw
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "/login/"+tt.quote(r.Header.Get(tt.header))+"/next")
				w.WriteHeader(http.StatusFound)
			})
			s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL + "/h",
				Headers: map[string]triggers.Secret{tt.header: triggers.Secret(tt.value)}}, Retry: triggers.RetryPolicy{MaxAttempts: 1}},
				WithClock(newFakeClock()))
			_, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
			if err == nil {
				t.Fatal("delivered; want a failure")
			}
			if strings.Contains(err.Error(), tt.secret) || !strings.Contains(err.Error(), "/login/"+triggers.RedactedMask+"/next") {
				t.Errorf("error = %v, want the Location's %q masked", err, tt.secret)
			}
		})
	}
}

// TestRedactedURLPartsNeverQuoted: whatever the shape of the webhook URL,
// every part of its path and query that the URL as shown (RedactURL, or
// webhook.secret_path) hides is masked where an endpoint quotes the
// request: in a kept body echoing the request's URI, decoded path and
// query, and in the error quoting an echoed request line. The parts hidden
// are taken from the redacted URL itself, so the masking cannot drift from
// what RedactURL decides.
func TestRedactedURLPartsNeverQuoted(t *testing.T) {
	echoBody := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		var query []string
		for part := range strings.SplitSeq(r.URL.RawQuery, "&") {
			k, v, _ := strings.Cut(part, "=")
			dk, _ := url.QueryUnescape(k)
			dv, _ := url.QueryUnescape(v)
			query = append(query, dk+"="+dv)
		}
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "%s %s path=%s query=%s", r.Method, r.RequestURI, r.URL.Path, strings.Join(query, "&"))
	})
	echoLine := rawEndpoint(t, func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		fmt.Fprint(c, line)
	})
	tests := []struct {
		name       string
		path       string // after the host
		secretPath bool
	}{
		{"query value", "/h?token=qu3ry%2Fv4lue&mode=fast&v=1", false},
		{"token-shaped query name with a value", "/h?Xk39fjQm2Lp8Zr7Tq1Vw=1", false},
		{"token-shaped query name, empty value", "/h?Xk39fjQm2Lp8Zr7Tq1Vw=", false},
		{"token-shaped query name alone", "/h?Xk39fjQm2Lp8Zr7Tq1Vw&flag", false},
		{"token-shaped query name and value", "/h?Xk39fjQm2Lp8Zr7Tq1Vw=Ab12Cd34Ef56Gh78", false},
		{"token-shaped path segment", "/in/Xk39fjQm2Lp8Zr7Tq1Vw", false},
		{"token-shaped segment before an escaped slash", "/hooks/Xk39fjQm2Lp8Zr7Tq1Vw/a%2Fb", false},
		{"token-shaped segment after an escaped slash", "/a%2Fb/Xk39fjQm2Lp8Zr7Tq1Vw/next", false},
		{"token-shaped segment holding an escaped slash", "/v1/Xk39fjQm2Lp8Zr7Tq1Vw%2Fextra/x", false},
		{"token in a segment with sub-delimiters", "/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage", false},
		{"known service path", "/webhook/orders/a1b2c3d4", false},
		{"known service path with an escaped slash", "/webhook/a1b2%2Fc3d4/T0ABCDEF", false},
		{"secret path", "/hooks/teamsecretlowercasepath", true},
		{"secret path with an escaped slash", "/hooks%2Fteam/secretpart9?q=v4lue", true},
		{"everything", "/v1%2Fx/Xk39fjQm2Lp8Zr7Tq1Vw/y?Ab12Cd34Ef56Gh78=Zz99&flag&k=qu3ry", false},
	}
	for _, tt := range tests {
		for _, c := range []struct{ name, base string }{{"body", echoBody.srv.URL}, {"request line", "http://" + echoLine}} {
			t.Run(tt.name+"/"+c.name, func(t *testing.T) {
				wh := triggers.Webhook{URL: c.base + tt.path, SecretPath: tt.secretPath, Timeout: 5 * time.Second}
				red := wh.RedactedURL()
				hidden := hiddenPieces(wh.URL, red)
				if len(hidden) == 0 {
					t.Fatalf("%s hides nothing of %s", red, wh.URL)
				}
				s := newTestSender(t, &triggers.Trigger{Webhook: wh, Retry: triggers.RetryPolicy{MaxAttempts: 1}}, WithClock(newFakeClock()))
				res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
				if err == nil {
					t.Fatal("delivered; want a failure")
				}
				quoted := res.Body
				if c.name == "request line" {
					quoted = err.Error()
				}
				if !strings.Contains(quoted, triggers.RedactedMask) {
					t.Fatalf("nothing masked in %q", quoted)
				}
				for _, p := range hidden {
					if strings.Contains(quoted, p) {
						t.Errorf("%q, hidden in %s, is quoted: %s", p, red, quoted)
					}
				}
			})
		}
	}
}

// hiddenPieces returns the pieces of raw's path and query (decoded, split
// at /, ?, & and =) that redacted, the URL as shown, does not show, of at
// least minScrubLen bytes (shorter ones are not masked).
func hiddenPieces(raw, redacted string) []string {
	pieces := func(s string) map[string]bool {
		u, err := url.Parse(s)
		if err != nil {
			return nil
		}
		m := map[string]bool{}
		add := func(s string) {
			for _, p := range strings.FieldsFunc(s, func(r rune) bool { return strings.ContainsRune("/?&=", r) }) {
				m[p] = true
			}
		}
		add(u.Path)
		for part := range strings.SplitSeq(u.RawQuery, "&") {
			k, v, _ := strings.Cut(part, "=")
			dk, _ := url.QueryUnescape(k)
			dv, _ := url.QueryUnescape(v)
			add(dk)
			add(dv)
		}
		return m
	}
	shown := pieces(redacted)
	var hidden []string
	for p := range pieces(raw) {
		if !shown[p] && len(p) >= minScrubLen {
			hidden = append(hidden, p)
		}
	}
	return hidden
}

// sixteenHeaderSecretForms returns the secret forms the Sender masks for a
// webhook with 16 header secrets ("Sk00Qm2Lp8Zr7Tq1VwXk39" to
// "Sk15Qm2Lp8Zr7Tq1VwXk39"), longest first.
func sixteenHeaderSecretForms(tb testing.TB) []string {
	tb.Helper()
	hdr := map[string]triggers.Secret{}
	for i := range 16 {
		hdr[fmt.Sprintf("X-Key-%d", i)] = triggers.Secret(fmt.Sprintf("Sk%02dQm2Lp8Zr7Tq1VwXk39", i))
	}
	w := &triggers.Webhook{URL: "http://example.test/h", Headers: hdr}
	u, err := url.Parse(w.URL)
	if err != nil {
		tb.Fatal(err)
	}
	return bodySecrets(w, u, nil)
}
