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
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/triggers"
)

// TestEndpointTextBounded: text a hostile endpoint controls is quoted in
// an attempt's error only up to a bound, marked as cut: a redirect's
// Location (512 bytes of it), the names of a TLS certificate that does not
// match, a malformed status line. The error, which becomes the dead
// letter's lastError, the head of line's and the circuit's last error and
// log lines, is at most MaxErrorText bytes.
func TestEndpointTextBounded(t *testing.T) {
	longLoc := "https://other.example/" + strings.Repeat("a", 40<<10)
	redirect := func(t *testing.T) (string, *triggers.TLS) {
		rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Location", longLoc)
			w.WriteHeader(http.StatusFound)
		})
		return rc.srv.URL + "/hook", nil
	}
	tests := []struct {
		name       string
		endpoint   func(t *testing.T) (url string, tl *triggers.TLS)
		secretPath bool
		want       []string // substrings of the attempt's error
	}{
		{name: "redirect Location", endpoint: redirect,
			want: []string{"redirect: HTTP 302 Found: redirect to https://other.example/aaaa", fmt.Sprintf("…[truncated: %d bytes] not followed", len(longLoc))}},
		{name: "redirect Location, secret path", endpoint: redirect, secretPath: true,
			want: []string{"redirect to https://other.example/REDACTED not followed"}},
		{name: "certificate names", endpoint: manySANsServer,
			want: []string{"tls: the server's certificate is not trusted", "x509: certificate is valid for 2001:db8:", "…[truncated: "}},
		{name: "malformed status line", endpoint: func(t *testing.T) (string, *triggers.TLS) {
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
				conn, bw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				defer conn.Close()
				fmt.Fprintf(bw, "HTTP/1.1 2%s OK\r\nContent-Length: 0\r\n\r\n", strings.Repeat("9", 40<<10))
				_ = bw.Flush()
			})
			return rc.srv.URL + "/hook", nil
		}, want: []string{"connection: ", "…[truncated: "}},
	}
	for _, tt := range tests {
		for _, netHTTP := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s net/http %t", tt.name, netHTTP), func(t *testing.T) {
				url, tl := tt.endpoint(t)
				var atErr error
				opts := []Option{WithClock(newFakeClock()), WithObserver(func(a Attempt) { atErr = a.Err })}
				if netHTTP {
					opts = append(opts, func(o *options) { o.netHTTPOnly = true })
				}
				s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: url, TLS: tl, SecretPath: tt.secretPath},
					Retry: triggers.RetryPolicy{MaxAttempts: 1}}, opts...)
				if _, err := s.Deliver(context.Background(), testEvent(t, 1, "k")); err == nil {
					t.Fatal("Deliver succeeded")
				}
				var ae *AttemptError
				if !errors.As(atErr, &ae) {
					t.Fatalf("attempt error %T %.300q, want an *AttemptError", atErr, atErr)
				}
				msg := atErr.Error()
				if len(msg) > MaxErrorText {
					t.Errorf("attempt error is %d bytes, want at most %d: %.300q…", len(msg), MaxErrorText, msg)
				}
				for _, w := range tt.want {
					if !strings.Contains(msg, w) {
						t.Errorf("attempt error %.2000q does not contain %q", msg, w)
					}
				}
			})
		}
	}
}

// manySANsServer is a TLS endpoint whose certificate, trusted by the
// returned TLS settings, names 99 long IPv6 addresses and not 127.0.0.1:
// crypto/x509 lists them all in its error.
func manySANsServer(t *testing.T) (string, *triggers.TLS) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "many names"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for i := range 99 {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(fmt.Sprintf("2001:db8:1234:5678:9abc:def0:1234:%x", 0x1000+i)))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", der)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tl := &triggers.TLS{CAFile: caFile}
	if err := tl.LoadFiles(); err != nil {
		t.Fatal(err)
	}
	return srv.URL + "/hook", tl
}

// TestDeadLetterErrorBounded: a dead letter's LastError is at most
// MaxErrorText bytes, marked as cut, whatever the failure's text (here a
// plugged-in retry policy's).
func TestDeadLetterErrorBounded(t *testing.T) {
	rc := newReceiver(t, statuses(http.StatusBadRequest))
	huge := strings.Repeat("x", 100<<10)
	policy := func(context.Context, *http.Response, error) (bool, error) { return false, errors.New(huge) }
	sink := &memSink{}
	d := newTestDispatcher(t, &triggers.Trigger{DeadLetter: true, Webhook: triggers.Webhook{URL: rc.srv.URL},
		Retry: triggers.RetryPolicy{MaxAttempts: 1}}, sink, WithClock(newFakeClock()), WithCheckRetry(policy))
	if err := d.Submit(context.Background(), testEvent(t, 1, "k")); err != nil {
		t.Fatal(err)
	}
	closeWithin(t, d, 10*time.Second)
	dls := sink.All()
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	if got := dls[0].LastError; len(got) > MaxErrorText || !strings.Contains(got, "xxxx…[truncated: ") {
		t.Errorf("LastError is %d bytes (at most %d wanted, marked as cut): …%q", len(got), MaxErrorText, got[max(0, len(got)-100):])
	}
}

// TestResponseHeaderLimit: a response whose header is larger than
// maxResponseHeaderBytes fails the attempt (a connection failure naming
// the limit) instead of being held in memory, on every transport path; a
// large but ordinary header is read.
func TestResponseHeaderLimit(t *testing.T) {
	pad := strings.Repeat("p", 1000)
	tests := []struct {
		name    string
		headers int // of about 1 KB each
		fail    bool
	}{
		{"ordinary", 2, false},
		{"large, under the limit", 40, false},
		{"over the limit", 100, true},
		{"far over the limit", 1000, true},
	}
	for _, tt := range tests {
		for _, netHTTP := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s net/http %t", tt.name, netHTTP), func(t *testing.T) {
				rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
					for i := range tt.headers {
						w.Header().Set(fmt.Sprintf("X-Pad-%d", i), pad)
					}
					w.WriteHeader(http.StatusNoContent)
				})
				opts := []Option{WithClock(newFakeClock())}
				if netHTTP {
					opts = append(opts, func(o *options) { o.netHTTPOnly = true })
				}
				s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Retry: triggers.RetryPolicy{MaxAttempts: 1}}, opts...)
				res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
				if !tt.fail {
					if err != nil {
						t.Fatalf("Deliver = %+v, %v; want delivered", res, err)
					}
					return
				}
				want := fmt.Sprintf("server response headers exceeded %d bytes; aborted", maxResponseHeaderBytes)
				if err == nil || res.Reason != ReasonConnection || !strings.Contains(err.Error(), want) {
					t.Fatalf("Deliver = %+v, %v; want a connection failure saying %q", res, err, want)
				}
			})
		}
	}
}

// TestResponseHeaderLimitWhateverTheCut: wherever the limit cuts a
// response header (interim 1xx responses included), the attempt fails
// naming the limit, on both transports. The direct transport's limit cuts
// the bytes read, so its parser sees a cut last line: one cut in its key,
// after its CR or inside a status line is malformed as it stands, and must
// not be reported as such (TestResponseHeaderLimit's 1 KB lines are cut in
// their values, which parse).
func TestResponseHeaderLimitWhateverTheCut(t *testing.T) {
	const status = "HTTP/1.1 200 OK\r\n" // 17 bytes
	tests := []struct {
		name, head, unit string
	}{
		// (65536-17) mod 11 = 3: the limit cuts the key "X-Abcd" to "X-A".
		{"cut in a key", status, "X-Abcd: e\r\n"},
		// (65536-17) mod 8 = 7: the limit falls between a line's CR and LF.
		{"cut after a CR", status, "X-A: b\r\n"},
		// 65536 mod 25 = 11: the limit cuts a status line in its code.
		{"cut in an interim status line", "", "HTTP/1.1 100 Continue\r\n\r\n"},
	}
	want := fmt.Sprintf("server response headers exceeded %d bytes; aborted", maxResponseHeaderBytes)
	for _, tt := range tests {
		for _, netHTTP := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s net/http %t", tt.name, netHTTP), func(t *testing.T) {
				addr := rawEndpoint(t, func(c net.Conn) {
					if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
						return
					}
					_, _ = io.WriteString(c, tt.head+strings.Repeat(tt.unit, 2*maxResponseHeaderBytes/len(tt.unit)))
				})
				opts := []Option{WithClock(newFakeClock())}
				if netHTTP {
					opts = append(opts, func(o *options) { o.netHTTPOnly = true })
				}
				s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: "http://" + addr + "/hook"}, Retry: triggers.RetryPolicy{MaxAttempts: 1}}, opts...)
				res, err := s.Deliver(context.Background(), testEvent(t, 1, "k"))
				if err == nil || res.Reason != ReasonConnection || !strings.Contains(err.Error(), want) {
					t.Fatalf("Deliver = %+v, %v; want a connection failure saying %q", res, err, want)
				}
			})
		}
	}
}
