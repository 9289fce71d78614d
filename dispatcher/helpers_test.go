package dispatcher

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// fakeClock is a virtual clock: Sleep returns at once (unless ctx is done)
// and advances Now by the requested duration, recording it.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	sleeps  []time.Duration
	onSleep func(n int) // called (without the lock) before the n-th sleep returns, n from 1
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	n, hook := len(c.sleeps), c.onSleep
	c.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return ctx.Err()
}

func (c *fakeClock) Sleeps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.sleeps...)
}

// memSink is an in-memory DeadLetterSink.
type memSink struct {
	mu   sync.Mutex
	dls  []DeadLetter
	fail int // fail this many calls first
}

func (s *memSink) PutDeadLetter(_ context.Context, dl DeadLetter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail > 0 {
		s.fail--
		return errors.New("sink unavailable")
	}
	s.dls = append(s.dls, dl)
	return nil
}

func (s *memSink) All() []DeadLetter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]DeadLetter(nil), s.dls...)
}

// testEvent builds a change event with a resume token {_data: "<hex of n>"}
// and documentKey {_id: key}.
func testEvent(t testing.TB, n int, key string) Event {
	t.Helper()
	tok, err := bson.Marshal(bson.D{{Key: "_data", Value: fmt.Sprintf("82%08X", n)}})
	if err != nil {
		t.Fatalf("marshal token: %v", err)
	}
	raw, err := bson.Marshal(bson.D{
		{Key: "_id", Value: bson.Raw(tok)},
		{Key: "operationType", Value: "insert"},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "orders"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: key}}},
		{Key: "fullDocument", Value: bson.D{{Key: "_id", Value: key}, {Key: "seq", Value: int32(n)}}},
	})
	if err != nil {
		t.Fatalf("marshal event: %v", err)
	}
	return Event{Raw: raw, Token: tok, Key: sk(key)}
}

// seqOf extracts fullDocument.seq from a delivered relaxed-JSON body.
func seqOf(t testing.TB, body []byte) int {
	t.Helper()
	var doc bson.D
	if err := bson.UnmarshalExtJSON(body, false, &doc); err != nil {
		t.Fatalf("delivered body is not Extended JSON: %v: %s", err, body)
	}
	v, err := bson.Raw(mustMarshal(t, doc)).LookupErr("fullDocument", "seq")
	if err != nil {
		t.Fatalf("delivered body has no fullDocument.seq: %s", body)
	}
	return int(v.Int32())
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := bson.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// verifySignature is an independent Standard Webhooks v1 verifier, written
// from the specification: the signed content is "id.timestamp.body", the key
// is the base64 part of the "whsec_" secret, the header holds
// space-separated "v1,<base64 signature>" entries, and the timestamp must be
// within tolerance of now.
func verifySignature(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, tsText, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || tsText == "" || sigs == "" {
		return errors.New("missing webhook headers")
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("bad timestamp: %w", err)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("timestamp outside tolerance: %v", d)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return fmt.Errorf("bad secret: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + tsText + "." + string(body)))
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no matching signature")
}

// runtimeGosched yields the processor.
func runtimeGosched() { runtime.Gosched() }

// sk is the ordering key of a test's document named s (NoKey for "").
func sk(s string) Key {
	if s == "" {
		return NoKey
	}
	return DocumentKey(nil, []byte(s))
}
