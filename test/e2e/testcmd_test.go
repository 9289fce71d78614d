package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestTestSend: `changehook test --send` delivers the event once, signed,
// with the trigger's retry policy, and reports a failure with exit 1.
func TestTestSend(t *testing.T) {
	rc := newReceiver(t)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "t.yaml", baseConfig("mongodb://127.0.0.1:1/", rc.URL())+`
  - name: shop
    database: shop
    collection: stock
    operations: [update]
    match: { fullDocument.qty: { $lt: 20 } }
    webhook:
      headers: { Authorization: "Bearer top-secret" }
      payload: { text: { $concat: ["Only ", { $toString: "$fullDocument.qty" }, " left"] } }
    retry: { max_attempts: 2, initial_backoff: 1ms, max_backoff: 5ms }
`)
	event := writeFile(t, dir, "event.json", `{"_id": {"_data": "82ABCD"}, "operationType": "update",
		"ns": {"db": "shop", "coll": "stock"}, "documentKey": {"_id": 7},
		"fullDocument": {"_id": 7, "qty": {"$numberInt": "3"}}}`)

	code, out, errOut := runCLI(t, "test", "-c", cfg, "--trigger", "shop", "--event", event, "--send")
	if code != 0 || !strings.Contains(out, "delivered: HTTP 204 after 1 attempt") {
		t.Fatalf("test --send = %d\n%s%s", code, out, errOut)
	}
	got := rc.deliveries()
	if len(got) != 1 {
		t.Fatalf("%d requests, want 1", len(got))
	}
	d := got[0]
	if d.SigErr != nil || string(d.Body) != `{"text":"Only 3 left"}` || d.Header.Get("Authorization") != "Bearer top-secret" {
		t.Errorf("request: sig %v, body %s, auth %q", d.SigErr, d.Body, d.Header.Get("Authorization"))
	}
	if !strings.Contains(out, "webhook-id "+d.ID) || strings.Contains(out, "top-secret") {
		t.Errorf("output does not name the webhook-id or leaks the header:\n%s", out)
	}

	rc.setRespond(func(int, delivery, http.ResponseWriter, *http.Request) int { return http.StatusServiceUnavailable })
	code, out, _ = runCLI(t, "test", "-c", cfg, "--trigger", "shop", "--event", event, "--send")
	if code != 1 || !strings.Contains(out, "FAILED after 2 attempts: HTTP 503 (server_error)") {
		t.Errorf("test --send to a failing endpoint = %d\n%s", code, out)
	}
}
