package dispatcher

import (
	"context"
	"github.com/changehook/changehook/triggers"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkDeliver measures the whole delivery path (payload, signature,
// HTTP request with retries available, watermark) against a local receiver,
// per ordering mode. It reports events/s; -benchmem gives allocs/event
// (client and in-process server together).
func BenchmarkDeliver(b *testing.B) {
	for _, mode := range []triggers.Ordering{triggers.Strict, triggers.PerDocument, triggers.None} {
		b.Run(string(mode), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusNoContent)
			}))
			b.Cleanup(srv.Close)
			d, err := New(&triggers.Trigger{
				Name:        "bench",
				Webhook:     triggers.Webhook{URL: srv.URL, Secrets: []triggers.Secret{testSecret}},
				Retry:       triggers.RetryPolicy{MaxAttempts: 3},
				Ordering:    mode,
				Concurrency: 16,
			}, nil)
			if err != nil {
				b.Fatal(err)
			}
			events := make([]Event, 64)
			for i := range events {
				events[i] = testEvent(b, i, string(rune('a'+i%32)))
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if err := d.Submit(ctx, events[i%len(events)]); err != nil {
					b.Fatal(err)
				}
			}
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := d.Close(cctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}
