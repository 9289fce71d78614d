package dispatcher

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/changehook/changehook/triggers"
)

// TestHTTP1OnEveryPath: requests the direct transport leaves to net/http
// (a URL with userinfo, a request through a proxy) are HTTP/1.1 too, to a
// TLS server that would choose HTTP/2, and a response header over
// maxResponseHeaderBytes fails them with the direct path's error text.
func TestHTTP1OnEveryPath(t *testing.T) {
	var mu sync.Mutex
	var protos []int
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.ProtoMajor)
		mu.Unlock()
		if r.URL.Query().Has("big") {
			for i := range 100 {
				w.Header().Set(fmt.Sprintf("X-Pad-%d", i), strings.Repeat("p", 1000))
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	connect := connectProxy(t)
	hostPort := strings.TrimPrefix(srv.URL, "https://")
	tests := []struct {
		name, url string
		opts      []Option
	}{
		{name: "userinfo", url: "https://user:pa55word-for-hook@" + hostPort + "/h"},
		{name: "user name alone", url: "https://tok3n-as-user@" + hostPort + "/h"},
		{name: "proxy", url: srv.URL + "/h", opts: []Option{withProxy(t, connect.URL)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			send := func(query string) (Result, error) {
				tl := &triggers.TLS{CAFile: caFile}
				if err := tl.LoadFiles(); err != nil {
					t.Fatal(err)
				}
				s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: tt.url + query, TLS: tl}, Retry: triggers.RetryPolicy{MaxAttempts: 1}},
					append([]Option{WithClock(newFakeClock())}, tt.opts...)...)
				t.Cleanup(s.CloseIdleConnections)
				return s.Deliver(context.Background(), testEvent(t, 1, "k"))
			}
			mu.Lock()
			protos = nil
			mu.Unlock()
			if res, err := send(""); err != nil {
				t.Fatalf("Deliver = %+v, %v; want delivered", res, err)
			}
			res, err := send("?big=1")
			want := fmt.Sprintf("server response headers exceeded %d bytes; aborted", maxResponseHeaderBytes)
			if err == nil || res.Reason != ReasonConnection || !strings.Contains(err.Error(), want) {
				t.Errorf("Deliver with a large header = %+v, %v; want a connection failure saying %q", res, err, want)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(protos) != 2 || slices.ContainsFunc(protos, func(p int) bool { return p != 1 }) {
				t.Errorf("the server saw HTTP major versions %v, want [1 1]", protos)
			}
		})
	}
}

// TestHTTP1FallbackTransport: the net/http transport a Sender falls back
// on (every URL the direct transport does not serve, a host that is not
// ASCII among them) offers only HTTP/1.1, with or without webhook.tls.
func TestHTTP1FallbackTransport(t *testing.T) {
	for _, tt := range []struct {
		name, url string
		tls       *triggers.TLS
	}{
		{name: "host not ASCII", url: "https://bücher.example/h"},
		{name: "host not ASCII, webhook.tls", url: "https://bücher.example/h", tls: &triggers.TLS{MinVersion: triggers.TLSVersion13}},
		{name: "userinfo", url: "https://u:p@hooks.example/h"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: tt.url, TLS: tt.tls}})
			var tr *http.Transport
			switch rt := s.http.Transport.(type) {
			case noSwitch:
				tr = rt.t
			case *directTransport:
				t.Fatalf("the direct transport serves %s", tt.url)
			default:
				t.Fatalf("transport %T", rt)
			}
			if tr.ForceAttemptHTTP2 || tr.TLSNextProto == nil || len(tr.TLSNextProto) != 0 || tr.Protocols == nil || tr.Protocols.HTTP2() || !tr.Protocols.HTTP1() {
				t.Errorf("transport: ForceAttemptHTTP2 %t, TLSNextProto %v, Protocols %v; want HTTP/1 only", tr.ForceAttemptHTTP2, tr.TLSNextProto, tr.Protocols)
			}
			if tr.TLSClientConfig == nil || !slices.Equal(tr.TLSClientConfig.NextProtos, []string{"http/1.1"}) {
				t.Errorf("TLS config %+v, want ALPN http/1.1 only", tr.TLSClientConfig)
			}
			if tr.MaxResponseHeaderBytes != maxResponseHeaderBytes {
				t.Errorf("MaxResponseHeaderBytes %d, want %d", tr.MaxResponseHeaderBytes, maxResponseHeaderBytes)
			}
		})
	}
}

// connectProxy is an HTTP proxy that tunnels every CONNECT request to the
// address asked for.
func connectProxy(t *testing.T) *httptest.Server {
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer up.Close()
		w.WriteHeader(http.StatusOK)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		go func() {
			_, _ = io.Copy(up, brw)
			up.Close()
		}()
		_, _ = io.Copy(c, up)
	}))
	t.Cleanup(p.Close)
	return p
}
