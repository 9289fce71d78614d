package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// historyConfig declares the trigger "lost" on e2e.a and, when withAlive,
// a second trigger "alive" on e2e.b.
func historyConfig(uri, url string, withAlive bool) string {
	cfg := fmt.Sprintf(`
mongodb: { uri: %q }
state: { database: chstate }
defaults:
  operations: [insert]
  webhook: { url: %q, secret: %s }
  retry: { max_attempts: 3, initial_backoff: 10ms, max_backoff: 50ms }
triggers:
  - { name: lost, database: e2e, collection: a }
`, uri, url, testSecret)
	if withAlive {
		cfg += "  - { name: alive, database: e2e, collection: b }\n"
	}
	return cfg
}

// apiTrigger is the part of /api/triggers the tests read.
type apiTrigger struct {
	Name        string            `json:"name"`
	State       string            `json:"state"`
	StreamOpen  bool              `json:"stream_open"`
	LastError   string            `json:"last_error"`
	Deliveries  map[string]uint64 `json:"deliveries"`
	BatchSplits uint64            `json:"batch_splits"`
}

func apiTriggers(t *testing.T, body []byte) map[string]apiTrigger {
	t.Helper()
	var resp struct {
		Triggers []apiTrigger `json:"triggers"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("/api/triggers: %v: %s", err, body)
	}
	m := map[string]apiTrigger{}
	for _, tr := range resp.Triggers {
		m[tr.Name] = tr
	}
	return m
}

// TestHistoryLostAndReset: a trigger whose checkpoint fell off a small
// oplog fails visibly (/api/triggers, /readyz) while another trigger keeps
// delivering; `resume --from now` recovers it on the running changehook,
// as its last error says, and `checkpoints reset` when none runs.
func TestHistoryLostAndReset(t *testing.T) {
	// The oplog holds 64 KiB: the 100 KiB of step 2 roll it past lost's
	// checkpoint, while the state database's own writes (leases,
	// heartbeats, history, checkpoints: updates carrying their pre-image,
	// post-image and delta) during the rest of the test, however slowly it
	// runs, leave alive's in it.
	srv, client := devdbtest.StartWith(t, devdb.Options{OplogMaxBytes: 64 << 10, Data: filepath.Join(t.TempDir(), "db")})
	rc := newReceiver(t)
	dir := t.TempDir()
	ctx := context.Background()
	a, b, pad := client.Database("e2e").Collection("a"), client.Database("e2e").Collection("b"), client.Database("e2e").Collection("pad")

	// 1. lost delivers one event and checkpoints it; the runner stops.
	cfg1 := writeFile(t, dir, "one.yaml", historyConfig(srv.URI(), rc.URL(), false))
	r := startRunner(t, runArgs(cfg1)...)
	r.waitReady()
	if _, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: "a1"}}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "a1", func(ds []delivery) bool { return len(ds) == 1 })
	if code := r.stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}

	// 2. While it is down, the oplog rolls past its checkpoint.
	filler := strings.Repeat("x", 1024)
	for i := range 100 {
		if _, err := pad.InsertOne(ctx, bson.D{{Key: "i", Value: i}, {Key: "pad", Value: filler}}); err != nil {
			t.Fatal(err)
		}
	}

	// 3. Restarted with a second trigger: lost fails, alive delivers.
	cfg2 := writeFile(t, dir, "two.yaml", historyConfig(srv.URI(), rc.URL(), true))
	r = startRunner(t, runArgs(cfg2)...)
	body := r.waitAdmin("/api/triggers", func(_ int, body []byte) bool {
		m := apiTriggers(t, body)
		return m["lost"].State == "failed" && m["alive"].StreamOpen
	})
	lost := apiTriggers(t, body)["lost"]
	// The way out in last_error is the one that works on this running
	// process (as way_out says); `checkpoints reset` is for when none runs.
	if !strings.Contains(lost.LastError, "history lost") ||
		!strings.Contains(lost.LastError, "`changehook resume lost --from now|TIME` on the running changehook") ||
		!strings.Contains(lost.LastError, "`changehook checkpoints reset --trigger lost` when no changehook runs") {
		t.Errorf("lost.last_error = %q, want history lost and the way out", lost.LastError)
	}
	if strings.Contains(string(body), "whsec_") {
		t.Errorf("/api/triggers leaks a secret: %s", body)
	}
	code, ready := r.get("/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(string(ready), "trigger lost") {
		t.Errorf("/readyz = %d %q, want 503 naming trigger lost", code, ready)
	}
	if _, err := b.InsertOne(ctx, bson.D{{Key: "_id", Value: "b1"}}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "b1 delivered by alive", func(ds []delivery) bool { return hasDoc(ds, "alive", "b1") })

	// 4. A time that is no longer in the oplog is refused; --to now works
	// and, after a restart, lost delivers again.
	code, _, errOut := runCLI(t, "checkpoints", "reset", "-c", cfg2, "--trigger", "lost", "--to", "2001-01-01T00:00:00Z")
	if code != 1 || !strings.Contains(errOut, "2001-01-01T00:00:00Z is older than the oldest change still in the oplog") {
		t.Errorf("reset to a time before the oplog = %d, stderr %q", code, errOut)
	}
	// While the runner holds the failed trigger's lease, reset is refused
	// (the runner would overwrite it) and says what to do instead.
	code, _, errOut = runCLI(t, "checkpoints", "reset", "-c", cfg2, "--trigger", "lost")
	if code != 1 || !strings.Contains(errOut, "trigger lost is running on cluster member") ||
		!strings.Contains(errOut, "changehook resume lost --from now|TIME") {
		t.Errorf("reset while the runner holds the lease = %d, stderr %q; want refused with the way out", code, errOut)
	}
	// A resume from the checkpoint would fail the same way at once: it is
	// refused (exit 1; the API answers 409) with the way out, and lost
	// stays failed.
	refused := "resume lost: refused: lost failed with history lost (its checkpoint is no longer in the oplog): " +
		"resuming from the checkpoint would fail the same way at once, so it stays failed; the way out: " +
		"on the running changehook, run `changehook resume lost --from now` to continue from now (the lost range is skipped), " +
		"or `changehook resume lost --from TIME` with a time still in the oplog; when it is stopped, `changehook checkpoints reset --trigger lost`"
	code, out, errOut := runCLI(t, "resume", "-c", cfg2, "lost")
	if code != 1 || !strings.Contains(errOut, refused) {
		t.Errorf("resume lost from the checkpoint = %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, refused)
	}
	if status, body := r.post("/api/triggers/lost/resume", ""); status != http.StatusConflict || !strings.Contains(string(body), "resume lost: refused: lost failed with history lost") {
		t.Errorf("POST /api/triggers/lost/resume = %d %s; want 409 and the refusal", status, body)
	}
	if m := apiTriggers(t, r.waitAdmin("/api/triggers", func(int, []byte) bool { return true })); m["lost"].State != "failed" {
		t.Errorf("lost is %s after the refused resumes, want failed", m["lost"].State)
	}
	// The way out last_error gives works on the running process.
	code, out, errOut = runCLI(t, "resume", "-c", cfg2, "lost", "--from", "now")
	if code != 0 || !strings.Contains(out, "resumed from now") {
		t.Fatalf("resume lost --from now on the running changehook = %d, stdout %q, stderr %q", code, out, errOut)
	}
	r.waitReady()
	if _, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: "a1b"}}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "a1b delivered after the resume", func(ds []delivery) bool { return hasDoc(ds, "lost", "a1b") })
	// With no changehook running, checkpoints reset is the way out.
	if code := r.stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	code, out, errOut = runCLI(t, "checkpoints", "reset", "-c", cfg2, "--trigger", "lost")
	if code != 0 || !strings.Contains(out, "reset") {
		t.Fatalf("checkpoints reset = %d\n%s%s", code, out, errOut)
	}
	r = startRunner(t, runArgs(cfg2)...)
	r.waitReady()
	if _, err := a.InsertOne(ctx, bson.D{{Key: "_id", Value: "a2"}}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "a2 delivered after the reset", func(ds []delivery) bool { return hasDoc(ds, "lost", "a2") })
	code, out, _ = runCLI(t, "checkpoints", "list", "-c", cfg2)
	if code != 0 || !strings.Contains(out, "lost") || !strings.Contains(out, "alive") {
		t.Errorf("checkpoints list = %d\n%s", code, out)
	}
	if code := r.stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
}

// hasDoc reports whether trigger delivered the event of document id.
func hasDoc(ds []delivery, trigger, id string) bool {
	for _, d := range ds {
		key, _ := lookup(d.Event, "documentKey").(bson.D)
		if d.Header.Get("X-Changehook-Trigger") == trigger && lookup(key, "_id") == id {
			return true
		}
	}
	return false
}

// TestCheckpointResetToTime: `checkpoints reset --to TIME` makes the
// trigger continue from the first change at or after TIME (here: a change
// already delivered, which is delivered again with the same webhook-id).
func TestCheckpointResetToTime(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the next wall-clock second")
	}
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	cfg := writeFile(t, t.TempDir(), "t.yaml", baseConfig(srv.URI(), rc.URL())+`
  - { name: t, database: e2e, collection: x, operations: [insert] }
`)
	ctx := context.Background()
	x := client.Database("e2e").Collection("x")
	r := startRunner(t, runArgs(cfg)...)
	r.waitReady()
	if _, err := x.InsertOne(ctx, bson.D{{Key: "_id", Value: "x1"}}); err != nil {
		t.Fatal(err)
	}
	rc.waitFor(t, "x1", func(ds []delivery) bool { return len(ds) == 1 })
	// start_at and --to have a resolution of one second: x2 must be the
	// first change of a new second.
	mark := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(mark))
	if _, err := x.InsertOne(ctx, bson.D{{Key: "_id", Value: "x2"}}); err != nil {
		t.Fatal(err)
	}
	x2 := rc.waitFor(t, "x2", func(ds []delivery) bool { return len(ds) == 2 })[1]
	if code := r.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	code, out, errOut := runCLI(t, "checkpoints", "reset", "-c", cfg, "--trigger", "t", "--to", mark.UTC().Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("checkpoints reset --to = %d\n%s%s", code, out, errOut)
	}
	r = startRunner(t, runArgs(cfg)...)
	r.waitReady()
	if _, err := x.InsertOne(ctx, bson.D{{Key: "_id", Value: "x3"}}); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor(t, "x3", func(ds []delivery) bool { return hasDoc(ds, "t", "x3") })
	if len(got) != 4 || got[2].ID != x2.ID || !hasDoc(got[3:], "t", "x3") {
		t.Errorf("after reset --to %s: %s; want x2 again (webhook-id %s) then x3", mark.Format(time.RFC3339), summary(got[2:]), x2.ID)
	}
	if code := r.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
