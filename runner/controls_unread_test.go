package runner_test

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

const unreadOrdersYAML = `
triggers:
  - name: orders
    database: shop
    collection: orders
    webhook:
      url: ${HOOK_URL}
    retry: {max_attempts: 1, initial_backoff: 10ms, max_backoff: 50ms}
`

const unreadOtherYAML = `
triggers:
  - name: other
    database: shop
    collection: other
    webhook:
      url: ${HOOK_URL}
`

// unreadRig is a devdb with test commands whose state database is reached
// through its own client (stateApp), and a trigger "orders" with a
// checkpoint, paused, with events held behind its pause.
type unreadRig struct {
	admin     *mongo.Client
	st        *store.Store
	hookURL   string
	delivered atomic.Int32 // requests of events other than the first
}

// newUnreadRig runs "orders" once (its checkpoint is saved after its first
// event), pauses it through its control document and writes held events.
func newUnreadRig(t *testing.T) *unreadRig {
	t.Helper()
	srv, admin := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
	stClient := devdbtest.Connect(t, srv.URI(), options.Client().SetAppName(stateApp))
	rig := &unreadRig{admin: admin, st: store.New(stClient, stateDB)}
	var first atomic.Bool
	hook := scriptedHook(t, func(_ context.Context, id int32, _ int) int {
		if id == 1 {
			first.Store(true)
		} else {
			rig.delivered.Add(1)
		}
		return http.StatusNoContent
	})
	rig.hookURL = hook.URL
	coll := admin.Database("shop").Collection("orders")
	func() {
		r, err := runner.New(parseTrigger(t, unreadOrdersYAML, hook.URL), admin, rig.st, runner.Options{Controls: true, CheckpointInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		waitFor(t, "first run ready", r.Ready)
		insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
		waitFor(t, "first event delivered", first.Load)
	}()
	waitFor(t, "checkpoint after the first event", func() bool {
		cp, ok, err := rig.st.LoadCheckpoint(context.Background(), "orders")
		return err == nil && ok && len(eventsAfter(t, coll, cp.Token)) == 0
	})
	if _, err := rig.st.RequestControl(t.Context(), "orders", "endpoint maintenance", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
		t.Fatal(err)
	}
	for i := int32(2); i <= 6; i++ {
		insert(t, coll, bson.D{{Key: "_id", Value: i}})
	}
	return rig
}

// failStateFinds makes every find of the state database's client fail
// (Unauthorized) until the test turns it off: the control documents, and
// the checkpoints, cannot be read.
func (rig *unreadRig) failStateFinds(t *testing.T) (off func()) {
	t.Helper()
	configureFailPoint(t, rig.admin, "failCommand", "alwaysOn", bson.D{{Key: "failCommands", Value: bson.A{"find"}},
		{Key: "appName", Value: stateApp}, {Key: "errorCode", Value: int32(13)}})
	var once atomic.Bool
	off = func() {
		if once.CompareAndSwap(false, true) {
			configureFailPoint(t, rig.admin, "failCommand", "off", nil)
		}
	}
	t.Cleanup(off)
	return off
}

// waitHeldUnread waits until the trigger name shows that it waits for its
// unreadable controls (starting, nothing read) and that the read is tried
// again.
func waitHeldUnread(t *testing.T, r *runner.Runner, name string) {
	t.Helper()
	held := func() runner.TriggerStatus {
		s := statusOf(t, r, name)
		if s.State != runner.StateStarting || s.EventsReceived != 0 || s.StreamOpen {
			t.Fatalf("%s while its controls cannot be read: state %s, stream open %v, %d events received, last error %q; want starting, nothing read",
				name, s.State, s.StreamOpen, s.EventsReceived, s.LastError)
		}
		return s
	}
	var first runner.TriggerStatus
	waitFor(t, name+" held, its controls unreadable", func() bool {
		first = held()
		return strings.HasPrefix(first.LastError, "cannot read the runtime controls: ")
	})
	waitFor(t, name+"'s controls read again", func() bool { return held().LastErrorAt.After(first.LastErrorAt) })
	if r.Ready() {
		t.Errorf("Ready() while %s waits for its controls", name)
	}
}

// waitPausedHolding waits until "orders" shows the pause of its control
// document, and checks that none of its held events was read or delivered.
func (rig *unreadRig) waitPausedHolding(t *testing.T, r *runner.Runner) {
	t.Helper()
	var s runner.TriggerStatus
	waitFor(t, "orders paused, its controls read", func() bool {
		s = statusOf(t, r, "orders")
		return s.State == runner.StatePaused && s.LastError == ""
	})
	if s.Paused == nil || s.Paused.Reason != "endpoint maintenance" || s.Paused.By != "cli" {
		t.Errorf("paused = %+v, want the control document's pause", s.Paused)
	}
	if n := rig.delivered.Load(); n != 0 || s.EventsReceived != 0 {
		t.Errorf("a paused trigger read %d events and delivered %d held ones", s.EventsReceived, n)
	}
}

// A paused trigger whose control document cannot be read at start is held
// (starting, with the reason) until it can, then starts paused: the held
// events are never delivered.
func TestPauseUnreadableAtStartHoldsTrigger(t *testing.T) {
	rig := newUnreadRig(t)
	off := rig.failStateFinds(t)
	r := startRunnerWithStore(t, unreadOrdersYAML, rig.hookURL, rig.admin, rig.st, runner.Options{Controls: true})
	waitHeldUnread(t, r, "orders")
	off()
	rig.waitPausedHolding(t, r)
}

// A paused trigger added back by a reload is held until its control
// document is read: with a healthy state database, and while it cannot be
// read (then it is read again until it can, although the controls' change
// stream stays open).
func TestReloadAddsPausedTriggerHeldUntilControlsRead(t *testing.T) {
	for _, tc := range []struct {
		name       string
		unreadable bool
	}{
		{"healthy", false},
		{"controls unreadable", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newUnreadRig(t)
			r := startRunnerWithStore(t, unreadOtherYAML, rig.hookURL, rig.admin, rig.st, runner.Options{Controls: true})
			waitFor(t, "ready", r.Ready)
			off := func() {}
			if tc.unreadable {
				off = rig.failStateFinds(t)
			}
			both := parseTrigger(t, strings.Replace(unreadOrdersYAML, "triggers:\n", "triggers:\n  - name: other\n    database: shop\n    collection: other\n    webhook:\n      url: ${HOOK_URL}\n", 1), rig.hookURL)
			res, err := r.Reload(t.Context(), both)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Added) != 1 || res.Added[0] != "orders" {
				t.Fatalf("added %v", res.Added)
			}
			if tc.unreadable {
				waitHeldUnread(t, r, "orders")
				off()
			}
			rig.waitPausedHolding(t, r)
		})
	}
}

// startRunnerWithStore runs cfgYAML's triggers with st as the state
// database until the test ends.
func startRunnerWithStore(t *testing.T, cfgYAML, url string, client *mongo.Client, st *store.Store, opts runner.Options) *runner.Runner {
	t.Helper()
	return startRunnerOn(t, parseTrigger(t, cfgYAML, url), client, st, opts)
}
