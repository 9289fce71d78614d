package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// payloadConfig is the trigger of the finding 2 with the given
// text expression.
func payloadConfig(uri, url, text string) string {
	return baseConfig(uri, url) + fmt.Sprintf(`
  - name: orders
    database: e2e
    collection: orders
    operations: [insert]
    webhook:
      payload: { id: "$fullDocument._id", text: %s }
`, text)
}

// pausedTrigger is the part of /api/triggers this test reads.
type pausedTrigger struct {
	Name   string `json:"name"`
	State  string `json:"state"`
	Paused *struct {
		Reason string `json:"reason"`
		By     string `json:"by"`
	} `json:"paused"`
	Deliveries map[string]uint64 `json:"deliveries"`
	Attempts   map[string]uint64 `json:"attempts"`
}

// TestPayloadErrorsPauseTheTrigger (finding 2): a payload with a number in
// $concat fails on every event. The first 9 are dead-lettered with
// reason payload_error and counted as attempts; the 10th pauses the trigger
// (visible in /api/triggers, /readyz and the metrics) and is held; nothing
// is skipped: after the configuration is fixed and changehook restarted,
// the held event and every later one are delivered. Each payload error
// leaves a record in the delivery history.
func TestPayloadErrorsPauseTheTrigger(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "orders.yaml", payloadConfig(srv.URI(), rc.URL(), `{ $concat: ["Order total: ", "$fullDocument.total"] }`))
	if code, out, errOut := runCLI(t, "validate", "-c", cfg); code != 0 {
		t.Fatalf("validate = %d (the error is only knowable with data)\n%s%s", code, out, errOut)
	}
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	ctx := context.Background()
	c := client.Database("e2e").Collection("orders")
	const n = 20
	for i := 1; i <= n; i++ {
		if _, err := c.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("o%02d", i)}, {Key: "total", Value: 10 * i}}); err != nil {
			t.Fatal(err)
		}
	}
	var st pausedTrigger
	r.waitAdmin("/api/triggers", func(_ int, body []byte) bool {
		var resp struct {
			Triggers []pausedTrigger `json:"triggers"`
		}
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatalf("/api/triggers: %v", err)
		}
		st = resp.Triggers[0]
		return st.State == "paused"
	})
	if st.Paused == nil || st.Paused.By != "payload_errors" ||
		!strings.Contains(st.Paused.Reason, "10 consecutive payload errors") || !strings.Contains(st.Paused.Reason, "$concat") {
		t.Fatalf("paused = %+v, want by payload_errors with the reason", st.Paused)
	}
	if strings.Count(st.Paused.Reason, "build payload") != 1 || strings.Contains(st.Paused.Reason, "deliver msg_") {
		t.Errorf("the pause reason repeats itself: %q", st.Paused.Reason)
	}
	if st.Deliveries["dead_lettered"] != 9 || st.Attempts["payload_error"] != 10 {
		t.Fatalf("deliveries %v attempts %v; want 9 dead-lettered and 10 payload_error attempts", st.Deliveries, st.Attempts)
	}
	code, body := r.get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "trigger orders: paused by payload_errors: 10 consecutive payload errors") {
		t.Fatalf("/readyz = %d %s; a pause nobody asked for is unready", code, body)
	}
	_, metrics := r.get("/metrics")
	if !strings.Contains(string(metrics), `changehook_delivery_attempts_total{reason="payload_error",trigger="orders"} 10`) {
		t.Fatalf("/metrics lacks the payload_error attempts:\n%s", grepLines(string(metrics), "attempts_total"))
	}
	if got := rc.deliveries(); len(got) != 0 {
		t.Fatalf("the endpoint got %d requests from a payload that cannot be built", len(got))
	}
	if code, out, _ := runCLI(t, "dlq", "list", "-c", cfg); code != 0 || strings.Count(out, "payload_error") != 9 {
		t.Fatalf("dlq list = %d, want 9 payload_error dead letters\n%s", code, out)
	}
	// Every payload error, sent to no endpoint, leaves a history record
	// with the event's document key.
	hbody := r.waitAdmin("/api/history?trigger=orders", func(_ int, b []byte) bool { return len(apiHistory(t, b)) >= 10 })
	recs := apiHistory(t, hbody)
	keys := map[string]bool{}
	for _, a := range recs {
		var key struct {
			ID string `json:"_id"`
		}
		_ = json.Unmarshal(a.DocumentKey, &key)
		keys[key.ID] = true
		if a.Kind != "delivery" || a.Reason != "payload_error" || !a.Failed || a.Status != 0 || a.Attempt != 1 || !strings.Contains(a.Error, "$concat") || a.Operation != "insert" {
			t.Errorf("history record %+v, want a failed payload_error attempt", a)
		}
	}
	if len(recs) != 10 || !keys["o01"] || !keys["o10"] || len(keys) != 10 {
		t.Errorf("history of orders: %d records for %d documents, want one for each of o01..o10:\n%s", len(recs), len(keys), hbody)
	}
	if code := r.stop(); code != 0 {
		t.Fatalf("changehook exited %d", code)
	}

	// Fix the configuration and restart: the held event (o10) and every
	// later one are delivered; nothing is skipped.
	writeFile(t, dir, "orders.yaml", payloadConfig(srv.URI(), rc.URL(), `{ $concat: ["Order total: ", { $toString: "$fullDocument.total" }] }`))
	r = startRunner(t, runArgs(cfg)...)
	r.waitReady()
	got := rc.waitFor(t, "o10 to o20", func(ds []delivery) bool { return len(ds) >= n-9 })
	seen := map[string]bool{}
	for _, d := range got {
		id, _ := lookup(d.Event, "id").(string)
		seen[id] = true
		if text := lookup(d.Event, "text"); !strings.HasPrefix(fmt.Sprint(text), "Order total: ") {
			t.Errorf("delivered text = %v", text)
		}
	}
	for i := 10; i <= n; i++ {
		if id := fmt.Sprintf("o%02d", i); !seen[id] {
			t.Errorf("%s was not delivered after the fix (delivered: %v)", id, seen)
		}
	}
	if code, body := r.get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz after the fix = %d %s", code, body)
	}
}
