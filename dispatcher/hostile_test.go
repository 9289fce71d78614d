package dispatcher

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// rawEndpoint serves every connection on a loopback listener with h (the
// connection is closed when h returns) and returns its address.
func rawEndpoint(t *testing.T, h func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// sendPaths are the ways a Sender sends: its direct transport, net/http
// (a proxy, Expect), and http.Client (a URL's userinfo).
var sendPaths = []struct {
	name     string
	userinfo string
	opts     []Option
}{
	{name: "direct"},
	{name: "net/http", opts: []Option{func(o *options) { o.netHTTPOnly = true }}},
	{name: "userinfo", userinfo: "admin:pa55word-for-hook@"},
}

// An endpoint whose answer quotes what the request carried (an echo
// service at the webhook's address, a redirect to a login page naming a
// header's value) never gets a secret into the attempt's error, which
// the logs, dead letters, history and API show.
func TestAttemptErrorNeverQuotesASecret(t *testing.T) {
	// Echoes the request line back, read as the status line: net/http's
	// error then quotes the path and query ("malformed HTTP status
	// code").
	echo := rawEndpoint(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		fmt.Fprint(c, line)
	})
	// Redirects to a path made of the X-Api-Key header's value.
	login := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/login/"+r.Header.Get("X-Api-Key")+"/next")
		w.WriteHeader(http.StatusFound)
	}))
	t.Cleanup(login.Close)
	const token, key = "qs-t0ken-secret", "letmein-please-now"
	// The same with the value where the quoted Location is cut (at
	// maxQuoted bytes): the unmasked Location of 589 bytes keeps 487 of
	// them, all of the value but its last byte, so the value is masked
	// only if the whole Location is masked before it is cut.
	pad := strings.Repeat("a", 480-len(key))
	longLogin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/login/"+pad+"/"+r.Header.Get("X-Api-Key")+"/"+strings.Repeat("b", 100))
		w.WriteHeader(http.StatusFound)
	}))
	t.Cleanup(longLogin.Close)

	for _, p := range sendPaths {
		for _, c := range []struct {
			name, url string
			secrets   []string
			want      string
		}{
			{"echoed request line", "http://" + p.userinfo + echo + "/hook?token=" + token, []string{token, "pa55word-for-hook"}, "connection: "},
			{"redirect to a header's value", strings.Replace(login.URL, "http://", "http://"+p.userinfo, 1) + "/hook", []string{key, "pa55word-for-hook"}, "redirect: HTTP 302 Found: redirect to /login/"},
			{"redirect to a header's value where the Location is cut", strings.Replace(longLogin.URL, "http://", "http://"+p.userinfo, 1) + "/hook", []string{key[:len(key)-1], "pa55word-for-hook"}, "redirect: HTTP 302 Found: redirect to /login/" + pad + "/" + triggers.RedactedMask + "/bbb"},
		} {
			t.Run(p.name+"/"+c.name, func(t *testing.T) {
				s := newTestSender(t, &triggers.Trigger{Name: "orders",
					Webhook: triggers.Webhook{URL: c.url, Timeout: 5 * time.Second, Headers: map[string]triggers.Secret{"X-Api-Key": key}},
					Retry:   triggers.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}}, p.opts...)
				res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
				if err == nil {
					t.Fatal("delivered; want a failure")
				}
				for _, sec := range c.secrets {
					if strings.Contains(err.Error(), sec) {
						t.Errorf("the error quotes a secret (%q): %v", sec, err)
					}
				}
				if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), triggers.RedactedMask) {
					t.Errorf("error = %v, want %q and the mask", err, c.want)
				}
				if c.name == "echoed request line" && res.Reason != ReasonConnection {
					t.Errorf("reason = %q, want %q (classified as before)", res.Reason, ReasonConnection)
				}
			})
		}
	}
}

// An endpoint (or an OAuth2 token endpoint) answering 101 Switching
// Protocols and then holding the connection does not hold the attempt
// past webhook.timeout: net/http hands a switched connection over as the
// response body, outside the request's deadline.
func TestSwitchingProtocolsAnswerDoesNotHoldTheAttempt(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	switcher := rawEndpoint(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"))
		<-release
	})
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(ok.Close)

	type tc struct {
		name string
		url  string
		auth *triggers.Auth
		opts []Option
	}
	var cases []tc
	for _, p := range sendPaths {
		cases = append(cases, tc{name: p.name, url: "http://" + p.userinfo + switcher + "/hook", opts: p.opts})
	}
	cases = append(cases, tc{name: "oauth2 token request", url: ok.URL + "/hook",
		auth: &triggers.Auth{OAuth2: &triggers.OAuth2ClientCredentials{TokenURL: "http://" + switcher + "/token", ClientID: "c", ClientSecret: "sup3rs3cret"}}})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newTestSender(t, &triggers.Trigger{Name: "orders",
				Webhook: triggers.Webhook{URL: c.url, Timeout: 200 * time.Millisecond, Auth: c.auth},
				Retry:   triggers.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}}, c.opts...)
			// The caller's context outlives the test's patience: only the
			// Sender's own bounds can end the attempt.
			done := make(chan error, 1)
			go func() {
				_, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("a 101 answer was taken as a delivery")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the attempt is still held by the switched connection 10s after a 200ms timeout")
			}
		})
	}
}

// A nil context is refused with an error, not a panic, by every entry
// point that takes one.
func TestNilContextIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(srv.Close)
	cfg := &triggers.Trigger{Name: "orders", Webhook: triggers.Webhook{URL: srv.URL, Timeout: time.Second},
		Retry: triggers.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}}
	s := newTestSender(t, cfg)
	d, err := New(cfg, &memSink{}, WithClock(newFakeClock()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	var nilCtx context.Context
	for name, call := range map[string]func() error{
		"Deliver":             func() error { _, err := s.Deliver(nilCtx, testEvent(t, 1, "k")); return err },
		"DeliverUntilSuccess": func() error { _, err := s.DeliverUntilSuccess(nilCtx, testEvent(t, 1, "k")); return err },
		"DeliverBatch":        func() error { _, err := s.DeliverBatch(nilCtx, []Event{testEvent(t, 1, "k")}); return err },
		"SendOnce":            func() error { _, _, err := s.SendOnce(nilCtx, "msg_1", []byte("{}"), 1); return err },
		"Submit":              func() error { return d.Submit(nilCtx, testEvent(t, 1, "k")) },
		"Close":               func() error { return d.Close(nilCtx) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			if err := call(); !errors.Is(err, errNilContext) {
				t.Fatalf("error = %v, want one wrapping %v", err, errNilContext)
			}
		})
	}
}
