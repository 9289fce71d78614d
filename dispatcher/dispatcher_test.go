package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/changehook/changehook/triggers"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.mongodb.org/mongo-driver/v2/bson"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// delivery is one request seen by a receiver.
type delivery struct {
	header http.Header
	body   []byte
}

// receiver is an httptest endpoint that records requests and answers with
// a scripted handler.
type receiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []delivery
	respond func(n int, w http.ResponseWriter, r *http.Request) // n: 1-based request number
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body)) // respond may read it again
		rc.mu.Lock()
		rc.got = append(rc.got, delivery{header: r.Header.Clone(), body: body})
		n := len(rc.got)
		rc.mu.Unlock()
		if rc.respond == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		rc.respond(n, w, r)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}
func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

// statuses answers the n-th request with codes[n-1] (the last code after
// the script ends).
func statuses(codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(codes[min(n, len(codes))-1])
		_, _ = io.WriteString(w, "status "+http.StatusText(codes[min(n, len(codes))-1]))
	}
}
func newTestDispatcher(t *testing.T, cfg *triggers.Trigger, sink DeadLetterSink, opts ...Option) *Dispatcher {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "orders"
	}
	d, err := New(cfg, sink, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}
func TestNewValidates(t *testing.T) {
	ok := triggers.Webhook{URL: "http://127.0.0.1:1/h"}
	tests := []struct {
		name    string
		cfg     *triggers.Trigger
		sink    DeadLetterSink
		wantErr string
	}{
		{"no trigger", &triggers.Trigger{Webhook: ok}, nil, "trigger name is empty"},
		{"bad ordering", &triggers.Trigger{Name: "t", Webhook: ok, Ordering: "random"}, nil, "unknown ordering"},
		{"dead letters need a sink", &triggers.Trigger{Name: "t", Webhook: ok, DeadLetter: true}, nil, "no dead-letter sink"},
		{"relative url", &triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: "/hooks"}}, nil, "absolute http or https"},
		{"ftp url", &triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: "ftp://u:pw@h/x"}}, nil, "ftp://REDACTED@h/x"},
		{"method outside POST, PUT, PATCH", &triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: ok.URL, Method: "get"}}, nil, "is not one of POST, PUT, PATCH"},
		{"bad secret", &triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: ok.URL, Secrets: []triggers.Secret{"whsec_%%%"}}}, nil, "webhook secret 1"},
		{"reserved header", &triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: ok.URL, Headers: map[string]triggers.Secret{"webhook-id": "x"}}}, nil, "Webhook-Id is set by changehook"},
		{"hop-by-hop header", &triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: ok.URL, Headers: map[string]triggers.Secret{"keep-alive": "timeout=5"}}}, nil, "Keep-Alive belongs to the HTTP connection"},
		{"TE header", &triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: ok.URL, Headers: map[string]triggers.Secret{"TE": "gzip"}}}, nil, "Te belongs to the HTTP connection"},
		{"header injection", &triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: ok.URL, Headers: map[string]triggers.Secret{"X-A": "a\r\nX-B: b"}}}, nil, "line break"},
		{"bad format", &triggers.Trigger{Name: "t", Webhook: triggers.Webhook{URL: ok.URL, Format: "yaml"}}, nil, "unknown format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.cfg, tt.sink)
			if err == nil {
				_ = d.Close(context.Background())
				t.Fatalf("New succeeded, want error containing %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %q, want it to contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Fatalf("New error %q leaks a secret", err)
			}
		})
	}
}
func TestDeadLetterDetails(t *testing.T) {
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"unknown sku"}`+strings.Repeat(".", 10_000))
	})
	sink := &memSink{fail: 2} // the store is briefly unavailable
	clock := newFakeClock()
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:    triggers.Webhook{URL: rc.srv.URL},
		Retry:      triggers.RetryPolicy{MaxAttempts: 5},
		DeadLetter: true,
	}, sink, WithClock(clock))
	ev := testEvent(t, 9, "k")
	if err := d.Submit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	closeWithin(t, d, 10*time.Second)
	dls := sink.All()
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	if dl.Trigger != "orders" || dl.WebhookID != WebhookID("orders", ev.Token) ||
		!bytes.Equal(dl.Event, ev.Raw) || !bytes.Equal(dl.Token, ev.Token) ||
		dl.Attempts != 1 || dl.LastStatus != 400 || dl.LastReason != ReasonClientError ||
		!strings.Contains(dl.LastError, "HTTP 400") ||
		!strings.HasPrefix(dl.LastResponse, `{"error":"unknown sku"}`) || len(dl.LastResponse) != respBodyLimit ||
		dl.FirstAttemptAt.IsZero() || dl.DeadLetteredAt.Before(dl.FirstAttemptAt) {
		t.Fatalf("dead letter = %+v", dl)
	}
	if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, ev.Token) {
		t.Fatalf("Watermark = %v, %v; a dead-lettered event is done", tok, ok)
	}
}

// closeWithin closes d with a grace period and fails the test on error.
func closeWithin(t *testing.T, d *Dispatcher, grace time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestOrdering checks each mode's guarantee on the receiver side, with
// random response delays so that deliveries complete out of order.
func TestOrdering(t *testing.T) {
	const events, keys, conc = 300, 7, 8
	tests := []struct {
		mode        triggers.Ordering
		concurrency int
		wantMaxPar  int // upper bound of concurrent requests
		perKey      bool
		global      bool
	}{
		{triggers.Strict, conc, 1, true, true},
		{triggers.PerDocument, conc, conc, true, false},
		{triggers.None, conc, conc, false, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			var cur, peak atomic.Int32
			rc := newReceiver(t, func(n int, w http.ResponseWriter, _ *http.Request) {
				c := cur.Add(1)
				for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
				}
				// Yield a random number of times so completions interleave.
				for range rand.IntN(200) {
					runtimeGosched()
				}
				cur.Add(-1)
				w.WriteHeader(http.StatusOK)
			})
			d := newTestDispatcher(t, &triggers.Trigger{
				Webhook:     triggers.Webhook{URL: rc.srv.URL},
				Ordering:    tt.mode,
				Concurrency: tt.concurrency,
			}, nil)
			for i := range events {
				key := string(rune('a' + i%keys))
				if err := d.Submit(context.Background(), testEvent(t, i, key)); err != nil {
					t.Fatal(err)
				}
			}
			closeWithin(t, d, 30*time.Second)
			got := rc.deliveries()
			if len(got) != events {
				t.Fatalf("receiver saw %d deliveries, want %d", len(got), events)
			}
			seen := make(map[int]bool, events)
			lastPerKey := map[int]int{}
			last := -1
			for _, dv := range got {
				s := seqOf(t, dv.body)
				if seen[s] {
					t.Fatalf("event %d delivered twice", s)
				}
				seen[s] = true
				if tt.global && s < last {
					t.Fatalf("strict: event %d delivered after %d", s, last)
				}
				last = s
				if prev, ok := lastPerKey[s%keys]; tt.perKey && ok && s < prev {
					t.Fatalf("key %d: event %d delivered after %d", s%keys, s, prev)
				}
				lastPerKey[s%keys] = s
			}
			if p := int(peak.Load()); p > tt.wantMaxPar {
				t.Fatalf("peak concurrency %d exceeds %d", p, tt.wantMaxPar)
			}
			if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, testEvent(t, events-1, "").Token) {
				t.Fatalf("final watermark %v, want the last event's token", tok)
			}
		})
	}
}

// TestPerDocumentNoHeadOfLineBlocking: while key "slow" is stuck, events of
// other keys keep being delivered (within the capacity window).
func TestPerDocumentNoHeadOfLineBlocking(t *testing.T) {
	release := make(chan struct{})
	var slowHits atomic.Int32
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"documentKey":{"_id":"slow"}`)) {
			slowHits.Add(1)
			<-release
		}
		w.WriteHeader(http.StatusOK)
	})
	d := newTestDispatcher(t, &triggers.Trigger{
		Webhook:     triggers.Webhook{URL: rc.srv.URL},
		Ordering:    triggers.PerDocument,
		Concurrency: 4,
	}, nil)
	ctx := context.Background()
	if err := d.Submit(ctx, testEvent(t, 0, "slow")); err != nil {
		t.Fatal(err)
	}
	if err := d.Submit(ctx, testEvent(t, 1, "slow")); err != nil {
		t.Fatal(err)
	}
	// Capacity is 4 + 16 = 20 events held; two are the slow key's.
	for i := 2; i < 18; i++ {
		if err := d.Submit(ctx, testEvent(t, i, "fast"+string(rune('a'+i%3)))); err != nil {
			t.Fatal(err)
		}
	}
	// All 16 fast events get delivered while the slow key is blocked.
	waitFor(t, func() bool { return len(rc.deliveries()) >= 17 })
	if n := slowHits.Load(); n != 1 {
		t.Fatalf("slow key requests = %d, want 1 (its second event must wait)", n)
	}
	if _, ok := d.Watermark(); ok {
		t.Fatal("watermark advanced past the undelivered first event")
	}
	close(release)
	closeWithin(t, d, 10*time.Second)
	if tok, _ := d.Watermark(); !bytes.Equal(tok, testEvent(t, 17, "").Token) {
		t.Fatal("watermark did not reach the last event")
	}
}

// waitFor polls cond until it holds, failing the test after 10s. It is
// used only where the dispatcher offers no completion signal to a test.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		runtimeGosched()
	}
}

// TestWatermarkNeverPassesUndelivered releases held deliveries in random
// order while a sampler checks that the watermark never covers an event
// that was not yet released.
func TestWatermarkNeverPassesUndelivered(t *testing.T) {
	const n = 24
	for round := range 5 {
		t.Run("round"+string(rune('0'+round)), func(t *testing.T) {
			gates := make([]chan struct{}, n)
			for i := range gates {
				gates[i] = make(chan struct{})
			}
			var relMu sync.Mutex
			released := make([]bool, n)
			rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				<-gates[seqOf(t, body)]
				w.WriteHeader(http.StatusOK)
			})
			d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Ordering: triggers.None, Concurrency: n}, nil)
			tokens := make(map[string]int, n)
			for i := range n {
				ev := testEvent(t, i, "")
				tokens[string(ev.Token)] = i
				if err := d.Submit(context.Background(), ev); err != nil {
					t.Fatal(err)
				}
			}
			stop := make(chan struct{})
			violations := make(chan string, 1)
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					tok, ok := d.Watermark()
					if !ok {
						runtimeGosched()
						continue
					}
					k := tokens[string(tok)]
					relMu.Lock()
					for i := 0; i <= k; i++ {
						if !released[i] {
							select {
							case violations <- "watermark at event " + string(rune('0'+k)) + " before event released":
							default:
							}
						}
					}
					relMu.Unlock()
					runtimeGosched()
				}
			})
			for _, i := range rand.Perm(n) {
				relMu.Lock()
				released[i] = true
				relMu.Unlock()
				close(gates[i])
			}
			closeWithin(t, d, 10*time.Second)
			close(stop)
			wg.Wait()
			select {
			case v := <-violations:
				t.Fatal(v)
			default:
			}
			if tok, ok := d.Watermark(); !ok || tokens[string(tok)] != n-1 {
				t.Fatalf("final watermark at %d, want %d", tokens[string(tok)], n-1)
			}
		})
	}
}
func TestBackpressure(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Ordering: triggers.None, Concurrency: 2}, nil)
	capacity := d.capacity()
	for i := range capacity {
		if err := d.Submit(context.Background(), testEvent(t, i, "")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := d.Submit(ctx, testEvent(t, capacity, "")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Submit beyond capacity = %v, want it to block until ctx ends", err)
	}
	if d.Idle() {
		t.Fatal("Idle with events in flight")
	}
	close(release)
	closeWithin(t, d, 10*time.Second)
	if !d.Idle() {
		t.Fatal("not Idle after Close")
	}
	if err := d.Submit(context.Background(), testEvent(t, 99, "")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Submit after Close = %v, want ErrClosed", err)
	}
}
func TestCloseGrace(t *testing.T) {
	t.Run("in-flight delivery finishes within grace", func(t *testing.T) {
		entered := make(chan struct{}, 1)
		release := make(chan struct{})
		rc := newReceiver(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			entered <- struct{}{}
			<-release
			w.WriteHeader(http.StatusOK)
		})
		d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}}, nil)
		ev := testEvent(t, 1, "")
		if err := d.Submit(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		<-entered
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done <- d.Close(ctx)
		}()
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("Close: %v", err)
		}
		if tok, ok := d.Watermark(); !ok || !bytes.Equal(tok, ev.Token) {
			t.Fatal("delivered event not in the watermark")
		}
	})
	t.Run("grace ends: delivery canceled and never done", func(t *testing.T) {
		entered := make(chan struct{}, 1)
		rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			entered <- struct{}{}
			<-r.Context().Done()
		})
		sink := &memSink{}
		d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, DeadLetter: true, Retry: triggers.RetryPolicy{MaxAttempts: 1}}, sink)
		first, second := testEvent(t, 1, ""), testEvent(t, 2, "")
		for _, ev := range []Event{first, second} {
			if err := d.Submit(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
		<-entered
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no grace at all
		if err := d.Close(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Close = %v, want the grace context's error", err)
		}
		if tok, ok := d.Watermark(); ok {
			t.Fatalf("watermark %v after canceled deliveries, want none", tok)
		}
		if n := len(sink.All()); n != 0 {
			t.Fatalf("%d dead letters for canceled deliveries, want 0", n)
		}
		if n := len(rc.deliveries()); n != 1 {
			t.Fatalf("%d requests, want 1 (the queued event is not started after Close)", n)
		}
	})
}

// TestSecretsNeverLeak: secrets in the URL, headers and signing keys appear
// in no log line, error or dead letter.
func TestSecretsNeverLeak(t *testing.T) {
	const (
		userinfo = "admin:pa55word"
		query    = "qs-t0ken"
		bearer   = "b3arer-s3cret"
	)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 1 {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		w.WriteHeader(http.StatusForbidden)
	})
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sink := &memSink{}
	u := strings.Replace(rc.srv.URL, "http://", "http://"+userinfo+"@", 1) + "/h?token=" + query
	cfg := &triggers.Trigger{
		Name: "orders",
		Webhook: triggers.Webhook{
			URL:     u,
			Headers: map[string]triggers.Secret{"Authorization": triggers.Secret("Bearer " + bearer)},
			Secrets: []triggers.Secret{testSecret},
		},
		Retry:      triggers.RetryPolicy{MaxAttempts: 3},
		DeadLetter: true,
	}
	d := newTestDispatcher(t, cfg, sink, WithLogger(logger), WithClock(newFakeClock()))
	// A one-off send (dead-letter replay, test --send) logs through its Sender.
	_, derr := newTestSender(t, cfg, WithLogger(logger), WithClock(newFakeClock())).Deliver(context.Background(), testEvent(t, 1, ""))
	if derr == nil {
		t.Fatal("Deliver succeeded against a 403")
	}
	if err := d.Submit(context.Background(), testEvent(t, 2, "")); err != nil {
		t.Fatal(err)
	}
	closeWithin(t, d, 10*time.Second)
	var texts []string
	texts = append(texts, logs.String(), derr.Error())
	for _, dl := range sink.All() {
		texts = append(texts, dl.LastError, dl.LastResponse)
	}
	if !strings.Contains(logs.String(), `"trigger":"orders"`) || !strings.Contains(logs.String(), "connection") {
		t.Fatalf("logs lack the trigger or the connection failure: %s", logs.String())
	}
	for _, s := range []string{"pa55word", "admin", query, bearer, strings.TrimPrefix(testSecret, "whsec_")} {
		for _, txt := range texts {
			if strings.Contains(txt, s) {
				t.Fatalf("secret %q leaked into %q", s, txt)
			}
		}
	}
}
func TestMetrics(t *testing.T) {
	rc := newReceiver(t, statuses(500, 200, 400))
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	if again := NewMetrics(reg); again.deliveries != m.deliveries {
		t.Fatal("second NewMetrics on the same registry did not reuse the collectors")
	}
	sink := &memSink{}
	d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Retry: triggers.RetryPolicy{MaxAttempts: 3}, DeadLetter: true},
		sink, WithMetrics(m), WithClock(newFakeClock()))
	for i := range 2 {
		if err := d.Submit(context.Background(), testEvent(t, i, "")); err != nil {
			t.Fatal(err)
		}
	}
	closeWithin(t, d, 10*time.Second)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		`changehook_deliveries_total{outcome="delivered",trigger="orders"}`:          1,
		`changehook_deliveries_total{outcome="dead_lettered",trigger="orders"}`:      1,
		`changehook_delivery_attempts_total{reason="ok",trigger="orders"}`:           1,
		`changehook_delivery_attempts_total{reason="server_error",trigger="orders"}`: 1,
		`changehook_delivery_attempts_total{reason="client_error",trigger="orders"}`: 1,
		`changehook_dead_letters_total{trigger="orders"}`:                            1,
		`changehook_inflight{trigger="orders"}`:                                      0,
		`changehook_delivery_duration_seconds_count{trigger="orders"}`:               2,
	}
	got := flatten(fams)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (have %v)", k, got[k], v, got)
		}
	}
}

// flatten renders gathered metrics as name{labels} → value.
func flatten(fams []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
			}
			key := "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.Counter != nil:
				out[f.GetName()+key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[f.GetName()+key] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[f.GetName()+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}
func TestSubmitCopiesEvent(t *testing.T) {
	rc := newReceiver(t, nil)
	d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}}, nil)
	ev := testEvent(t, 5, "")
	want := bytes.Clone(ev.Raw)
	if err := d.Submit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	// The driver reuses its buffers: scribble over them.
	for i := range ev.Raw {
		ev.Raw[i] = 0
	}
	for i := range ev.Token {
		ev.Token[i] = 0
	}
	closeWithin(t, d, 10*time.Second)
	got := rc.deliveries()
	wantBody, _ := BuildPayload(triggers.Webhook{}, Event{Raw: want})
	if len(got) != 1 || !bytes.Equal(got[0].body, wantBody) {
		t.Fatalf("delivered %d bodies, want the original event", len(got))
	}
	if err := d.Submit(context.Background(), Event{Raw: want}); err == nil {
		t.Fatal("Submit accepted an event without a token")
	}
	_ = bson.Raw(want)
}

// TestPerDocumentKeylessEventIsBarrier: under per_document, an event without
// a key (a drop or rename) is sent only after every earlier event is done,
// and later events only after it is done.
func TestPerDocumentKeylessEventIsBarrier(t *testing.T) {
	gate := make(chan struct{})
	started0 := make(chan struct{}, 1)
	var mu sync.Mutex
	var events []string // "start:N" and "end:N" in the receiver's order
	record := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	rc := newReceiver(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := seqOf(t, body)
		record(fmt.Sprintf("start:%d", n))
		if n == 0 {
			started0 <- struct{}{}
			<-gate
		}
		record(fmt.Sprintf("end:%d", n))
		w.WriteHeader(http.StatusOK)
	})
	d := newTestDispatcher(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: rc.srv.URL}, Ordering: triggers.PerDocument, Concurrency: 4}, nil)
	ctx := context.Background()
	for i := range 4 {
		if err := d.Submit(ctx, testEvent(t, i, fmt.Sprintf("k%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	<-started0
	barrier := make(chan error, 1)
	go func() { barrier <- d.Submit(ctx, testEvent(t, 4, "")) }()
	close(gate)
	if err := <-barrier; err != nil {
		t.Fatalf("submit barrier: %v", err)
	}
	for i := 5; i < 8; i++ {
		if err := d.Submit(ctx, testEvent(t, i, fmt.Sprintf("k%d", i%4))); err != nil {
			t.Fatal(err)
		}
	}
	closeWithin(t, d, 10*time.Second)

	mu.Lock()
	defer mu.Unlock()
	pos := map[string]int{}
	for i, e := range events {
		pos[e] = i
	}
	for i := range 4 {
		if pos["start:4"] < pos[fmt.Sprintf("end:%d", i)] {
			t.Errorf("barrier sent before event %d was done: %v", i, events)
		}
	}
	for i := 5; i < 8; i++ {
		if pos[fmt.Sprintf("start:%d", i)] < pos["end:4"] {
			t.Errorf("event %d sent before the barrier was done: %v", i, events)
		}
	}
}

// TestMetricsDeliveryBatchMatchesDelivery: recording a batch's outcomes at
// once gives the same series and Counts as recording each event.
func TestMetricsDeliveryBatchMatchesDelivery(t *testing.T) {
	secs := []float64{0.001, 0.02, -1, 0.3, 7, 0.004}
	regOne, regBatch := prometheus.NewRegistry(), prometheus.NewRegistry()
	one, batch := NewMetrics(regOne), NewMetrics(regBatch)
	for _, m := range []*Metrics{one, batch} {
		m.Init("orders")
	}
	for _, s := range secs {
		one.delivery("orders", OutcomeDelivered, s)
	}
	for range 3 {
		one.delivery("orders", OutcomeFailed, -1)
	}
	batch.deliveryBatch("orders", OutcomeDelivered, len(secs), func(i int) float64 { return secs[i] })
	batch.deliveryBatch("orders", OutcomeFailed, 3, nil)
	batch.deliveryBatch("orders", OutcomeDropped, 0, nil)
	var nilMetrics *Metrics
	nilMetrics.deliveryBatch("orders", OutcomeDelivered, 2, nil) // records nothing, does not panic
	famsOne, err := regOne.Gather()
	if err != nil {
		t.Fatal(err)
	}
	famsBatch, err := regBatch.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got, want := flatten(famsBatch), flatten(famsOne)
	if !maps.Equal(got, want) {
		t.Fatalf("batch series %v, want %v", got, want)
	}
	if want[`changehook_deliveries_total{outcome="delivered",trigger="orders"}`] != 6 || want[`changehook_delivery_duration_seconds_count{trigger="orders"}`] != 5 {
		t.Fatalf("unexpected per-event series: %v", want)
	}
	sum := func(fams []*dto.MetricFamily) float64 {
		for _, f := range fams {
			if f.GetName() == "changehook_delivery_duration_seconds" {
				return f.GetMetric()[0].GetHistogram().GetSampleSum()
			}
		}
		t.Fatal("no duration histogram")
		return 0
	}
	if s1, s2 := sum(famsOne), sum(famsBatch); s1 != s2 {
		t.Fatalf("batch duration sum %v, want %v", s2, s1)
	}
	if c1, c2 := one.Counts("orders"), batch.Counts("orders"); !maps.Equal(c1.Deliveries, c2.Deliveries) {
		t.Fatalf("batch counts %v, want %v", c2.Deliveries, c1.Deliveries)
	}
}

// connCountingServer returns a webhook endpoint answering 204 and the
// number of its connections open now, as the server sees them.
func connCountingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	open := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, open
}

// waitOpenConns waits, for at most 10 s, until open is want; the server
// sees a connection the client closed as closed a moment later.
func waitOpenConns(t *testing.T, open *atomic.Int64, want int64, after string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for open.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d webhook connections open after %s, want %d", open.Load(), after, want)
		}
		runtime.Gosched()
	}
}

// TestCloseClosesIdleConnections: a closed dispatcher (a pause, a reload, a
// lease handoff) closes the keep-alive connections it opened, through the
// direct transport and through net/http alike, instead of leaving them to
// their idle timeout while its successor opens its own.
func TestCloseClosesIdleConnections(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{{"direct transport", nil}, {"net/http", []Option{withNetHTTPOnly()}}} {
		t.Run(tc.name, func(t *testing.T) {
			srv, open := connCountingServer(t)
			trig := &triggers.Trigger{Name: "orders", Webhook: triggers.Webhook{URL: srv.URL}, Ordering: triggers.None, Concurrency: 4}
			d := newTestDispatcher(t, trig, &memSink{}, tc.opts...)
			for i := range 40 {
				if err := d.Submit(context.Background(), testEvent(t, i, fmt.Sprint(i))); err != nil {
					t.Fatal(err)
				}
			}
			closeWithin(t, d, 10*time.Second)
			waitOpenConns(t, open, 0, "Close")
		})
	}
}

// TestSenderCloseIdleConnections: a Sender's CloseIdleConnections closes
// the connections its own transport kept after its deliveries (direct and
// net/http), and the Sender delivers again afterwards; a client given with
// WithHTTPClient is the caller's and keeps its connection.
func TestSenderCloseIdleConnections(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     func() []Option
		wantKept int64
	}{
		{"direct transport", func() []Option { return nil }, 0},
		{"net/http", func() []Option { return []Option{withNetHTTPOnly()} }, 0},
		{"caller's client", func() []Option { return []Option{WithHTTPClient(&http.Client{Transport: &http.Transport{}})} }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, open := connCountingServer(t)
			s := newTestSender(t, &triggers.Trigger{Webhook: triggers.Webhook{URL: srv.URL}}, tc.opts()...)
			for round := range 2 {
				for i := range 3 {
					if _, err := s.Deliver(context.Background(), testEvent(t, i, fmt.Sprint(i))); err != nil {
						t.Fatalf("round %d, delivery %d: %v", round, i, err)
					}
				}
				if open.Load() != 1 {
					t.Fatalf("round %d: %d connections open after sequential deliveries, want 1 kept alive", round, open.Load())
				}
				s.CloseIdleConnections()
				waitOpenConns(t, open, tc.wantKept, "CloseIdleConnections")
			}
		})
	}
}
