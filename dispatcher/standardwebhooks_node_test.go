package dispatcher

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/internal/mql"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// These tests verify changehook's requests with the official Standard
// Webhooks library for Node.js (npm package "standardwebhooks"), the one
// README tells receivers works as is. Like devdb's Node.js client tests they
// skip unless DEVDB_NODE_MODULES names a node_modules directory holding the
// package (.ci/run installs it there):
//
//	npm install --prefix /tmp/devdb-clients standardwebhooks@1.3.0
//	DEVDB_NODE_MODULES=/tmp/devdb-clients/node_modules go test ./dispatcher -run TestStandardWebhooksNode

// standardWebhooksNode returns the node executable and the node_modules
// directory named by DEVDB_NODE_MODULES, or skips the test unless node and
// the standardwebhooks package are installed.
func standardWebhooksNode(t *testing.T) (node, mods string) {
	t.Helper()
	mods = os.Getenv("DEVDB_NODE_MODULES")
	if mods == "" {
		t.Skip("DEVDB_NODE_MODULES is not set (see devdb/README.md): the standardwebhooks library check is skipped")
	}
	if _, err := os.Stat(mods); err != nil {
		t.Skipf("DEVDB_NODE_MODULES: %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	if _, err := os.Stat(filepath.Join(mods, "standardwebhooks")); err != nil {
		t.Skipf("the standardwebhooks package is not installed in %s", mods)
	}
	return node, mods
}

// swRequest is one request as a receiver got it.
type swRequest struct {
	header http.Header
	body   []byte
}

// swReceiver is an httptest endpoint that records every request and answers
// the n-th (from 0) with status(n).
type swReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []swRequest
	status func(n int) int
}

func newSWReceiver(t *testing.T, status func(n int) int) *swReceiver {
	t.Helper()
	rc := &swReceiver{status: status}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rc.mu.Lock()
		n := len(rc.reqs)
		rc.reqs = append(rc.reqs, swRequest{header: r.Header.Clone(), body: body})
		rc.mu.Unlock()
		code := http.StatusNoContent
		if rc.status != nil {
			code = rc.status(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *swReceiver) requests() []swRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]swRequest(nil), rc.reqs...)
}

// swEvent builds an insert event with the resume token {_data: tok} whose
// fullDocument is {_id: tok} followed by doc.
func swEvent(t *testing.T, tok string, doc bson.D) Event {
	t.Helper()
	token := mustMarshal(t, bson.D{{Key: "_data", Value: tok}})
	raw := mustMarshal(t, bson.D{
		{Key: "_id", Value: bson.Raw(token)},
		{Key: "operationType", Value: "insert"},
		{Key: "clusterTime", Value: bson.Timestamp{T: 1767323045, I: 1}},
		{Key: "wallTime", Value: bson.DateTime(1767323045123)},
		{Key: "ns", Value: bson.D{{Key: "db", Value: "shop"}, {Key: "coll", Value: "orders"}}},
		{Key: "documentKey", Value: bson.D{{Key: "_id", Value: tok}}},
		{Key: "fullDocument", Value: append(bson.D{{Key: "_id", Value: tok}}, doc...)},
	})
	return Event{Raw: raw, Token: token, Key: sk(tok)}
}

// swCheck is one verify() call for the Node.js script.
type swCheck struct {
	Name     string            `json:"name"`
	Secret   string            `json:"secret"`
	Headers  map[string]string `json:"headers"`
	Body     string            `json:"body"`
	AsString bool              `json:"asString"`

	wantOK     bool
	wantParsed string
}

// swResult is the script's verdict on one swCheck.
type swResult struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Error  string `json:"error"`
	Parsed string `json:"parsed"`
}

// nodeHeaders returns h as Node's http module presents request headers to
// a handler: lower-case names, repeated values joined with ", ".
func nodeHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	return out
}

// runStandardWebhooks runs every check through the library's
// Webhook(secret).verify(payload, headers) and returns the results in
// order.
func runStandardWebhooks(t *testing.T, node, mods string, checks []swCheck) []swResult {
	t.Helper()
	in, err := json.Marshal(checks)
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "node", "standardwebhooks.js"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err != nil || len(lines) != 2 || lines[1] != "ok" {
		t.Fatalf("node %s: %v\n%s\n%s", script, err, out, stderr.Bytes())
	}
	var res []swResult
	if err := json.Unmarshal([]byte(lines[0]), &res); err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, lines[0])
	}
	if len(res) != len(checks) {
		t.Fatalf("node %s: %d results for %d checks", script, len(res), len(checks))
	}
	return res
}

// TestStandardWebhooksNode sends single events, batches, every format, large
// and non-ASCII bodies, retried and redelivered events, rotated keys and
// custom headers through the Sender, and verifies every request the
// endpoint got with the official standardwebhooks library: with each
// configured key (with and without its "whsec_" prefix, the body as bytes
// and as text) it must verify, and with another key or a body changed by
// one byte it must not.
func TestStandardWebhooksNode(t *testing.T) {
	node, mods := standardWebhooksNode(t)

	seq := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(250 - 7*i) // '+' and '/' in the base64, and padding for some n
		}
		return b
	}
	k24 := triggers.Secret(testSecret)
	k25 := triggers.Secret("whsec_" + base64.StdEncoding.EncodeToString(seq(25)))
	k64 := triggers.Secret("whsec_" + base64.StdEncoding.EncodeToString(seq(64)))
	other := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another key of 32 bytes, unused!"))

	text := bson.D{
		{Key: "name", Value: "Zoë 🍎 naïve 日本語 ½ \u2028 \"quoted\" <&>"},
		{Key: "emoji", Value: "👩‍👩‍👧‍👦🏳️‍🌈"},
		{Key: "invalid", Value: "a\xffb\xc3"}, // invalid UTF-8, sent as \ufffd
		{Key: "big", Value: int64(9007199254740993)},
	}
	large := bson.D{{Key: "blob", Value: strings.Repeat("é🍎x", 1<<18)}} // about 2 MiB
	slack, err := mql.CompileExpr(bson.D{{Key: "text", Value: bson.D{{Key: "$concat", Value: bson.A{"New order ", "$fullDocument.name"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	fastRetry := triggers.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}

	type sent struct {
		name    string
		secrets []triggers.Secret
		reqs    []swRequest
		batch   bool
	}
	var all []sent
	deliver := func(name string, w triggers.Webhook, retry triggers.RetryPolicy, status func(int) int, evs ...Event) []swRequest {
		t.Helper()
		rc := newSWReceiver(t, status)
		w.URL = rc.srv.URL
		s, err := NewSender(&triggers.Trigger{Name: "orders", Webhook: w, Retry: retry})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(evs) == 1 {
			_, err = s.Deliver(context.Background(), evs[0])
		} else {
			_, err = s.DeliverBatch(context.Background(), evs)
		}
		if err != nil {
			t.Fatalf("%s: deliver: %v", name, err)
		}
		reqs := rc.requests()
		all = append(all, sent{name: name, secrets: w.Secrets, reqs: reqs, batch: len(evs) > 1})
		return reqs
	}
	one := []triggers.Secret{k24}
	ev1, ev2, ev3 := swEvent(t, "8201", text), swEvent(t, "8202", bson.D{{Key: "n", Value: 2}}), swEvent(t, "8203", text)

	deliver("json", triggers.Webhook{Secrets: one}, fastRetry, nil, ev1)
	deliver("canonical", triggers.Webhook{Secrets: one, Format: triggers.FormatCanonical}, fastRetry, nil, ev1)
	deliver("cloudevents", triggers.Webhook{Secrets: one, Format: triggers.FormatCloudEvents}, fastRetry, nil, ev1)
	deliver("cloudevents-binary", triggers.Webhook{Secrets: one, Format: triggers.FormatCloudEventsBinary}, fastRetry, nil, ev1)
	deliver("payload", triggers.Webhook{Secrets: one, Payload: slack}, fastRetry, nil, ev1)
	deliver("large", triggers.Webhook{Secrets: one}, fastRetry, nil, swEvent(t, "8204", large))
	deliver("batch", triggers.Webhook{Secrets: one}, fastRetry, nil, ev1, ev2, ev3)
	deliver("batch canonical", triggers.Webhook{Secrets: one, Format: triggers.FormatCanonical}, fastRetry, nil, ev1, ev2, ev3)
	deliver("batch cloudevents", triggers.Webhook{Secrets: one, Format: triggers.FormatCloudEvents}, fastRetry, nil, ev1, ev2, ev3)
	deliver("batch payload", triggers.Webhook{Secrets: one, Payload: slack}, fastRetry, nil, ev1, ev2, ev3)
	deliver("rotation", triggers.Webhook{Secrets: []triggers.Secret{k24, k25, k64}}, fastRetry, nil, ev1)
	deliver("batch rotation", triggers.Webhook{Secrets: []triggers.Secret{k64, k25}}, fastRetry, nil, ev1, ev2)
	deliver("headers", triggers.Webhook{Secrets: one, Headers: map[string]triggers.Secret{
		"X-Api-Key": "k3y", "X-Tenant": "eu-west", "Ce-Tenant": "eu-west",
	}}, fastRetry, nil, ev1)
	retried := deliver("retries", triggers.Webhook{Secrets: one}, fastRetry, func(n int) int {
		if n < 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	}, ev1)
	batchRetried := deliver("batch retries", triggers.Webhook{Secrets: one}, fastRetry, func(n int) int {
		if n < 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}, ev1, ev2)
	again := deliver("redelivery", triggers.Webhook{Secrets: one}, fastRetry, nil, ev1)

	if len(retried) != 3 || len(batchRetried) != 2 {
		t.Fatalf("%d requests for the retried event, %d for the retried batch; want 3 and 2", len(retried), len(batchRetried))
	}
	for _, r := range [][]swRequest{retried, batchRetried, append(again, retried[0])} {
		for _, q := range r[1:] {
			if got, want := q.header.Get("Webhook-Id"), r[0].header.Get("Webhook-Id"); got != want {
				t.Errorf("webhook-id %q on a retry or redelivery of %q", got, want)
			}
		}
	}

	var checks []swCheck
	for _, s := range all {
		if len(s.reqs) == 0 {
			t.Fatalf("%s: the endpoint got no request", s.name)
		}
		parsed := "object"
		if s.batch {
			parsed = "array"
		}
		for i, q := range s.reqs {
			h := nodeHeaders(q.header)
			body := base64.StdEncoding.EncodeToString(q.body)
			name := func(what string) string { return s.name + " #" + strconv.Itoa(i+1) + ": " + what }
			for k, secret := range s.secrets {
				key := secret.Reveal()
				for _, form := range []struct{ what, secret string }{{"", key}, {" without whsec_", strings.TrimPrefix(key, "whsec_")}} {
					for _, asString := range []bool{false, true} {
						what := "key " + strconv.Itoa(k+1) + form.what
						if asString {
							what += ", body as text"
						}
						checks = append(checks, swCheck{Name: name(what), Secret: form.secret, Headers: h, Body: body, AsString: asString, wantOK: true, wantParsed: parsed})
					}
				}
			}
			checks = append(checks, swCheck{Name: name("another key"), Secret: other, Headers: h, Body: body})
			tampered := append(bytes.Clone(q.body), ' ')
			checks = append(checks, swCheck{Name: name("body changed"), Secret: s.secrets[0].Reveal(), Headers: h, Body: base64.StdEncoding.EncodeToString(tampered)})
		}
	}
	for i, r := range runStandardWebhooks(t, node, mods, checks) {
		c := checks[i]
		switch {
		case c.wantOK && !r.OK:
			t.Errorf("%s: standardwebhooks rejects the request: %s\nheaders %v", c.Name, r.Error, c.Headers)
		case c.wantOK && r.Parsed != c.wantParsed:
			t.Errorf("%s: verify() returned %s, want %s", c.Name, r.Parsed, c.wantParsed)
		case !c.wantOK && r.OK:
			t.Errorf("%s: standardwebhooks accepts the request", c.Name)
		case !c.wantOK && r.Error != "No matching signature found":
			t.Errorf("%s: standardwebhooks rejects it with %q, want %q", c.Name, r.Error, "No matching signature found")
		}
	}
}
