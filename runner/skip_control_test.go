package runner_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/syncbuf"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestSkipRequestAppliedBeforeIsNotRepeated: a skip request whose id the
// checkpoint already carries was applied by a previous holder that could
// not record its result; applying it again would dead-letter the next
// event too, so it skips nothing and says so (also while the trigger is
// not stuck). A new request skips the event the trigger is stuck on.
func TestSkipRequestAppliedBeforeIsNotRepeated(t *testing.T) {
	client := startDB(t, devdb.Options{})
	arrived, failNow := make(chan struct{}, 16), make(chan struct{})
	hook := scriptedHook(t, func(ctx context.Context, _ int32, _ int) int {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-failNow:
		case <-ctx.Done():
		}
		return http.StatusServiceUnavailable
	})
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, lowStockYAML, hook.URL)
	coll := client.Database("lessons").Collection("inventory")
	// A skip stops the trigger, whose held delivery then ends at once.
	r := startRunner(t, cfg, client, runner.Options{Controls: true, ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	waitFor(t, "start pinned", func() bool { _, ok, _ := st.LoadCheckpoint(ctx, "low_stock"); return ok })
	insert(t, coll, item(1, 3)) // its first attempt is in flight
	<-arrived

	// The previous holder applied request "s-before": its checkpoint says so.
	cp, _, err := st.LoadCheckpoint(ctx, "low_stock")
	if err != nil {
		t.Fatal(err)
	}
	cp.Control = "s-before"
	if err := st.SaveCheckpoint(ctx, cp); err != nil {
		t.Fatal(err)
	}
	msg, err := runner.RequestControl(ctx, st, "low_stock", "", store.ControlRequest{ID: "s-before", Kind: store.RequestSkip, By: "test"})
	if err != nil || !strings.Contains(msg, "already applied") {
		t.Fatalf("skip applied before = %q, %v; want it reported as already applied", msg, err)
	}
	if n, err := st.CountDeadLetters(ctx, "low_stock"); err != nil || n != 0 {
		t.Fatalf("%d dead letters (%v) after a skip applied before, want none", n, err)
	}

	// The endpoint fails the event: the trigger is stuck on it.
	close(failNow)
	waitFor(t, "stuck on item 1", func() bool {
		h := statusOf(t, r, "low_stock").HeadOfLine
		return h != nil && h.LastReason != ""
	})
	msg, err = runner.RequestControl(ctx, st, "low_stock", "", store.ControlRequest{ID: "s-new", Kind: store.RequestSkip, By: "test"})
	if err != nil || !strings.Contains(msg, "skipped and dead-lettered") {
		t.Fatalf("new skip = %q, %v", msg, err)
	}
	dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "low_stock"})
	if err != nil || len(dls) != 1 || dls[0].Event.Lookup("documentKey", "_id").Int32() != 1 {
		t.Fatalf("dead letters %v (%v), want item 1's", dls, err)
	}
	if cp, _, err := st.LoadCheckpoint(ctx, "low_stock"); err != nil || cp.Control != "s-new" {
		t.Fatalf("checkpoint control %q (%v), want the new request's id", cp.Control, err)
	}
}

// TestSkipCountsItsDeadLetter: skipping the head-of-line event of a
// trigger without dead letters (the endpoint answers 410) logs the
// delivery it cuts off at INFO, as part of the restart for the skip (and
// who asked for it), not as an unfinished shutdown, and counts the dead letter like one a dispatcher
// stores: dead_letters, deliveries{dead_lettered} and
// changehook_dead_letters_total are 1.
func TestSkipCountsItsDeadLetter(t *testing.T) {
	client := startDB(t, devdb.Options{})
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusGone)
	}))
	t.Cleanup(hook.Close)
	cfg := parseTrigger(t, `
triggers:
  - name: strict
    database: shop
    collection: a
    dead_letter: false
    retry: { initial_backoff: 10ms, max_backoff: 10ms }
    circuit: { failures: 0, open_on: [] }
    webhook: { url: "${HOOK_URL}" }
`, hook.URL)
	var logs syncbuf.Buffer
	reg := prometheus.NewRegistry()
	r := startRunner(t, cfg, client, runner.Options{Registry: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil)), ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	insert(t, client.Database("shop").Collection("a"), bson.D{{Key: "_id", Value: int32(1)}})
	waitFor(t, "stuck on the event", func() bool {
		h := statusOf(t, r, "strict").HeadOfLine
		return h != nil && h.LastReason != ""
	})
	sctx, scancel := context.WithTimeout(t.Context(), waitTimeout)
	defer scancel()
	if _, err := r.Skip(sctx, "strict", "test"); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if strings.Contains(out, "deliveries unfinished at shutdown") {
		t.Errorf("the skip's restart was logged as an unfinished shutdown:\n%s", out)
	}
	if !strings.Contains(out, `level=INFO msg="in-flight deliveries cut off by a control or reload; they are delivered again when the trigger restarts" trigger=strict cause="skip by test" `+
		`error="stop dispatcher for skip by test: 1 events left undone: stopped before they were delivered or dead-lettered"`) {
		t.Errorf("no INFO line for the delivery the skip cut off, naming the skip:\n%s", out)
	}
	// The delivery is cut off by the skip, not by a shutdown.
	if strings.Contains(out, "canceled by shutdown") || !strings.Contains(out, `level=INFO msg="delivery canceled" trigger=strict cause="skip by test" webhook_id=msg_`) {
		t.Errorf("the delivery the skip cut off is not logged as the skip's:\n%s", out)
	}

	st := statusOf(t, r, "strict")
	if st.DeadLetters != 1 || st.Deliveries[dispatcher.OutcomeDeadLettered] != 1 || st.DeadLettersCurrent != 1 {
		t.Errorf("after the skip: dead_letters %d, deliveries %v, dead_letters_current %d; want 1 dead-lettered each",
			st.DeadLetters, st.Deliveries, st.DeadLettersCurrent)
	}
	if v, ok := metricValue(t, reg, "changehook_dead_letters_total", map[string]string{"trigger": "strict"}); !ok || v != 1 {
		t.Errorf("changehook_dead_letters_total = %v (present %v), want 1", v, ok)
	}
	if v, ok := metricValue(t, reg, "changehook_deliveries_total", map[string]string{"trigger": "strict", "outcome": "dead_lettered"}); !ok || v != 1 {
		t.Errorf(`changehook_deliveries_total{outcome="dead_lettered"} = %v (present %v), want 1`, v, ok)
	}
}
