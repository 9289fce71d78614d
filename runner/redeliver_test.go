package runner_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/changehook/changehook/dispatcher"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// strictOrdersYAML is one strict trigger on shop.orders; %s is extra
// trigger fields (indented like them).
const strictOrdersYAML = `
triggers:
  - name: orders
    database: shop
    collection: orders
    ordering: strict
    webhook: { url: "${HOOK_URL}" }
%s`

// serverTime returns the server's clock (hello's localTime).
func serverTime(t *testing.T, client *mongo.Client) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var hello struct {
		LocalTime time.Time `bson:"localTime"`
	}
	if err := client.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		t.Fatalf("hello: %v", err)
	}
	return hello.LocalTime
}

// insertIDsBefore inserts documents from..to into coll and returns the
// whole second after the last one's cluster time, once the server's clock
// has reached it: a position at that second (they have one-second
// resolution) is after every one of them and before every change written
// from then on.
func insertIDsBefore(t *testing.T, client *mongo.Client, coll *mongo.Collection, from, to int32) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	sess, err := client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sess.EndSession(ctx)
	sctx := mongo.NewSessionContext(ctx, sess)
	for id := from; id <= to; id++ {
		if _, err := coll.InsertOne(sctx, bson.D{{Key: "_id", Value: id}}); err != nil {
			t.Fatalf("insert: %v", err)
		}
	}
	last := sess.OperationTime()
	if last == nil {
		t.Fatal("the inserts returned no operationTime")
	}
	next := time.Unix(int64(last.T)+1, 0).UTC()
	waitFor(t, "the server's clock at "+next.Format(time.RFC3339), func() bool { return !serverTime(t, client).Before(next) })
	return next
}

// receiveThrough returns the ids of the deliveries up to and including id
// last, in order.
func receiveThrough(t *testing.T, recv *receiver, last int32) []int32 {
	t.Helper()
	var ids []int32
	for {
		id := recv.next(t).Lookup("documentKey", "_id").Int32()
		ids = append(ids, id)
		if id == last {
			return ids
		}
	}
}

// missing returns the ids of from..to not in got.
func missing(got []int32, from, to int32) []int32 {
	seen := map[int32]bool{}
	for _, id := range got {
		seen[id] = true
	}
	var out []int32
	for id := from; id <= to; id++ {
		if !seen[id] {
			out = append(out, id)
		}
	}
	return out
}

// TestRedeliverKeepsACheckpointBeforeSince: redeliver --since a time after
// a paused trigger's checkpoint would move the checkpoint forward past the
// changes written during the pause, which nobody delivered. The checkpoint
// stays instead, so the resume delivers them and everything since the time,
// through the control request (which says so, is recorded once and marks
// the checkpoint) as through Runner.Redeliver.
func TestRedeliverKeepsACheckpointBeforeSince(t *testing.T) {
	for _, via := range []string{"control request", "Runner.Redeliver"} {
		t.Run(via, func(t *testing.T) {
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			st := store.New(client, stateDB)
			cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL)
			r := startRunner(t, cfg, client, runner.Options{Controls: true})
			waitFor(t, "runner ready", r.Ready)
			coll := client.Database("shop").Collection("orders")
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()

			insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
			receiveThrough(t, recv, 1)
			if err := r.Pause("orders", "test", "test"); err != nil {
				t.Fatal(err)
			}
			since := insertIDsBefore(t, client, coll, 2, 10)
			for id := int32(11); id <= 15; id++ {
				insert(t, coll, bson.D{{Key: "_id", Value: id}})
			}
			switch via {
			case "control request":
				msg, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{ID: "r1", Kind: store.RequestRedeliver, Since: since})
				want := "checkpoint is before " + since.Format(time.RFC3339) + "; delivering everything since the checkpoint ("
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(msg, want) {
					t.Errorf("redeliver = %q, want %q…", msg, want)
				}
				c, _, err := st.LoadControl(ctx, "orders")
				if err != nil || len(c.Units) != 1 || c.Applied == nil || c.Applied.ID != "r1" {
					t.Fatalf("control %+v (%v): want request r1 applied by one unit", c, err)
				}
				cp, _, err := st.LoadCheckpoint(ctx, "orders")
				if err != nil || cp.Control != "r1" {
					t.Fatalf("checkpoint control %q (%v), want r1: a later holder would apply it again", cp.Control, err)
				}
				if _, err := r.Resume(ctx, "orders", runner.ResumeFrom{}); err != nil {
					t.Fatal(err)
				}
			case "Runner.Redeliver":
				if err := r.Redeliver(ctx, "orders", since); err != nil {
					t.Fatal(err)
				}
				if _, err := r.Resume(ctx, "orders", runner.ResumeFrom{}); err != nil {
					t.Fatal(err)
				}
			}
			insert(t, coll, bson.D{{Key: "_id", Value: int32(16)}})
			got := receiveThrough(t, recv, 16)
			if lost := missing(got, 2, 15); len(lost) > 0 {
				t.Fatalf("after redeliver --since %s and resume, delivered %v: ids %v, written during the pause, were never delivered",
					since.Format(time.RFC3339), got, lost)
			}
		})
	}
}

// TestRedeliverKeepsAStartAtBeforeSince: a trigger without a checkpoint
// starts at its start_at; a redeliver from a later time must not give it a
// checkpoint there, which would skip the changes from start_at on.
func TestRedeliverKeepsAStartAtBeforeSince(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	coll := client.Database("shop").Collection("orders")
	// A change before start_at: the oplog starts before it.
	startAt := insertIDsBefore(t, client, coll, 0, 0)
	since := insertIDsBefore(t, client, coll, 1, 5)
	for id := int32(6); id <= 8; id++ {
		insert(t, coll, bson.D{{Key: "_id", Value: id}})
	}
	cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, "    start_at: "+startAt.UTC().Format(time.RFC3339)+"\n"), recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{StartStopped: true})
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	waitFor(t, "runner started", r.Ready)
	if err := r.Redeliver(ctx, "orders", since); err != nil {
		t.Fatal(err)
	}
	if cp, found, err := st.LoadCheckpoint(ctx, "orders"); err != nil || found {
		t.Fatalf("checkpoint %v, %v (%v) after the redeliver: want none (the trigger starts at its start_at)", cp, found, err)
	}
	if err := r.Start("orders"); err != nil {
		t.Fatal(err)
	}
	if got := receiveThrough(t, recv, 8); len(missing(got, 1, 8)) > 0 {
		t.Fatalf("delivered %v from start_at %s after redeliver --since %s: want 1..8", got, startAt.Format(time.RFC3339), since.Format(time.RFC3339))
	}
}

// TestRedeliverRefusesACheckpointItCannotCompare: a checkpoint whose
// resume token has no position to compare with since might be before it;
// moving it could skip changes, so the redeliver fails and leaves it.
func TestRedeliverRefusesACheckpointItCannotCompare(t *testing.T) {
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	odd := store.Checkpoint{Trigger: "orders", Token: bson.Raw(bsonDoc(t, bson.D{{Key: "other", Value: "form"}}))}
	if err := st.SaveCheckpoint(ctx, odd); err != nil {
		t.Fatal(err)
	}
	since := insertIDsBefore(t, client, client.Database("shop").Collection("orders"), 1, 1)
	cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{StartStopped: true})
	waitFor(t, "runner started", r.Ready)
	err := r.Redeliver(ctx, "orders", since)
	if err == nil || !strings.Contains(err.Error(), "cannot tell whether the checkpoint is before") {
		t.Fatalf("redeliver with an incomparable checkpoint: %v, want it refused", err)
	}
	if cp, _, err := st.LoadCheckpoint(ctx, "orders"); err != nil || string(cp.Token) != string(odd.Token) {
		t.Fatalf("checkpoint %v (%v) after the refused redeliver, want it unchanged", cp, err)
	}
}

// bsonDoc marshals d.
func bsonDoc(t *testing.T, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// behindClock is the system clock set back by an hour: a machine whose
// clock is behind the deployment's.
type behindClock struct{ dispatcher.SystemClock }

func (behindClock) Now() time.Time { return time.Now().Add(-time.Hour) }

// TestRedeliverByTheServersClock: whether redeliver's time is in the future
// is judged by the server's clock, which stamps the oplog, not this
// machine's: with a clock an hour behind, a redeliver from a second ago
// (in this machine's future) is carried out, through Runner.Redeliver as
// through a control request, and one an hour ahead of the server is still
// refused.
func TestRedeliverByTheServersClock(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	r := startRunner(t, parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL), client, runner.Options{Controls: true, Clock: behindClock{}})
	waitFor(t, "runner ready", r.Ready)
	coll := client.Database("shop").Collection("orders")
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	since := insertIDsBefore(t, client, coll, 1, 1)
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	receiveThrough(t, recv, 2)

	if err := r.Redeliver(ctx, "orders", since); err != nil {
		t.Fatalf("Redeliver from %s with this machine's clock an hour behind: %v", since.Format(time.RFC3339), err)
	}
	if got := receiveThrough(t, recv, 2); len(got) != 1 {
		t.Errorf("redelivered %v, want 2 again", got)
	}
	if _, err := runner.RequestControl(ctx, st, "orders", "", store.ControlRequest{Kind: store.RequestRedeliver, Since: since, By: "test"}); err != nil {
		t.Fatalf("redeliver request from %s: %v", since.Format(time.RFC3339), err)
	}
	if got := receiveThrough(t, recv, 2); len(got) != 1 {
		t.Errorf("redelivered %v, want 2 again", got)
	}
	future := serverTime(t, client).Add(time.Hour)
	if err := r.Redeliver(ctx, "orders", future); !errors.Is(err, runner.ErrFutureTime) {
		t.Errorf("Redeliver from an hour after the server's time = %v, want ErrFutureTime", err)
	}
}

// TestStartAppliesARedeliverRecordedWhileStopped: a redeliver recorded
// while the trigger is stopped (Runner.Stop) is pending, and the controls
// goroutine holds the trigger until it is applied. Runner.Start, like
// StartLeased, makes the runner apply it: the changes since the time are
// delivered again, the request is recorded as applied, and new changes
// follow (before, nothing at all was delivered after Start).
func TestStartAppliesARedeliverRecordedWhileStopped(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	r := startRunner(t, parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL), client, runner.Options{Controls: true})
	waitFor(t, "runner ready", r.Ready)
	coll := client.Database("shop").Collection("orders")
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()

	since := insertIDsBefore(t, client, coll, 100, 100)
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	receiveThrough(t, recv, 1)
	if err := r.Stop(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second) // nobody runs it: the request stays pending
	_, err := runner.RequestControl(wctx, st, "orders", "", store.ControlRequest{ID: "r1", Kind: store.RequestRedeliver, Since: since, By: "cli"})
	wcancel()
	if !errors.As(err, new(*runner.PendingError)) {
		t.Fatalf("redeliver of a stopped trigger = %v, want a *runner.PendingError", err)
	}
	if err := r.Start("orders"); err != nil {
		t.Fatal(err)
	}
	if got := receiveThrough(t, recv, 1); len(got) != 1 {
		t.Errorf("after Start, delivered %v before id 1 again, want only 1: the changes since %s", got, since.Format(time.RFC3339))
	}
	waitFor(t, "redeliver r1 recorded as applied", func() bool {
		c, _, err := st.LoadControl(ctx, "orders")
		return err == nil && c.Applied != nil && c.Applied.ID == "r1" && c.Applied.Error == ""
	})
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	receiveThrough(t, recv, 2)
	if s := statusOf(t, r, "orders"); s.State != runner.StateRunning {
		t.Errorf("state %s after Start, want running", s.State)
	}
}

// TestPendingRedeliverIsNotDroppedByTheNextControl: a redeliver recorded
// while no changehook runs the trigger stays pending; the trigger's next
// control (a pause) is refused naming it instead of replacing it, so the
// next changehook to run the trigger delivers the changes since the time
// again, as it was told (before, the pause silently dropped it).
func TestPendingRedeliverIsNotDroppedByTheNextControl(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	st := store.New(client, stateDB)
	cfg := parseTrigger(t, fmt.Sprintf(strictOrdersYAML, ""), recv.srv.URL)
	r1, err := runner.New(cfg, client, st, runner.Options{Controls: true, CheckpointInterval: 20 * time.Millisecond,
		ShutdownGrace: 5 * time.Second, Version: "test", Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r1.Run(rctx) }()
	waitFor(t, "runner ready", r1.Ready)
	coll := client.Database("shop").Collection("orders")
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()

	since := insertIDsBefore(t, client, coll, 100, 100)
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "_id", Value: int32(2)}})
	receiveThrough(t, recv, 2)
	stop() // no changehook runs the trigger now
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 3*time.Second) // nobody runs it: the request stays pending
	_, err = runner.RequestControl(wctx, st, "orders", "", store.ControlRequest{Kind: store.RequestRedeliver, Since: since, By: "cli"})
	wcancel()
	if !errors.As(err, new(*runner.PendingError)) {
		t.Fatalf("redeliver = %v, want it recorded and pending", err)
	}
	_, err = runner.RequestControl(ctx, st, "orders", "hold on", store.ControlRequest{Kind: store.RequestPause, By: "cli"})
	want := "pause orders: refused: orders has a request still pending, redeliver --since " + since.Format(time.RFC3339)
	if !errors.As(err, new(*store.PendingRequestError)) || !strings.HasPrefix(err.Error(), want) || errors.Is(err, runner.ErrNotRecorded) {
		t.Fatalf("pause while a redeliver is pending = %v, want %q…", err, want)
	}
	r2 := startRunner(t, cfg, client, runner.Options{Controls: true})
	if got := receiveThrough(t, recv, 2); !slices.Equal(got, []int32{1, 2}) {
		t.Fatalf("after the restart, delivered %v, want 1 and 2 again: the changes since %s", got, since.Format(time.RFC3339))
	}
	if s := statusOf(t, r2, "orders"); s.State == runner.StatePaused {
		t.Errorf("trigger paused by the refused pause")
	}
}
