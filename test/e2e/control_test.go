package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// docIDs returns the documentKey._id of every delivery (int32 ids).
func docIDs(ds []delivery) []int32 {
	var ids []int32
	for _, d := range ds {
		key, _ := lookup(d.Event, "documentKey").(bson.D)
		switch v := lookup(key, "_id").(type) {
		case int32:
			ids = append(ids, v)
		case int64:
			ids = append(ids, int32(v))
		case float64:
			ids = append(ids, int32(v))
		}
	}
	return ids
}

func insertIDs(t *testing.T, coll *mongo.Collection, from, to int32) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: i}}); err != nil {
			t.Fatal(err)
		}
	}
}

func countDelivered(id int32) func([]delivery) bool {
	return func(ds []delivery) bool {
		for _, got := range docIDs(ds) {
			if got == id {
				return true
			}
		}
		return false
	}
}

// TestPauseAndResumeThroughTheCLI: `changehook pause` holds a running
// trigger (status paused, nothing delivered, the pause survives a restart)
// and `changehook resume` delivers everything written meanwhile, in order.
func TestPauseAndResumeThroughTheCLI(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	cfg := writeFile(t, t.TempDir(), "c.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: orders
    database: shop
    collection: orders
`)
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	coll := client.Database("shop").Collection("orders")
	insertIDs(t, coll, 1, 1)
	rc.waitFor(t, "first delivery", countDelivered(1))

	// A resume of a trigger that is not paused changes nothing and says
	// so; like a pause of a paused trigger, it is no error (exit 0, 200).
	const notPaused = "not paused or failed (state running), so nothing changed"
	code, out, errOut := runCLI(t, "resume", "-c", cfg, "orders")
	if code != 0 || out != "orders: "+notPaused+"\n" || errOut != "" {
		t.Fatalf("resume of a running trigger: code %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, "orders: "+notPaused)
	}
	resp, err := http.Post(r.admin+"/api/triggers/orders/resume", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var answer struct {
		Trigger string `json:"trigger"`
		Applied bool   `json:"applied"`
		Message string `json:"message"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || answer.Trigger != "orders" || !answer.Applied || answer.Message != notPaused {
		t.Fatalf("POST /api/triggers/orders/resume of a running trigger: %s %+v (%v); want 200 and the message %q", resp.Status, answer, err, notPaused)
	}

	code, out, errOut = runCLI(t, "pause", "-c", cfg, "orders", "--reason", "endpoint maintenance")
	if code != 0 || !strings.Contains(out, "orders: paused") {
		t.Fatalf("pause: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	r.waitAdmin("/api/triggers", func(_ int, b []byte) bool {
		tr := apiTriggers(t, b)["orders"]
		return tr.State == "paused" && !tr.StreamOpen
	})
	if code, body := r.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with a paused trigger = %d %s, want 200", code, body)
	}
	insertIDs(t, coll, 2, 4)
	// The pause is stored: it survives a restart.
	if code := r.stop(); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	r = startRunner(t, runArgs(cfg)...)
	r.waitAdmin("/api/triggers", func(_ int, b []byte) bool { return apiTriggers(t, b)["orders"].State == "paused" })
	insertIDs(t, coll, 5, 6)
	if n := len(rc.deliveries()); n != 1 {
		t.Fatalf("%d deliveries while paused, want only the first: %s", n, summary(rc.deliveries()))
	}

	code, out, errOut = runCLI(t, "resume", "-c", cfg, "orders")
	if code != 0 || out != "orders: resumed from the checkpoint\n" {
		t.Fatalf("resume: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	got := docIDs(rc.waitFor(t, "events held by the pause", countDelivered(6)))
	want := []int32{1, 2, 3, 4, 5, 6}
	if len(got) != len(want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delivered %v, want %v in order", got, want)
		}
	}
}

// TestResumeFromNowSkipsTheRecordedRange: resume --from now skips exactly
// what was written during the pause and says which range it skipped.
func TestResumeFromNowSkipsTheRecordedRange(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	cfg := writeFile(t, t.TempDir(), "c.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: orders
    database: shop
    collection: orders
`)
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	coll := client.Database("shop").Collection("orders")
	insertIDs(t, coll, 1, 1)
	rc.waitFor(t, "first delivery", countDelivered(1))
	if code, out, errOut := runCLI(t, "pause", "-c", cfg, "orders"); code != 0 {
		t.Fatalf("pause: %d %q %q", code, out, errOut)
	}
	insertIDs(t, coll, 2, 3)
	code, out, errOut := runCLI(t, "resume", "-c", cfg, "orders", "--from", "now")
	if code != 0 || !strings.Contains(out, "orders: resumed from now: checkpoint moved from ") ||
		!strings.Contains(out, ": the changes in between that were not delivered yet are left undelivered, and not dead-lettered\n") {
		t.Fatalf("resume --from now: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	r.waitReady()
	insertIDs(t, coll, 4, 4)
	got := docIDs(rc.waitFor(t, "delivery after resume", countDelivered(4)))
	if len(got) != 2 || got[0] != 1 || got[1] != 4 {
		t.Fatalf("delivered %v, want [1 4] (2 and 3 skipped)", got)
	}
}

// TestSkipUnblocksAStuckStrictTrigger: a strict dead_letter: false trigger
// stuck on an event its endpoint refuses is unblocked by `changehook skip`
// naming that event, which dead-letters exactly it (naming another event,
// the skip is refused); the next events flow.
func TestSkipUnblocksAStuckStrictTrigger(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	rc.setRespond(func(_ int, d delivery, _ http.ResponseWriter, _ *http.Request) int {
		if ids := docIDs([]delivery{d}); len(ids) == 1 && ids[0] == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	cfg := writeFile(t, t.TempDir(), "c.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: orders
    database: shop
    collection: orders
    dead_letter: false
    retry: { initial_backoff: 10ms, max_backoff: 50ms }
`)
	r := startRunner(t, runArgs(cfg, "--grace", "1s")...)
	r.waitReady()
	coll := client.Database("shop").Collection("orders")
	insertIDs(t, coll, 1, 2)
	stuck := rc.waitFor(t, "retries of the stuck event", func(ds []delivery) bool { return len(ds) >= 3 })[0].ID
	// Naming another event, the skip is refused.
	code, out, errOut := runCLI(t, "skip", "-c", cfg, "orders", "--webhook-id", "msg_other")
	if want := "changehook skip: skip orders: stuck on event " + stuck + ", not on msg_other, so nothing was skipped\n"; code != 1 || errOut != want {
		t.Fatalf("skip of another event: code %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, want)
	}
	code, out, errOut = runCLI(t, "skip", "-c", cfg, "orders", "--webhook-id", stuck)
	if code != 0 || !strings.Contains(out, "skipped and dead-lettered msg_") {
		t.Fatalf("skip: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	rc.waitFor(t, "the event after the skipped one", countDelivered(2))
	code, out, _ = runCLI(t, "dlq", "list", "-c", cfg)
	if code != 0 || !strings.Contains(out, "orders") {
		t.Fatalf("dlq list after skip: %d %q", code, out)
	}
}

// TestSkipRefusesATriggerDeliveringNormally: `changehook skip` against a
// trigger delivering a steady flow of events (like the demo's) exits 1 with
// an error naming the trigger's state and dead-letters nothing: every event
// is delivered.
func TestSkipRefusesATriggerDeliveringNormally(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	rc.setRespond(func(int, delivery, http.ResponseWriter, *http.Request) int {
		time.Sleep(20 * time.Millisecond)
		return http.StatusNoContent
	})
	cfg := writeFile(t, t.TempDir(), "c.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: orders
    database: shop
    collection: orders
`)
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	coll := client.Database("shop").Collection("orders")
	stop, inserted := make(chan struct{}), make(chan int32)
	go func() {
		id := int32(0)
		defer func() { inserted <- id }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(30 * time.Millisecond):
			}
			if _, err := coll.InsertOne(context.Background(), bson.D{{Key: "_id", Value: id + 1}}); err != nil {
				t.Errorf("insert: %v", err)
				return
			}
			id++
		}
	}()
	rc.waitFor(t, "the flow", countDelivered(3))
	code, out, errOut := runCLI(t, "skip", "-c", cfg, "orders")
	close(stop)
	last := <-inserted
	const want = "changehook skip: skip orders: not stuck on an event (state running: "
	if code != 1 || !strings.HasPrefix(errOut, want) || !strings.Contains(errOut, "so nothing was skipped") {
		t.Fatalf("skip of a trigger delivering normally: code %d, stdout %q, stderr %q; want 1 and an error starting %q", code, out, errOut, want)
	}
	rc.waitFor(t, "every event", countDelivered(last))
	code, out, _ = runCLI(t, "dlq", "list", "-c", cfg)
	if code != 0 || strings.Contains(out, "orders") {
		t.Errorf("dlq list after a refused skip: %d %q, want no dead letter", code, out)
	}
}

// TestRedeliverResendsTheRangeWithTheSameWebhookIDs: redeliver --since on a
// live trigger sends every change since then again, with the same
// webhook-ids, and the runner does not overwrite the rewind.
func TestRedeliverResendsTheRangeWithTheSameWebhookIDs(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	cfg := writeFile(t, t.TempDir(), "c.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: orders
    database: shop
    collection: orders
`)
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	coll := client.Database("shop").Collection("orders")
	insertIDs(t, coll, 0, 0)
	rc.waitFor(t, "the change before the range", countDelivered(0))
	// Resume positions have one-second resolution: the range starts at the
	// next whole second, after change 0.
	since := time.Now().UTC().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(since))
	insertIDs(t, coll, 1, 3)
	first := rc.waitFor(t, "three deliveries", countDelivered(3))[1:]
	code, out, errOut := runCLI(t, "redeliver", "-c", cfg, "orders", "--since", since.Format(time.RFC3339))
	if code != 0 || !strings.Contains(out, "redelivering every change since") {
		t.Fatalf("redeliver: code %d, stdout %q, stderr %q", code, out, errOut)
	}
	all := rc.waitFor(t, "the redelivered range", func(ds []delivery) bool { return len(ds) >= 7 })
	ids := map[string]int{}
	for _, d := range all {
		ids[d.ID]++
	}
	for _, d := range first[:3] {
		if ids[d.ID] != 2 {
			t.Errorf("webhook-id %s delivered %d times, want 2 (same id on redelivery)", d.ID, ids[d.ID])
		}
	}
	if got := docIDs(all); len(got) != 7 || got[0] != 0 || got[4] != 1 || got[6] != 3 {
		t.Errorf("delivered %v, want [0 1 2 3 1 2 3]: exactly the range since %s again", got, since)
	}
}

// TestControlAPIAuthorisation: with admin.token configured, the admin
// API's reads and control calls and the console's pages need it; the
// probes and the metrics do not; wrong tokens are logged, never the token.
func TestControlAPIAuthorisation(t *testing.T) {
	srv, _ := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	cfg := writeFile(t, t.TempDir(), "c.yaml", strings.Replace(baseConfig(srv.URI(), rc.URL()), "state: { database: chstate }",
		"state: { database: chstate }\nadmin: { token: s3cret-token }", 1)+`
  - name: orders
    database: shop
    collection: orders
`)
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	// Reads need the token too (the history and dead letters hold the
	// events), as a bearer token or as Basic credentials' password; the
	// probes and the metrics do not.
	read := func(path, auth string) int {
		req, err := http.NewRequest(http.MethodGet, r.admin+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/api/triggers", "", http.StatusUnauthorized},
		{"/api/deadletters", "Bearer wrong", http.StatusUnauthorized},
		{"/deadletters", "", http.StatusUnauthorized},
		{"/api/history", "Bearer s3cret-token", http.StatusOK},
		{"/", "Basic " + base64.StdEncoding.EncodeToString([]byte("ops:s3cret-token")), http.StatusOK},
		{"/readyz", "", http.StatusOK},
		{"/metrics", "", http.StatusOK},
	} {
		if code := read(tc.path, tc.auth); code != tc.want {
			t.Errorf("GET %s (Authorization %q) = %d, want %d", tc.path, tc.auth, code, tc.want)
		}
	}
	r.token = "s3cret-token"
	post := func(token, body string) int {
		req, err := http.NewRequest(http.MethodPost, r.admin+"/api/triggers/orders/pause", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("", `{"reason":"x"}`); code != http.StatusUnauthorized {
		t.Errorf("pause without token = %d, want 401", code)
	}
	if code := post("wrong", `{"reason":"x"}`); code != http.StatusUnauthorized {
		t.Errorf("pause with a wrong token = %d, want 401", code)
	}
	if code := post("s3cret-token", `{"reason":"api test"}`); code != http.StatusOK {
		t.Fatalf("pause with the token = %d, want 200", code)
	}
	r.waitAdmin("/api/triggers", func(_ int, b []byte) bool { return apiTriggers(t, b)["orders"].State == "paused" })
	if strings.Contains(r.logText(), "s3cret-token") {
		t.Error("the admin token appears in the logs")
	}
	if !strings.Contains(r.logText(), "wrong admin token") {
		t.Errorf("the wrong tokens were not logged:\n%s", r.logText())
	}
}
