package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
)

// TestShutdownGrace: SIGTERM while a delivery hangs exits 0 once --grace
// has passed, and the unfinished event is not checkpointed: the next run
// delivers it again, with the same webhook-id.
func TestShutdownGrace(t *testing.T) {
	srv, client := devdbtest.StartWith(t, devdb.Options{})
	rc := newReceiver(t)
	release := make(chan struct{})
	rc.setRespond(func(n int, _ delivery, _ http.ResponseWriter, r *http.Request) int {
		if n == 0 {
			select { // hang until the runner gives up
			case <-r.Context().Done():
			case <-release:
			}
			return 0
		}
		return http.StatusNoContent
	})
	t.Cleanup(func() { close(release) })
	cfg := writeFile(t, t.TempDir(), "g.yaml", baseConfig(srv.URI(), rc.URL())+`
  - name: g
    database: e2e
    collection: g
    operations: [insert]
    webhook: { timeout: 1m }
`)
	r := startRunner(t, runArgs(cfg, "--grace", "300ms")...)
	r.waitReady()
	if _, err := client.Database("e2e").Collection("g").InsertOne(context.Background(), bson.D{{Key: "_id", Value: 1}}); err != nil {
		t.Fatal(err)
	}
	rc.waitInflight(t, 1)
	start := time.Now()
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %s with --grace 300ms", took)
	}

	r = startRunner(t, runArgs(cfg)...)
	got := rc.waitFor(t, "the redelivery", func(ds []delivery) bool { return len(ds) >= 2 })
	if got[1].ID != got[0].ID || got[1].Status != http.StatusNoContent {
		t.Errorf("after restart: %s (status %d), want %s delivered again", got[1].ID, got[1].Status, got[0].ID)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
