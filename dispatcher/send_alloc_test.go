package dispatcher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"github.com/changehook/changehook/triggers"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestWebhookIDMatchesReference pins WebhookID to its definition (a
// streaming SHA-256 over trigger, NUL, token), including names and tokens
// longer than its stack buffer.
func TestWebhookIDMatchesReference(t *testing.T) {
	ref := func(trigger string, token bson.Raw) string {
		h := sha256.New()
		h.Write([]byte(trigger))
		h.Write([]byte{0})
		h.Write(token)
		return "msg_" + webhookIDEncoding.EncodeToString(h.Sum(nil)[:16])
	}
	long := strings.Repeat("x", 300)
	for _, trig := range []string{"", "orders", long} {
		for _, tok := range []bson.Raw{nil, mustMarshal(t, bson.D{{Key: "_data", Value: "826A"}}), mustMarshal(t, bson.D{{Key: "_data", Value: long}})} {
			if got, want := WebhookID(trig, tok), ref(trig, tok); got != want {
				t.Fatalf("WebhookID(%d-byte trigger, %d-byte token) = %s, want %s", len(trig), len(tok), got, want)
			}
		}
	}
}

// TestSignerReuse checks that a reused signer (pooled HMAC states) gives the
// signatures of fresh HMACs, message after message.
func TestSignerReuse(t *testing.T) {
	keys := [][]byte{[]byte("first-key"), []byte("second key, longer than the sha256 block size of 64 bytes ........")}
	ref := func(id, ts string, body []byte) string {
		var parts []string
		for _, k := range keys {
			m := hmac.New(sha256.New, k)
			m.Write([]byte(id + "." + ts + "."))
			m.Write(body)
			parts = append(parts, "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
		}
		return strings.Join(parts, " ")
	}
	s := newSigner(keys)
	for i := range 5 {
		id, ts := "msg_"+strings.Repeat("a", i*20), strconv.Itoa(1614265330+i)
		body := []byte(strings.Repeat("{}", i*100))
		if gotTS, got := s.stamp(id, int64(1614265330+i), body); gotTS != ts || got != ref(id, ts, body) {
			want := ref(id, ts, body)
			t.Fatalf("message %d: stamp = %s %s, want %s %s", i, gotTS, got, ts, want)
		}
		if got, want := signWithKeys(keys, id, time.Unix(1614265330+int64(i), 0), body), ref(id, ts, body); got != want {
			t.Fatalf("message %d: signWithKeys = %s, want %s", i, got, want)
		}
	}
}

// TestHeaderMatchesCloneAndSet checks that an attempt's header
// is exactly what Clone plus Set would build, and does not share value
// slices with the base header.
func TestHeaderMatchesCloneAndSet(t *testing.T) {
	for _, secrets := range [][]triggers.Secret{nil, {testSecret}} {
		s, err := NewSender(&triggers.Trigger{
			Name:    "hdr",
			Webhook: triggers.Webhook{URL: "http://127.0.0.1:1/x", Secrets: secrets, Headers: map[string]triggers.Secret{"authorization": "Bearer t", "X-Extra": "1"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(1700000000, 0)
		body := []byte(`{"a":1}`)
		got := s.header("msg_abc", now, body, nil)
		want := s.baseHeader.Clone()
		want.Set("webhook-id", "msg_abc")
		want.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		if len(s.keys) > 0 {
			want.Set("webhook-signature", signWithKeys(s.keys, "msg_abc", now, body))
		}
		if len(got) != len(want) {
			t.Fatalf("header %v, want %v", got, want)
		}
		for k, v := range want {
			if g := got[k]; len(g) != len(v) || strings.Join(g, "\x00") != strings.Join(v, "\x00") {
				t.Fatalf("header %s = %q, want %q", k, g, v)
			}
		}
		got["User-Agent"] = append(got["User-Agent"], "more")
		if len(s.baseHeader["User-Agent"]) != 1 {
			t.Fatal("first header shares value storage with the base header")
		}
	}
}
