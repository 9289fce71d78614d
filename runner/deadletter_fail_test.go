package runner_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/admin"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// setDeadLetterValidator makes the state database refuse every dead
// letter (a validator no dead letter satisfies), or accept them again
// (refuse false).
func setDeadLetterValidator(t *testing.T, client *mongo.Client, refuse bool) {
	t.Helper()
	v := bson.D{}
	if refuse {
		v = bson.D{{Key: "never", Value: bson.D{{Key: "$exists", Value: true}}}}
	}
	if err := client.Database(stateDB).RunCommand(t.Context(), bson.D{{Key: "collMod", Value: store.DeadLettersCollection},
		{Key: "validator", Value: v}}).Err(); err != nil {
		t.Fatal(err)
	}
}

// counterValue returns the value of the counter series name{labels} in
// reg (-1 when there is none).
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// TestDeadLetterThatCannotBeStoredIsVisible: when the state database
// refuses a trigger's dead letter, the trigger holds the event (its
// checkpoint does not pass it, the events after it wait) and shows it:
// state retrying with the store's error as last_error, the dead letter's
// failure in head_of_line and a way out; /readyz reports it once it has
// been retrying longer than admin.retrying_unready_after, as any retrying
// trigger; changehook_dead_letter_store_failures_total counts the tries by
// reason. skip cannot get past it (it stores the same dead letter) and
// says so, changing nothing. The way out works: once the state database
// takes the write the trigger stores the dead letter and goes on by
// itself; and `resume --from` gives such an event up.
func TestDeadLetterThatCannotBeStoredIsVisible(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	st := store.New(client, stateDB)
	if err := client.Database(stateDB).CreateCollection(t.Context(), store.DeadLettersCollection); err != nil {
		t.Fatal(err)
	}
	setDeadLetterValidator(t, client, true)
	var delivered atomic.Int32
	hook := scriptedHook(t, func(_ context.Context, id int32, _ int) int {
		if id%2 == 1 {
			return http.StatusUnprocessableEntity // odd documents are refused for good
		}
		delivered.Add(1)
		return http.StatusNoContent
	})
	cfg := parseTrigger(t, `
triggers:
  - name: stuck
    database: shop
    collection: orders
    webhook:
      url: ${HOOK_URL}
    retry: {max_attempts: 1, initial_backoff: 10ms, max_backoff: 50ms}
`, hook.URL)
	reg := prometheus.NewRegistry()
	r := startRunner(t, cfg, client, runner.Options{Registry: reg, ShutdownGrace: 100 * time.Millisecond})
	waitFor(t, "trigger ready", r.Ready)
	readyz, ahead := skewedReadyz(t, r)
	coll := client.Database("shop").Collection("orders")

	at1 := insertAt(t, client, coll, 1)
	var stuck runner.TriggerStatus
	waitFor(t, "the dead letter's failure in the status", func() bool {
		stuck = statusOf(t, r, "stuck")
		return stuck.HeadOfLine != nil && stuck.HeadOfLine.DeadLetter != nil
	})
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}}) // waits behind it (strict)
	hol := stuck.HeadOfLine
	f := hol.DeadLetter
	if stuck.State != runner.StateRetrying || !stuck.Retrying ||
		!strings.HasPrefix(stuck.LastError, "store dead letter "+hol.WebhookID+": put dead letter "+hol.WebhookID) ||
		!strings.Contains(stuck.LastError, "Document failed validation") {
		t.Errorf("status = %s (retrying %v), last_error %q; want retrying with the store's error", stuck.State, stuck.Retrying, stuck.LastError)
	}
	if f.WebhookID != hol.WebhookID || f.Reason != "other" || f.Tries < 1 || f.Since.IsZero() || f.NextTryAt.IsZero() ||
		hol.LastStatus != http.StatusUnprocessableEntity {
		t.Errorf("head_of_line = %+v, dead_letter_failure = %+v", *hol, *f)
	}
	for _, want := range []string{"event " + hol.WebhookID + " was given up on (HTTP 422), but its dead letter cannot be stored in the state database (other; ",
		"nothing is lost", "the trigger then continues by itself", "`changehook resume stuck --from 20"} {
		if !strings.Contains(stuck.WayOut, want) {
			t.Errorf("way_out lacks %q: %s", want, stuck.WayOut)
		}
	}
	if n := counterValue(t, reg, "changehook_dead_letter_store_failures_total", map[string]string{"trigger": "stuck", "reason": "other"}); n < 1 {
		t.Errorf("changehook_dead_letter_store_failures_total{reason=other} = %v, want at least 1", n)
	}
	if n := counterValue(t, reg, "changehook_dead_letter_store_failures_total", map[string]string{"trigger": "stuck", "reason": "unavailable"}); n != 0 {
		t.Errorf("changehook_dead_letter_store_failures_total{reason=unavailable} = %v, want 0 (and present)", n)
	}
	// Ready within admin.retrying_unready_after, not after it.
	if code, body := readyz(); code != http.StatusOK {
		t.Errorf("/readyz within the grace = %d %s", code, body)
	}
	ahead.Store(int64(2 * time.Minute))
	code, body := readyz()
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "trigger stuck: retrying for") ||
		!strings.Contains(body, "store dead letter "+hol.WebhookID) || !strings.Contains(body, "next try to store it at") ||
		!strings.Contains(body, "way out: event "+hol.WebhookID) {
		t.Errorf("/readyz past the grace = %d %s", code, body)
	}
	ahead.Store(0)

	// The checkpoint has not passed the event.
	notPast := func(at bson.Timestamp) {
		t.Helper()
		if cp, ok, err := st.LoadCheckpoint(t.Context(), "stuck"); err != nil || (ok && !cp.ClusterTime.Before(at)) {
			t.Fatalf("checkpoint %+v (%v, %v) at or past the event held (%v)", cp.ClusterTime, ok, err, at)
		}
	}
	notPast(at1)

	// skip stores the same dead letter: refused, nothing changes.
	_, err := r.Skip(t.Context(), "stuck", "test")
	if err == nil || !strings.Contains(err.Error(), "its dead letter cannot be stored, so nothing was skipped and the trigger goes on holding the event") ||
		!strings.Contains(err.Error(), "changehook resume stuck --from") || !strings.Contains(err.Error(), "Document failed validation") {
		t.Errorf("skip of the held event = %v; want refused, saying the dead letter cannot be stored", err)
	}
	notPast(at1)
	if n, _ := st.CountDeadLettersMatching(t.Context(), store.DeadLetterFilter{}); n != 0 || delivered.Load() != 0 {
		t.Fatalf("%d dead letters and %d deliveries while the event is held", n, delivered.Load())
	}

	// Way out 1: the state database takes the write again.
	setDeadLetterValidator(t, client, false)
	waitFor(t, "the event after the held one delivered", func() bool { return delivered.Load() == 1 })
	if n, _ := st.CountDeadLettersMatching(t.Context(), store.DeadLetterFilter{}); n != 1 {
		t.Errorf("%d dead letters once the state database takes them, want 1", n)
	}
	waitFor(t, "the trigger running again", func() bool {
		s := statusOf(t, r, "stuck")
		return s.State == runner.StateRunning && s.WayOut == "" && s.HeadOfLine == nil
	})

	// Way out 2: `resume --from` the second after the event, as the way
	// out says, gives the held event up (no dead letter).
	setDeadLetterValidator(t, client, true)
	after3 := insertIDsBefore(t, client, coll, 3, 3)
	var held runner.TriggerStatus
	waitFor(t, "the next dead letter's failure in the status", func() bool {
		held = statusOf(t, r, "stuck")
		return held.HeadOfLine != nil && held.HeadOfLine.DeadLetter != nil
	})
	from := after3.Format(time.RFC3339)
	if !strings.Contains(held.WayOut, "`changehook resume stuck --from "+from+"` (the second after the event") {
		t.Errorf("way_out does not name --from %s: %s", from, held.WayOut)
	}
	if _, err := r.Resume(t.Context(), "stuck", runner.ResumeFrom{Time: after3}); err != nil {
		t.Fatalf("resume --from %s: %v", from, err)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(4)}})
	waitFor(t, "the event after resume --from delivered", func() bool { return delivered.Load() == 2 })
	if n, _ := st.CountDeadLettersMatching(t.Context(), store.DeadLetterFilter{}); n != 1 {
		t.Errorf("%d dead letters after resume --from, want still 1 (the given-up event has none)", n)
	}
	// The receiver counts a delivery before its response reaches the
	// runner, so the event may still be the head of line for a moment.
	waitFor(t, "the trigger running with nothing held after resume --from", func() bool {
		s := statusOf(t, r, "stuck")
		return s.State == runner.StateRunning && s.HeadOfLine == nil
	})
}

// insertAt inserts {_id: id} into coll and returns its cluster time.
func insertAt(t *testing.T, client *mongo.Client, coll *mongo.Collection, id int32) bson.Timestamp {
	t.Helper()
	sess, err := client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(t.Context())
	if _, err := coll.InsertOne(mongo.NewSessionContext(t.Context(), sess), bson.D{{Key: "_id", Value: id}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	return *sess.OperationTime()
}

// skewedReadyz serves r's admin API (retrying_unready_after 1m) until the
// test ends, with /readyz's clock ahead of the real one by what ahead
// holds (nanoseconds), and returns a GET of its /readyz: status and body.
func skewedReadyz(t *testing.T, r *runner.Runner) (readyz func() (int, string), ahead *atomic.Int64) {
	t.Helper()
	ahead = new(atomic.Int64)
	srv, err := admin.Start(admin.Options{Addr: "127.0.0.1:0", Runner: r, RetryingUnreadyAfter: time.Minute,
		Now: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}, ahead
}
