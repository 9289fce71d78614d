package scenarioutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/dispatcher"
)

const testTimeout = 10 * time.Second

// testSecret is a Standard Webhooks key used only by these tests.
const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestLogWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	var l Log[int]
	const writers, each = 4, 250
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				l.Append(w*each + i)
			}
		})
	}
	got, err := l.WaitLen(ctx, writers*each)
	wg.Wait()
	if err != nil || len(got) != writers*each {
		t.Fatalf("WaitLen: %d entries, %v", len(got), err)
	}
	even, err := l.WaitMatching(ctx, func(v int) bool { return v%2 == 0 }, writers*each/2)
	if err != nil || len(even) != writers*each/2 {
		t.Fatalf("WaitMatching: %d entries, %v", len(even), err)
	}
	if n := l.Len(); n != writers*each || len(l.Snapshot()) != n {
		t.Fatalf("Len %d, Snapshot %d", n, len(l.Snapshot()))
	}

	short, cancel2 := context.WithCancel(ctx)
	cancel2()
	if _, err := l.WaitLen(short, writers*each+1); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitLen on a canceled context: %v, want context.Canceled", err)
	}
}

func TestReceiver(t *testing.T) {
	body := []byte(`{"text":"hello"}`)
	sign := func(t *testing.T, id string, ts time.Time, secret string) string {
		t.Helper()
		sig, err := dispatcher.Sign([]string{secret}, id, ts, body)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	tests := []struct {
		name       string
		secret     string // signing key of the request ("" = unsigned)
		ts         time.Time
		handlerErr error
		wantStatus int
		recorded   bool
	}{
		{name: "valid signature", secret: testSecret, ts: time.Now(), wantStatus: http.StatusNoContent, recorded: true},
		{name: "wrong key", secret: "whsec_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ts: time.Now(), wantStatus: http.StatusUnauthorized},
		{name: "unsigned", ts: time.Now(), wantStatus: http.StatusUnauthorized},
		{name: "stale timestamp", secret: testSecret, ts: time.Now().Add(-time.Hour), wantStatus: http.StatusUnauthorized},
		{name: "handler refuses", secret: testSecret, ts: time.Now(), handlerErr: &HTTPError{Status: 503, Message: "busy"}, wantStatus: 503},
		{name: "handler fails", secret: testSecret, ts: time.Now(), handlerErr: errors.New("boom"), wantStatus: 500},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var handled []Delivery
			r, err := StartReceiver(ReceiverOptions{
				Secrets: []string{testSecret},
				Handler: func(_ context.Context, d Delivery) error {
					handled = append(handled, d)
					return tc.handlerErr
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				defer cancel()
				if err := r.Close(ctx); err != nil {
					t.Error(err)
				}
			})
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, r.URL()+"/hooks/x", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("webhook-id", "msg_1")
			req.Header.Set("webhook-timestamp", strconv.FormatInt(tc.ts.Unix(), 10))
			req.Header.Set("X-Changehook-Trigger", "t1")
			if tc.secret != "" {
				req.Header.Set("webhook-signature", sign(t, "msg_1", tc.ts, tc.secret))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			got := r.Deliveries().Snapshot()
			if tc.recorded != (len(got) == 1) {
				t.Fatalf("recorded %d deliveries, want recorded=%v", len(got), tc.recorded)
			}
			if tc.recorded {
				d := got[0]
				if d.ID != "msg_1" || d.Trigger != "t1" || d.Path != "/hooks/x" || !bytes.Equal(d.Body, body) || d.Timestamp.Unix() != tc.ts.Unix() {
					t.Errorf("delivery %+v", d)
				}
				doc, err := d.Decode()
				if err != nil || len(doc) != 1 || doc[0].Key != "text" || doc[0].Value != "hello" {
					t.Errorf("Decode: %v, %v", doc, err)
				}
			}
			wantRejected := int64(0)
			if tc.wantStatus == http.StatusUnauthorized {
				wantRejected = 1
			}
			if r.Rejected() != wantRejected || (tc.handlerErr != nil) != (r.Failed() == 1) {
				t.Errorf("Rejected %d Failed %d", r.Rejected(), r.Failed())
			}
			if (tc.wantStatus != http.StatusUnauthorized) != (len(handled) == 1) {
				t.Errorf("handler called %d times", len(handled))
			}
		})
	}
}

func TestDecodeSecrets(t *testing.T) {
	tests := []struct {
		secret  string
		wantLen int
		wantErr bool
	}{
		{secret: testSecret, wantLen: 24},
		{secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", wantLen: 24},
		{secret: "whsec_not base64!", wantErr: true},
		{secret: "whsec_", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.secret, func(t *testing.T) {
			keys, err := DecodeSecrets([]string{tc.secret})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && len(keys[0]) != tc.wantLen {
				t.Fatalf("key of %d bytes, want %d", len(keys[0]), tc.wantLen)
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	const yaml = `
mongodb:
  uri: mongodb://example.invalid:27017
triggers:
  - name: t1
    database: d
    collection: c
    webhook:
      url: ${HOOK_URL:-http://127.0.0.1:1}/hook
`
	t.Setenv("HOOK_URL", "http://from-the-environment")
	tests := []struct {
		name string
		vars map[string]string
		want string
	}{
		{name: "vars win over the environment", vars: map[string]string{"HOOK_URL": "http://127.0.0.1:9"}, want: "http://127.0.0.1:9/hook"},
		{name: "environment when vars lack it", want: "http://from-the-environment/hook"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig("t.yaml", []byte(yaml), tc.vars, "mongodb://127.0.0.1:1/?directConnection=true")
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Triggers[0].Webhook.URL; got != tc.want {
				t.Errorf("url %q, want %q", got, tc.want)
			}
			if cfg.MongoDB.URI != "mongodb://127.0.0.1:1/?directConnection=true" {
				t.Errorf("uri %q not replaced", cfg.MongoDB.URI)
			}
		})
	}
	if _, err := ParseConfig("bad.yaml", []byte("triggers: [{name: BAD}]"), nil, ""); err == nil {
		t.Fatal("ParseConfig accepted an invalid file")
	}
}

func TestSyncWriter(t *testing.T) {
	var b bytes.Buffer
	w := SyncWriter(&b)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(w, "%d\n", i)
			}
		})
	}
	wg.Wait()
	if got := bytes.Count(b.Bytes(), []byte("\n")); got != 800 {
		t.Fatalf("%d lines, want 800", got)
	}
}

func TestWaitReadyz(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen(addr)
	if err != nil {
		t.Fatalf("FreeAddr gave %s, which cannot be listened on: %v", addr, err)
	}
	var mu sync.Mutex
	calls := 0
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if r.URL.Path != "/readyz" || calls < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := WaitReadyz(ctx, URLOf(ln), nil); err != nil {
		t.Fatalf("WaitReadyz: %v", err)
	}
	mu.Lock()
	if calls != 3 {
		t.Errorf("%d calls, want 3 (ready on the third)", calls)
	}
	mu.Unlock()

	exited := make(chan struct{})
	close(exited)
	if err := WaitReadyz(ctx, "http://"+addr+"/nothing-here", exited); err == nil {
		t.Fatal("WaitReadyz succeeded although the process exited")
	}
}

func TestReceiverClose(t *testing.T) {
	t.Run("does not wait for an unused connection", func(t *testing.T) {
		r, err := StartReceiver(ReceiverOptions{})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.Dial("tcp", strings.TrimPrefix(r.URL(), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
		defer cancel()
		if err := r.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
	t.Run("waits for a request in progress until ctx ends", func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		r, err := StartReceiver(ReceiverOptions{Handler: func(context.Context, Delivery) error {
			close(entered)
			<-release
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		reqDone := make(chan error, 1)
		go func() {
			resp, err := http.Post(r.URL(), "application/json", strings.NewReader(`{}`))
			if err == nil {
				_ = resp.Body.Close()
			}
			reqDone <- err
		}()
		<-entered
		expired, cancel := context.WithCancel(t.Context())
		cancel()
		if err := r.Close(expired); !errors.Is(err, context.Canceled) {
			t.Fatalf("Close with a request in progress and a canceled context: %v", err)
		}
		close(release)
		<-reqDone // the connection was closed under the request: either outcome is fine
	})
}

// closer is a component whose Close returns err.
type closer struct {
	err    error
	closed bool
}

func (c *closer) Close(ctx context.Context) error {
	c.closed = true
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return c.err
}

func TestCloseOnExit(t *testing.T) {
	earlier, closeErr := errors.New("earlier"), errors.New("close")
	tests := []struct {
		name     string
		err      error // the run's error before the deferred close
		closeErr error
		want     error
	}{
		{name: "close error reported", closeErr: closeErr, want: closeErr},
		{name: "earlier error kept", err: earlier, closeErr: closeErr, want: earlier},
		{name: "both nil", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &closer{err: tc.closeErr}
			// A canceled ctx must not cut the close short (CloseContext).
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			err := tc.err
			CloseOnExit(ctx, c, &err)
			if !c.closed || err != tc.want {
				t.Fatalf("closed %v, err %v, want %v", c.closed, err, tc.want)
			}
		})
	}
}

func TestDoc(t *testing.T) {
	got := Doc("a", int32(1), "b", "two", "dangling")
	if len(got) != 2 || got[0].Key != "a" || got[0].Value != int32(1) || got[1].Key != "b" || got[1].Value != "two" {
		t.Fatalf("Doc: %v", got)
	}
}

func TestSyncWriterNil(t *testing.T) {
	if n, err := SyncWriter(nil).Write([]byte("x")); n != 1 || err != nil {
		t.Fatalf("Write to SyncWriter(nil): %d, %v", n, err)
	}
}
