package runner_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// stateApp is the application name of the state database's own client in
// the tests that inject faults into state-database commands only (devdb's
// failCommand fail point with appName).
const stateApp = "state"

// TestCheckpointSavesFailingAreVisible: when the state database refuses
// the checkpoint saves (here Unauthorized, code 13, as for a read-only
// user), deliveries go on — nothing is lost — but the trigger shows it:
// retrying since the first failed save, checkpoint_failure with the reason
// and the tries, a way out naming readWrite on the checkpoints, /readyz
// reporting it once past admin.retrying_unready_after, and
// changehook_checkpoint_save_failures_total counting by reason. Once the
// saves succeed again the trigger is running and ready again by itself,
// and its last_error no longer shows the save error.
func TestCheckpointSavesFailingAreVisible(t *testing.T) {
	t.Parallel()
	srv, client := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
	stClient := devdbtest.Connect(t, srv.URI(), options.Client().SetAppName(stateApp))
	st := store.New(stClient, stateDB)
	var delivered atomic.Int32
	hook := scriptedHook(t, func(context.Context, int32, int) int { delivered.Add(1); return http.StatusNoContent })
	reg := prometheus.NewRegistry()
	r := startRunnerOn(t, parseTrigger(t, `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook:
      url: ${HOOK_URL}
`, hook.URL), client, st, runner.Options{Registry: reg, IdleCheckpointInterval: time.Second})
	waitFor(t, "ready", r.Ready)
	readyz, ahead := skewedReadyz(t, r)
	coll := client.Database("shop").Collection("orders")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	waitFor(t, "delivered 1", func() bool { return delivered.Load() == 1 })
	waitFor(t, "checkpoint past event 1", func() bool {
		cp, ok, _ := st.LoadCheckpoint(t.Context(), "orders")
		return ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})
	if s := statusOf(t, r, "orders"); s.State != runner.StateRunning || s.CheckpointFailure != nil {
		t.Fatalf("before the failures: state %s, checkpoint_failure %+v", s.State, s.CheckpointFailure)
	}

	configureFailPoint(t, client, "failCommand", "alwaysOn", bson.D{{Key: "failCommands", Value: bson.A{"update"}},
		{Key: "appName", Value: stateApp}, {Key: "errorCode", Value: 13}})
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	var s runner.TriggerStatus
	waitFor(t, "the failing saves in the status", func() bool {
		s = statusOf(t, r, "orders")
		return s.CheckpointFailure != nil
	})
	// Deliveries go on.
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	waitFor(t, "delivered 2 and 3", func() bool { return delivered.Load() == 3 })
	waitFor(t, "two failed saves", func() bool {
		s = statusOf(t, r, "orders")
		return s.CheckpointFailure != nil && s.CheckpointFailure.Tries >= 2
	})
	f := s.CheckpointFailure
	if s.State != runner.StateRetrying || !s.Retrying || !s.StreamOpen || !s.Since.Equal(f.Since) ||
		!strings.HasPrefix(s.LastError, `save checkpoint of trigger "orders": `) || strings.Count(s.LastError, "save checkpoint") != 1 ||
		!strings.Contains(s.LastError, "Unauthorized") {
		t.Errorf("status = %s (retrying %v, stream open %v, since %v), last_error %q; want retrying since the first failed save",
			s.State, s.Retrying, s.StreamOpen, s.Since, s.LastError)
	}
	if f.Reason != runner.CheckpointFailUnauthorized || f.Since.IsZero() || f.LastSavedAt.IsZero() || f.LastSavedAt.After(f.Since) ||
		!strings.Contains(f.Error, "Unauthorized") {
		t.Errorf("checkpoint_failure = %+v", *f)
	}
	for _, want := range []string{"checkpoint saves of orders fail since ", "(unauthorized; ", "deliveries continue and nothing is lost",
		"a restart delivers again every event since then", "readWrite on the state database", "checkpoints collection"} {
		if !strings.Contains(s.WayOut, want) {
			t.Errorf("way_out lacks %q: %s", want, s.WayOut)
		}
	}
	if n := counterValue(t, reg, "changehook_checkpoint_save_failures_total", map[string]string{"trigger": "orders", "reason": "unauthorized"}); n < 2 {
		t.Errorf("changehook_checkpoint_save_failures_total{reason=unauthorized} = %v, want at least 2", n)
	}
	if n := counterValue(t, reg, "changehook_checkpoint_save_failures_total", map[string]string{"trigger": "orders", "reason": "unavailable"}); n != 0 {
		t.Errorf("changehook_checkpoint_save_failures_total{reason=unavailable} = %v, want 0 (and present)", n)
	}
	// Ready within admin.retrying_unready_after, not after it.
	if code, body := readyz(); code != http.StatusOK {
		t.Errorf("/readyz within the grace = %d %s", code, body)
	}
	ahead.Store(int64(2 * time.Minute))
	if code, body := readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "trigger orders: retrying for") ||
		!strings.Contains(body, `save checkpoint of trigger "orders": `) || !strings.Contains(body, "way out: checkpoint saves of orders fail since") ||
		!strings.Contains(body, "readWrite") {
		t.Errorf("/readyz past the grace = %d %s", code, body)
	}
	ahead.Store(0)

	// The way out: the saves succeed again, and the trigger goes on by
	// itself.
	configureFailPoint(t, client, "failCommand", "off", nil)
	waitFor(t, "running again", func() bool {
		s = statusOf(t, r, "orders")
		return s.State == runner.StateRunning && s.CheckpointFailure == nil && s.WayOut == ""
	})
	// As a recovered delivery, circuit or dead-letter store: the error
	// is gone with the failure (the log says the saves succeed again).
	if s.LastError != "" || !s.LastErrorAt.IsZero() {
		t.Errorf("running again, last_error %q (at %v); want none: the save error is over", s.LastError, s.LastErrorAt)
	}
	waitFor(t, "checkpoint past event 3", func() bool {
		cp, ok, _ := st.LoadCheckpoint(t.Context(), "orders")
		return ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})
	ahead.Store(int64(2 * time.Minute))
	if code, body := readyz(); code != http.StatusOK {
		t.Errorf("/readyz once the saves succeed = %d %s", code, body)
	}
}

// TestCheckpointFailureOutlivesRestarts: a watcher restarted while the
// checkpoint saves fail (a pause and resume, a reload changing the
// trigger) loads the same stale checkpoint, so when its saves fail too,
// checkpoint_failure goes on from the first failed save (since, tries,
// last_saved_at), as do the trigger's since, which /readyz compares with
// admin.retrying_unready_after, and the way out. When the checkpoint moved
// meanwhile (another member, or a tool, saved it), the failure starts
// over.
func TestCheckpointFailureOutlivesRestarts(t *testing.T) {
	t.Parallel()
	const yaml = `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook:
      url: ${HOOK_URL}
      headers: { X-Version: "%d" }
`
	tests := []struct {
		name string
		// restart restarts the trigger's watcher; it may save the
		// checkpoint with saver meanwhile (the failure then starts over).
		restart   func(t *testing.T, r *runner.Runner, url string, saver *store.Store, coll *mongo.Collection)
		startOver bool
	}{
		{name: "pause and resume", restart: func(t *testing.T, r *runner.Runner, _ string, _ *store.Store, _ *mongo.Collection) {
			pauseResume(t, r)
		}},
		{name: "reload", restart: func(t *testing.T, r *runner.Runner, url string, _ *store.Store, _ *mongo.Collection) {
			if res, err := r.Reload(t.Context(), parseTrigger(t, fmt.Sprintf(yaml, 2), url)); err != nil || len(res.Changed) != 1 {
				t.Fatalf("reload = %+v, %v; want orders changed", res, err)
			}
		}},
		{name: "checkpoint moved during a pause", startOver: true,
			restart: func(t *testing.T, r *runner.Runner, _ string, saver *store.Store, coll *mongo.Collection) {
				if err := r.Pause("orders", "test", "test"); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "paused", func() bool { return statusOf(t, r, "orders").State == runner.StatePaused })
				// What another member taking over would do: save a later
				// position (with a client the fail point spares).
				cp, ok, err := saver.LoadCheckpoint(t.Context(), "orders")
				if err != nil || !ok {
					t.Fatalf("load checkpoint: %v, %v", ok, err)
				}
				cs, err := coll.Watch(t.Context(), mongo.Pipeline{}, options.ChangeStream().SetStartAfter(cp.Token))
				if err != nil {
					t.Fatal(err)
				}
				defer cs.Close(context.Background())
				if !cs.Next(t.Context()) {
					t.Fatalf("no event after the checkpoint: %v", cs.Err())
				}
				if err := saver.SaveCheckpoint(t.Context(), store.Checkpoint{Trigger: "orders", Token: cs.ResumeToken(), UpdatedAt: time.Now()}); err != nil {
					t.Fatal(err)
				}
				if _, err := r.Resume(t.Context(), "orders", runner.ResumeFrom{}); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, client := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
			stClient := devdbtest.Connect(t, srv.URI(), options.Client().SetAppName(stateApp))
			var delivered atomic.Int32
			hook := scriptedHook(t, func(context.Context, int32, int) int { delivered.Add(1); return http.StatusNoContent })
			r := startRunnerOn(t, parseTrigger(t, fmt.Sprintf(yaml, 1), hook.URL), client, store.New(stClient, stateDB),
				runner.Options{IdleCheckpointInterval: time.Second})
			waitFor(t, "ready", r.Ready)
			coll := client.Database("shop").Collection("orders")
			insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
			saver := store.New(client, stateDB) // not refused by the fail point
			waitFor(t, "checkpoint past event 1", func() bool {
				cp, ok, _ := saver.LoadCheckpoint(t.Context(), "orders")
				return ok && len(eventsAfter(t, coll, cp.Token)) == 0
			})

			configureFailPoint(t, client, "failCommand", "alwaysOn", bson.D{{Key: "failCommands", Value: bson.A{"update"}},
				{Key: "appName", Value: stateApp}, {Key: "errorCode", Value: 13}})
			insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
			var before runner.TriggerStatus
			waitFor(t, "the failing saves in the status", func() bool {
				before = statusOf(t, r, "orders")
				return before.State == runner.StateRetrying && before.CheckpointFailure != nil
			})
			f0 := *before.CheckpointFailure

			tc.restart(t, r, hook.URL, saver, coll)
			// The restarted watcher delivers, and its save fails.
			insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
			var s runner.TriggerStatus
			waitFor(t, "event 3 delivered and its save failed", func() bool {
				s = statusOf(t, r, "orders")
				return delivered.Load() >= 3 && s.State == runner.StateRetrying && s.CheckpointFailure != nil
			})
			f := s.CheckpointFailure
			if tc.startOver {
				if !f.Since.After(f0.Since) || !s.Since.Equal(f.Since) {
					t.Errorf("checkpoint_failure since %v (trigger since %v), first failure before the move %v: want it to start over",
						f.Since, s.Since, f0.Since)
				}
				return
			}
			if !f.Since.Equal(f0.Since) || f.Tries <= f0.Tries || !f.LastSavedAt.Equal(f0.LastSavedAt) {
				t.Errorf("checkpoint_failure after the restart = %+v, before = %+v; want the same since and last_saved_at, more tries", *f, f0)
			}
			if !s.Since.Equal(f0.Since) {
				t.Errorf("trigger since %v, want the first failed save's %v", s.Since, f0.Since)
			}
			if want := "fail since " + f0.Since.UTC().Format(time.RFC3339); !strings.Contains(s.WayOut, want) {
				t.Errorf("way_out %q lacks %q", s.WayOut, want)
			}
		})
	}
}

// pauseResume pauses orders, waits until it shows paused, and resumes it.
func pauseResume(t *testing.T, r *runner.Runner) {
	t.Helper()
	if err := r.Pause("orders", "test", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "paused", func() bool { return statusOf(t, r, "orders").State == runner.StatePaused })
	if _, err := r.Resume(t.Context(), "orders", runner.ResumeFrom{}); err != nil {
		t.Fatal(err)
	}
}
