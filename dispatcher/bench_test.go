package dispatcher

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/proccpu"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
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

// BenchmarkDeliverBatched is BenchmarkDeliver for a batched trigger
// (batch.max_events 100) with change events shaped like the end-to-end
// benchmark's (a wallTime, a document with a date, a double and an array).
// It reports events/s and the process's CPU µs per event (dispatcher and
// the in-process receiver together). Its events cycle over 1,024 documents,
// so per_document chains an event behind an earlier one of its document
// while that one is held; per_document_unique_keys gives every submitted
// event a document of its own, as a backlog of inserts does.
func BenchmarkDeliverBatched(b *testing.B) {
	for _, v := range []struct {
		name   string
		mode   triggers.Ordering
		unique bool
	}{
		{string(triggers.PerDocument), triggers.PerDocument, false},
		{string(triggers.None), triggers.None, false},
		{string(triggers.PerDocument) + "_unique_keys", triggers.PerDocument, true},
	} {
		b.Run(v.name, func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(http.StatusNoContent)
			}))
			b.Cleanup(srv.Close)
			d, err := New(&triggers.Trigger{
				Name:        "bench",
				Webhook:     triggers.Webhook{URL: srv.URL, Secrets: []triggers.Secret{testSecret}},
				Retry:       triggers.RetryPolicy{MaxAttempts: 3},
				Ordering:    v.mode,
				Concurrency: 16,
				Batch:       &triggers.BatchPolicy{MaxEvents: 100},
			}, nil)
			if err != nil {
				b.Fatal(err)
			}
			events := make([]Event, 1024)
			for i := range events {
				events[i] = benchChangeEvent(b, i)
			}
			// With unique keys, each submitted event's documentKey bytes
			// (made before the timer), its key made from them in the loop
			// as the watch loop makes it.
			var ns, docKeys []byte
			var docKeyEnd []int
			if v.unique {
				ns = benchRaw(b, bson.D{{Key: "db", Value: "bench"}, {Key: "coll", Value: "orders"}})
				docKeyEnd = make([]int, b.N)
				for i := range docKeyEnd {
					docKeys = append(docKeys, benchRaw(b, bson.D{{Key: "_id", Value: int64(i)}})...)
					docKeyEnd[i] = len(docKeys)
				}
			}
			ctx := context.Background()
			b.ReportAllocs()
			cpu0 := proccpu.Self()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				ev := events[i%len(events)]
				if docKeyEnd != nil {
					dk := docKeys[:docKeyEnd[i]]
					if i > 0 {
						dk = dk[docKeyEnd[i-1]:]
					}
					ev.Key = DocumentKey(ns, dk)
				}
				if err := d.Submit(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			if err := d.Close(cctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			b.ReportMetric(float64((proccpu.Self()-cpu0).Microseconds())/float64(b.N), "cpu-µs/event")
		})
	}
}

// benchChangeEvent is insert event n as devdb sends it for the end-to-end
// benchmark's documents.
func benchChangeEvent(t testing.TB, n int) Event {
	t.Helper()
	tok, err := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("8264A1B2C3%08X2B042C0100296E5A1004", n)}})
	if err != nil {
		t.Fatal(err)
	}
	id := bson.NewObjectIDFromTimestamp(time.Unix(1_700_000_000+int64(n), 0))
	raw, err := bson.Marshal(bson.D{
		{Key: "_id", Value: bson.Raw(tok)},
		{Key: "operationType", Value: "insert"},
		{Key: "clusterTime", Value: bson.Timestamp{T: 1_700_000_000, I: uint32(n)}},
		{Key: "wallTime", Value: bson.DateTime(1_700_000_000_000 + int64(n))},
		{Key: "fullDocument", Value: bson.D{
			{Key: "_id", Value: id}, {Key: "seq", Value: int64(n)}, {Key: "customer", Value: fmt.Sprintf("customer-%d", n%1000)},
			{Key: "qty", Value: int32(n % 100)}, {Key: "price", Value: float64(n%1000) / 10},
			{Key: "tags", Value: bson.A{"bench", "changehook"}}, {Key: "updatedAt", Value: bson.DateTime(1_700_000_000_000 + int64(n))},
		}},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "bench"}, {Key: "coll", Value: "orders"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: id}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return Event{Raw: raw, Token: tok, Key: sk("k" + strconv.Itoa(n))}
}

// BenchmarkScrubBody measures masking a kept response body's secrets
// (Sender.scrubBody) for a webhook with a header, basic auth, a query
// value and a signing key: a short 2xx body and a 4 KiB error page without
// a secret (the common cases: no allocation), and one echoing the secrets.
func BenchmarkScrubBody(b *testing.B) {
	s, err := NewSender(&triggers.Trigger{Name: "bench", Webhook: triggers.Webhook{
		URL:     "https://hooks.example.com/in?token=qu3ryv4lue",
		Headers: map[string]triggers.Secret{"X-Api-Key": "h3adervalue"},
		Auth:    &triggers.Auth{Basic: &triggers.BasicAuth{Username: "alice", Password: "pa55word"}},
		Secrets: []triggers.Secret{testSecret},
	}})
	if err != nil {
		b.Fatal(err)
	}
	page := strings.Repeat("<p>Bad request: the payload is not what this endpoint expects.</p>\n", respBodyLimit/70)
	for _, bc := range []struct{ name, body string }{
		{"short", `{"ok":true}`},
		{"4KiB_clean", page},
		{"4KiB_echo", page[:len(page)-40] + "X-Api-Key: h3adervalue token=qu3ryv4lue"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = s.scrubBody(bc.body, "", "")
			}
		})
	}
}

// BenchmarkScrubCut measures masking a body cut at respBodyLimit
// (scrubCut, what scrubBody does with a body longer than that) for a
// webhook with 16 header secrets: a 4 KiB body without a secret, and one
// that echoes a secret all along (an echo endpoint, an error page quoting
// the request), whose cost must stay linear in the body.
func BenchmarkScrubCut(b *testing.B) {
	forms := sixteenHeaderSecretForms(b)
	for _, bc := range []struct{ name, body string }{
		{"4KiB_clean", strings.Repeat("<p>Bad request: not what this endpoint expects.</p>\n", 1+2*respBodyLimit/52)},
		{"4KiB_echo", strings.Repeat("Sk07Qm2Lp8Zr7Tq1VwXk39 ", 1+2*respBodyLimit/24)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = scrubCut(bc.body, respBodyLimit, forms)
			}
		})
	}
}

// benchRaw is d marshalled.
func benchRaw(t testing.TB, d bson.D) []byte {
	t.Helper()
	raw, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
