package runner_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestClusteredReloadKeepsThePayloadErrorPause: README's Safety
// section says the documented way out of a payload-error pause is "fix
// webhook.payload, reload, then run `changehook resume NAME`" and that
// "the reload alone does not lift the pause: the held event stays held
// until the resume". Clustered, a reload that changes the trigger makes
// cluster.Driver stop the unit (Runner.Stop) and start it again under the
// lease Retain kept (StartLeased with the same lease): the lease neither
// ended nor was handed off, yet Stop drops the payload-error pause
// (4d86dd7), so the trigger runs again without any resume.
func TestClusteredReloadKeepsThePayloadErrorPause(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL)
	r := startLeaseMember(t, cfg, client, st)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	coll := client.Database("shop").Collection("orders")

	l := &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}
	if err := r.StartLeased("orders", l); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger running", func() bool { s := statusOf(t, r, "orders"); return s.State == runner.StateRunning && s.StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	recv.next(t)

	// The payload errors pause it (as the dispatcher's WithPayloadErrorPause does).
	if err := r.Pause("orders", "payload error without dead letters: bad payload", runner.PauseByPayloadErrors); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger paused", func() bool { return statusOf(t, r, "orders").State == runner.StatePaused })

	// A reload that changes the trigger (the fix), as cluster.Driver and
	// the reloader apply it: Retain stops the unit's lease loop (Stop) and
	// keeps its lease; Reload swaps the definition; Add starts the unit
	// again under the kept lease.
	if err := r.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	cfg2 := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, "    operations: [insert, update]\n"), recv.srv.URL)
	if res, err := r.Reload(ctx, cfg2); err != nil || len(res.Changed) != 1 {
		t.Fatalf("reload = %+v, %v; want orders changed", res, err)
	}
	if err := r.StartLeased("orders", l); err != nil {
		t.Fatal(err)
	}

	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	select {
	case doc := <-recv.got:
		t.Errorf("delivered %v after the reload alone: the payload-error pause was lifted without a resume (status %s)",
			doc.Lookup("documentKey", "_id"), statusOf(t, r, "orders").State)
	case <-time.After(2 * time.Second):
	}
	if p, ok, err := r.Paused("orders"); err != nil || !ok || p.By != runner.PauseByPayloadErrors {
		t.Errorf("after the reload: paused %+v, %v, %v; want still paused by %s until a resume", p, ok, err, runner.PauseByPayloadErrors)
	}
}

// TestOperatorPauseOverAPayloadPauseHoldsUnderANewLease: an operator's
// pause recorded (changehook pause) while the unit shows its payload-error
// pause is not shown in memory (the payload-error pause stays shown until
// a resume). Stop keeps that pause; when the unit comes back under a new
// lease, the payload-error pause of the earlier lease is dropped and the
// unit waits for the controls, whose pause (the operator's) then holds it:
// nothing is delivered.
func TestOperatorPauseOverAPayloadPauseHoldsUnderANewLease(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	r := startOrdersForControls(t, client, recv, 0, true)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()

	if err := r.Pause("orders", "payload error without dead letters: bad payload", runner.PauseByPayloadErrors); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger paused", func() bool { return statusOf(t, r, "orders").State == runner.StatePaused })
	if msg, err := runner.RequestControl(ctx, st, "orders", "maintenance", store.ControlRequest{Kind: store.RequestPause, By: "cli"}); err != nil {
		t.Fatalf("operator pause = %q, %v", msg, err)
	}

	// The lease ends (handed off): the unit stays paused here.
	if err := r.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := r.Paused("orders"); err != nil || !ok {
		t.Errorf("after Stop: paused %v, %v; want the unit still paused", ok, err)
	}
	// It comes back under a new lease: the operator's pause holds it.
	if err := r.StartLeased("orders", &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 2}, valid: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the operator's pause applied", func() bool {
		p, ok, err := r.Paused("orders")
		return err == nil && ok && p.By == "cli"
	})
	insert(t, client.Database("shop").Collection("orders"), bson.D{{Key: "_id", Value: int32(2)}})
	recv.none(t, 300*time.Millisecond)
}

// TestPayloadErrorPauseWayOutUnderALease is
// TestPayloadErrorPauseWayOutIsTrue for `changehook run` (always
// clustered, even alone): a real payload error pauses the trigger; the
// reload with the fixed payload is applied as cluster.Driver and the
// reloader apply it (Retain: Stop, lease kept; Reload; Add: StartLeased
// under the kept lease). README (Safety): "The reload alone does not lift
// the pause: the held event stays held until the resume". With
// dead letters and max_consecutive 2 the held event (the second error) is
// instead sent again at once after the reload; with a payload still
// failing it would be dead-lettered (the streak starts again at 0).
func TestPayloadErrorPauseWayOutUnderALease(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	yaml := strings.Replace(payloadPauseYAML, "max_consecutive: 1", "max_consecutive: 2", 1)
	broken := parseTrigger(t, strings.Replace(yaml, "%s", `{ $concat: ["n=", "$fullDocument.n"] }`, 1), recv.srv.URL)
	stillBroken := parseTrigger(t, strings.Replace(yaml, "%s", `{ $concat: ["n =", "$fullDocument.n"] }`, 1), recv.srv.URL)
	r := startLeaseMember(t, broken, client, st)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	l := &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}
	if err := r.StartLeased("orders", l); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger running", func() bool { s := statusOf(t, r, "orders"); return s.State == runner.StateRunning && s.StreamOpen })
	coll := client.Database("shop").Collection("orders")
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}, {Key: "n", Value: int32(7)}}, bson.D{{Key: "_id", Value: int32(2)}, {Key: "n", Value: int32(8)}})
	waitFor(t, "trigger paused by payload_errors", func() bool {
		s := statusOf(t, r, "orders")
		return s.State == runner.StatePaused && s.Paused != nil && s.Paused.By == runner.PauseByPayloadErrors
	})
	before, err := st.CountDeadLetters(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}

	// A reload that changes the payload but does not fix it.
	if err := r.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reload(ctx, stillBroken); err != nil {
		t.Fatal(err)
	}
	if err := r.StartLeased("orders", l); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	after, err := st.CountDeadLetters(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, r, "orders"); s.State != runner.StatePaused || after != before {
		t.Errorf("after the reload alone: state %s, dead letters %d (were %d); want still paused by payload_errors with the held event held, not dead-lettered",
			s.State, after, before)
	}
}
