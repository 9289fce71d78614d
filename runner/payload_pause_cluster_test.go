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
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// TestRepartitionedUnitsDropAPayloadPauseOfAnEarlierLease: a payload-error pause a reload's repartitioning carried into new
// partitions belongs to no lease of theirs: a unit taken under its first lease
// here starts (after the controls are read) instead of staying paused.
func TestRepartitionedUnitsDropAPayloadPauseOfAnEarlierLease(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	perDoc := strings.Replace(fmt.Sprintf(strictOrdersYAML, ""), "ordering: strict", "ordering: per_document", 1)
	cfg := parseTrigger(t, perDoc, recv.srv.URL)
	r := startLeaseMember(t, cfg, client, st)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := r.StartLeased("orders", &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger running", func() bool { s := statusOf(t, r, "orders"); return s.State == runner.StateRunning && s.StreamOpen })
	if err := r.Pause("orders", "payload error without dead letters: bad payload", runner.PauseByPayloadErrors); err != nil {
		t.Fatal(err)
	}
	// The lease is handed off: another member runs the trigger now.
	if err := r.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, r, "orders"); s.State != runner.StateStandby {
		t.Fatalf("after the handoff: state %s, want standby", s.State)
	}
	// A reload repartitions the trigger (2 partitions).
	cfg2 := parseTrigger(t, perDoc+"    partitions: 2\n", recv.srv.URL)
	if _, err := r.Reload(ctx, cfg2); err != nil {
		t.Fatal(err)
	}
	// a acquires partition 0's lease (its first lease of that unit).
	if err := r.StartLeased("orders/p0of2", &testLease{key: "orders/p0of2", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the controls are read
	if p, ok, err := r.Paused("orders/p0of2"); err == nil && ok && p.By == runner.PauseByPayloadErrors {
		t.Errorf("orders/p0of2, started under a lease a never had, is held by the payload-error pause of a's earlier (ended) lease of orders since %s; Ready() = %v",
			p.Since.Format(time.RFC3339), r.Ready())
	}
}

// TestRedeliverOfAPositionNotFoundIsRefused: a redeliver of a unit failed because its checkpoint's resume
// token was not found, whose checkpoint is after the time, is refused with
// the way out (resume --from), rather than moving the checkpoint back and
// leaving the unit failed.
func TestRedeliverOfAPositionNotFoundIsRefused(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL)
	coll := client.Database("shop").Collection("orders")
	pad := client.Database("shop").Collection("pad")
	ctx := t.Context()
	r := startRunnerOn(t, cfg, client, st, runner.Options{Controls: true})
	waitFor(t, "trigger running", func() bool { s := statusOf(t, r, "orders"); return s.State == runner.StateRunning && s.StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	recv.next(t)
	if err := r.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	// since: a second boundary in the past; then a change in another
	// collection whose token becomes the trigger's checkpoint (it is no
	// position of the trigger's stream).
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second)))
	since := time.Now().UTC().Truncate(time.Second)
	time.Sleep(1100 * time.Millisecond)
	cs, err := pad.Watch(ctx, mongo.Pipeline{}, options.ChangeStream())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
	insert(t, pad, bson.D{{Key: "_id", Value: int32(1)}})
	if !cs.Next(ctx) {
		t.Fatalf("pad stream: %v", cs.Err())
	}
	if err := st.SaveCheckpoint(ctx, store.Checkpoint{Trigger: "orders", Token: cs.Current.Lookup("_id").Document()}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start("orders"); err != nil {
		t.Fatal(err)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	waitFor(t, "trigger failed with its position not found", func() bool {
		s := statusOf(t, r, "orders")
		return s.State == runner.StateFailed && !s.Retrying && strings.Contains(s.LastError, "resume token was not found")
	})
	if err := r.Redeliver(ctx, "orders", since); err != nil {
		t.Logf("redeliver refused (acceptable): %v", err)
		return
	}
	// Accepted: every change since since (id 3) must now be delivered.
	select {
	case doc := <-recv.got:
		t.Logf("delivered %v", doc.Lookup("documentKey", "_id"))
	case <-time.After(5 * time.Second):
		s := statusOf(t, r, "orders")
		t.Errorf("redeliver since %s succeeded, but nothing was delivered: state %s, last error %q", since.Format(time.RFC3339), s.State, s.LastError)
	}
}

// TestStandbyUnitShowsNoStalePayloadPause: once this member's lease of a unit it paused by its payload
// errors ended, the unit shows standby without that pause or its way out:
// the member running it shows its own.
func TestStandbyUnitShowsNoStalePayloadPause(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL)
	r := startLeaseMember(t, cfg, client, st)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	if err := r.StartLeased("orders", &testLease{key: "orders", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger running", func() bool { s := statusOf(t, r, "orders"); return s.State == runner.StateRunning && s.StreamOpen })
	if err := r.Pause("orders", "payload error without dead letters: bad payload", runner.PauseByPayloadErrors); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(ctx, "orders"); err != nil { // handed off
		t.Fatal(err)
	}
	s := statusOf(t, r, "orders")
	if s.State != runner.StateStandby {
		t.Fatalf("state %s, want standby", s.State)
	}
	if s.Paused != nil || s.WayOut != "" {
		t.Errorf("standby unit (another member runs it) still shows paused %+v and way out %q", s.Paused, s.WayOut)
	}
}

// TestPayloadErrorOfOnePartitionLeavesPartitionsHeldElsewhere: a payload error of one partition pauses the partitions held
// here, not those another member runs, which start unpaused when this member
// takes them.
func TestPayloadErrorOfOnePartitionLeavesPartitionsHeldElsewhere(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	yaml := strings.Replace(fmt.Sprintf(strictOrdersYAML, "    partitions: 2\n"), "ordering: strict", "ordering: per_document", 1)
	cfg := parseTrigger(t, yaml, recv.srv.URL)
	r := startLeaseMember(t, cfg, client, st)
	if err := r.StartLeased("orders/p0of2", &testLease{key: "orders/p0of2", fence: store.Fence{Owner: "a", Epoch: 1}, valid: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "p0 running", func() bool {
		s := statusOf(t, r, "orders/p0of2")
		return s.State == runner.StateRunning && s.StreamOpen
	})
	// p0's payload error, as WithPayloadErrorPause reports it.
	if err := r.Pause("orders", "payload error without dead letters: bad payload", runner.PauseByPayloadErrors); err != nil {
		t.Fatal(err)
	}
	// b goes away; a acquires p1 (its first lease of p1).
	if err := r.StartLeased("orders/p1of2", &testLease{key: "orders/p1of2", fence: store.Fence{Owner: "a", Epoch: 2}, valid: true}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the controls are read
	if p, ok, err := r.Paused("orders/p1of2"); err == nil && ok && p.By == runner.PauseByPayloadErrors {
		t.Errorf("orders/p1of2, held by no lease of a when p0 met its payload error, is held paused by that error on a (Ready() = %v)", r.Ready())
	}
}
