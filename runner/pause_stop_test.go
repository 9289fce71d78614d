package runner_test

import (
	"context"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestPauseStopsRetriesAtOnce: a pause of a trigger whose delivery waits
// to retry a failing endpoint sends nothing more and dead-letters nothing,
// and its watcher stops at once rather than after the grace period (ten
// minutes here); the held event is delivered after the resume. So is a
// reload's or a control's hold (the same stop).
func TestPauseStopsRetriesAtOnce(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	cfg := parseTrigger(t, `
triggers:
  - name: held
    database: shop
    collection: a
    retry: { max_attempts: 3, initial_backoff: 1h, max_backoff: 1h }
    webhook: { url: "${HOOK_URL}/held" }
`, recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{ShutdownGrace: 10 * time.Minute})
	waitFor(t, "runner ready", r.Ready)
	st := store.New(client, stateDB)

	stopFailing := recv.failRequests()
	insert(t, client.Database("shop").Collection("a"), bson.D{{Key: "_id", Value: int32(1)}})
	<-recv.arrived
	waitFor(t, "the delivery waiting to retry", func() bool { return statusOf(t, r, "held").Retrying })

	if err := r.Pause("held", "endpoint maintenance", "test"); err != nil {
		t.Fatal(err)
	}
	// Stop waits for the watcher, already stopping for the pause: within
	// seconds, not the grace period.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.Stop(ctx, "held"); err != nil {
		t.Fatalf("the paused trigger's watcher did not stop at once: %v", err)
	}
	select {
	case <-recv.arrived:
		t.Fatal("a request was sent after the pause")
	default:
	}
	if n, err := st.CountDeadLetters(t.Context(), "held"); err != nil || n != 0 {
		t.Fatalf("dead letters after the pause = %d, %v; want none", n, err)
	}

	stopFailing()
	if err := r.Start("held"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resume(t.Context(), "held", runner.ResumeFrom{}); err != nil {
		t.Fatal(err)
	}
	if id := docID(recv.next(t)); id != 1 {
		t.Fatalf("delivered after the resume: %d, want 1", id)
	}
}
