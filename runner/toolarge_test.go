package runner_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/deadletter"
	"github.com/changehook/changehook/internal/testhooks"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// startDBWithoutSplit is startDB for a server that refuses
// $changeStreamSplitLargeEvent, as MongoDB before 6.0.9 does: a trigger
// then fails on a change event too large to read.
func startDBWithoutSplit(t *testing.T) *mongo.Client {
	t.Helper()
	srv, client := startServer(t, devdb.Options{})
	testhooks.RefuseSplitLargeEvent.Store(srv.Addr(), true)
	t.Cleanup(func() { testhooks.RefuseSplitLargeEvent.Delete(srv.Addr()) })
	return client
}

// TestEventTooLargeFailsAndSkips: on a server that cannot split large
// change events, an update whose updateLookup event is
// 18 MiB fails the read (BSONObjectTooLarge), together with the insert
// before it in the same batch. The trigger delivers that insert (read one
// event per batch), then fails on the large event with a reason and a way
// out saying so; skip dead-letters it without its large fields and the
// trigger continues after it.
func TestEventTooLargeFailsAndSkips(t *testing.T) {
	t.Parallel()
	client := startDBWithoutSplit(t)
	recv := newReceiver(t)
	cfg := parseTrigger(t, `
triggers:
  - name: big
    database: shop
    collection: big
    operations: [insert, update]
    full_document: updateLookup
    webhook: { url: "${HOOK_URL}" }
`, recv.srv.URL)
	r := startRunner(t, cfg, client, runner.Options{})
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "big").StreamOpen })
	coll := client.Database("shop").Collection("big")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	if id := docID(recv.next(t)); id != 1 {
		t.Fatalf("first delivery %d, want 1", id)
	}
	// Stopped, so that the insert of 2 and the large update are in the
	// first batch read when it starts again.
	if err := r.Stop(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "big", Value: strings.Repeat("x", 9<<20)}}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start("big"); err != nil {
		t.Fatal(err)
	}
	if id := docID(recv.next(t)); id != 2 {
		t.Fatalf("delivery after the restart %d, want 2", id)
	}
	waitFor(t, "trigger failed", func() bool { return statusOf(t, r, "big").State == runner.StateFailed })
	// The receiver has the insert of 2, but its answer may not have reached
	// the trigger yet: a skip before that is refused (it would dead-letter
	// the insert), as its message says.
	waitFor(t, "the insert of 2 acknowledged", func() bool { return statusOf(t, r, "big").HeadOfLine == nil })
	failed := statusOf(t, r, "big")

	id, err := r.Skip(ctx, "big", "test")
	if err != nil {
		t.Fatalf("skip: %v", err)
	}
	dls, err := store.New(client, stateDB).ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].WebhookID != id {
		t.Fatalf("dead letters %v, want one, %s", dls, id)
	}
	dl := dls[0]
	// Marked as a dead letter whose event was not kept, with the size
	// the server's error named (the update's 9 MiB twice: its
	// fullDocument and its updateDescription).
	if dl.Trimmed != dispatcher.TrimmedEvent || dl.EventSize <= 18<<20 || dl.EventSize > 19<<20 {
		t.Errorf("dead letter trimmed %q, event size %d; want %q and the event's size, a little over 18 MiB", dl.Trimmed, dl.EventSize, dispatcher.TrimmedEvent)
	}
	lastError := fmt.Sprintf("skipped by test; the change event is larger than the 16 MiB a change stream can return (%d bytes): "+
		"stored with only what identifies the change, not its fullDocument, fullDocumentBeforeChange and updateDescription", dl.EventSize)
	if dl.LastError != lastError {
		t.Errorf("dead letter's last error %q, want %q", dl.LastError, lastError)
	}
	// Never attempted: skipped, with no attempt to describe.
	if dl.SkippedBy != "test" || dl.LastReason != "skipped" || dl.Attempts != 0 || dl.LastStatus != 0 || dl.LastResponse != "" {
		t.Errorf("dead letter skipped by %q, reason %q, %d attempts, status %d, response %q; want test, skipped and none",
			dl.SkippedBy, dl.LastReason, dl.Attempts, dl.LastStatus, dl.LastResponse)
	}
	op, _ := dl.Event.Lookup("operationType").StringValueOK()
	if op != "update" || docID(dl.Event) != 1 {
		t.Errorf("dead-lettered event %s, want the update of 1", dl.Event)
	}
	for _, f := range []string{"fullDocument", "fullDocumentBeforeChange", "updateDescription"} {
		if _, err := dl.Event.LookupErr(f); err == nil {
			t.Errorf("dead-lettered event has %s", f)
		}
	}
	// A replay refuses it as it refuses any dead letter whose event was
	// not kept: nothing is sent (the event without its documents is not
	// the change), it stays, and the error says how to deliver it again.
	rp := deadletter.Replayer{Store: store.New(client, stateDB), Config: cfg, NewSender: func(t *triggers.Trigger) (*dispatcher.Sender, error) {
		return dispatcher.NewSender(t)
	}}
	var res []deadletter.Result
	if sum, err := rp.Replay(ctx, deadletter.Selection{IDs: []string{id}}, func(r deadletter.Result) { res = append(res, r) }); err != nil || sum.Failed != 1 ||
		len(res) != 1 || !errors.Is(res[0].Err, deadletter.ErrEventNotKept) || res[0].Attempts != 0 {
		t.Errorf("replay of the skipped event = %+v, %v, %v; want refused, not attempted (ErrEventNotKept)", sum, res, err)
	} else if !strings.Contains(res[0].Err.Error(), "a change stream returns this change (larger than 16 MiB) only in fragments, which changehook reassembles on MongoDB 7.0 and 6.0.9 and later; "+
		"on an older server a redeliver would stop at it again, so there first give the trigger a `project` that leaves out fullDocument") {
		t.Errorf("replay's error %q does not say to make the event smaller before a redeliver", res[0].Err)
	}
	if _, ok, err := store.New(client, stateDB).GetDeadLetter(ctx, id); err != nil || !ok {
		t.Errorf("dead letter after the refused replay: found %v, %v; want it kept", ok, err)
	}
	recv.none(t, 100*time.Millisecond)
	ts, _ := dl.Event.Lookup("clusterTime").Timestamp()
	at := time.Unix(int64(ts), 0).UTC().Format(time.RFC3339)
	reason := "change event too large: the change event at " + at + " is larger than the 16 MiB a change stream can return (BSONObjectTooLarge), so the trigger cannot read past it" +
		"; the server cannot split large change events ($changeStreamSplitLargeEvent needs MongoDB 7.0 or 6.0.9 and later): " +
		"it refused the stage (Location40324 40324): Unrecognized pipeline stage name: '$changeStreamSplitLargeEvent'"
	const wayOut = "make the trigger's events smaller — a `project` that drops the large fields (fullDocument, fullDocumentBeforeChange, updateDescription), " +
		"or no `full_document: updateLookup` / `full_document_before_change` (pre-images) — and reload, then run `changehook resume big` (the event is then delivered as projected); " +
		"or run `changehook skip big`: it dead-letters the event without its fullDocument, fullDocumentBeforeChange and updateDescription and continues after it"
	if failed.LastError != reason || failed.WayOut != wayOut {
		t.Errorf("failed with\n%q\n%q\nwant\n%q\n%q", failed.LastError, failed.WayOut, reason, wayOut)
	}

	// The trigger continues after the skipped event.
	waitFor(t, "running again", func() bool { return statusOf(t, r, "big").StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	if id := docID(recv.next(t)); id != 3 {
		t.Fatalf("delivery after the skip %d, want 3", id)
	}
}

// TestSkipOfATooLargeEventWaitsForTheEventsBeforeIt: the trigger fails on
// a too-large update while the insert of 2, read before it, is still
// being delivered (its attempt has not failed). A skip then would find the
// insert after the checkpoint: it is refused without stopping the trigger,
// so the insert's delivery goes on and nothing is dead-lettered. Once the
// insert is delivered, the skip dead-letters the large update, the event
// the server's error named, and the trigger continues.
func TestSkipOfATooLargeEventWaitsForTheEventsBeforeIt(t *testing.T) {
	t.Parallel()
	client := startDBWithoutSplit(t)
	arrived2, release2 := make(chan struct{}, 16), make(chan struct{})
	type delivery struct{ id, n int32 }
	delivered := make(chan delivery, 16)
	hook := scriptedHook(t, func(ctx context.Context, id int32, n int) int {
		if id == 2 {
			arrived2 <- struct{}{}
			select {
			case <-release2:
			case <-ctx.Done(): // cut off: the trigger was stopped
				return http.StatusServiceUnavailable
			}
		}
		delivered <- delivery{id, int32(n)}
		return http.StatusNoContent
	})
	cfg := parseTrigger(t, `
triggers:
  - name: big
    database: shop
    collection: big
    operations: [insert, update]
    full_document: updateLookup
    webhook: { url: "${HOOK_URL}", timeout: 30s }
`, hook.URL)
	r := startRunner(t, cfg, client, runner.Options{ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "big").StreamOpen })
	coll := client.Database("shop").Collection("big")
	st := store.New(client, stateDB)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	next := func() delivery {
		t.Helper()
		select {
		case d := <-delivered:
			return d
		case <-ctx.Done():
			t.Fatal("no delivery")
			return delivery{}
		}
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	if d := next(); d.id != 1 {
		t.Fatalf("first delivery %d, want 1", d.id)
	}
	if err := r.Stop(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "big", Value: strings.Repeat("x", 9<<20)}}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start("big"); err != nil {
		t.Fatal(err)
	}
	<-arrived2
	waitFor(t, "trigger failed", func() bool { return statusOf(t, r, "big").State == runner.StateFailed })
	head := statusOf(t, r, "big").HeadOfLine
	if head == nil || head.LastReason != "" {
		t.Fatalf("head of line %+v, want the insert of 2 in flight", head)
	}

	id, err := r.Skip(ctx, "big", "test")
	want := "skip event big: it failed on a change event too large to read, but still delivers the events it read before it (its head_of_line " +
		head.WebhookID + " has not failed an attempt), so nothing was skipped: a skip now would dead-letter one of them, not the large event; " +
		"once they are delivered (it shows no head_of_line), run `changehook skip big` again"
	if err == nil || err.Error() != want {
		t.Fatalf("skip while the insert before the large event is delivered = %q, %v;\nwant the error %q", id, err, want)
	}
	if n, err := st.CountDeadLetters(ctx, "big"); err != nil || n != 0 {
		t.Fatalf("%d dead letters (%v) after the refused skip, want none", n, err)
	}
	close(release2)
	if d := next(); d != (delivery{2, 0}) {
		t.Fatalf("delivery %+v, want the insert of 2 on its first request (the refused skip must not cut it off)", d)
	}
	waitFor(t, "no head of line", func() bool { return statusOf(t, r, "big").HeadOfLine == nil })

	id, err = r.Skip(ctx, "big", "test")
	if err != nil {
		t.Fatalf("skip once the events before the large one are delivered: %v", err)
	}
	dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].WebhookID != id {
		t.Fatalf("dead letters %v, want one, %s", dls, id)
	}
	if op, _ := dls[0].Event.Lookup("operationType").StringValueOK(); op != "update" || docID(dls[0].Event) != 1 {
		t.Fatalf("dead-lettered %s, want the large update of 1", dls[0].Event)
	}
	waitFor(t, "running again", func() bool { return statusOf(t, r, "big").StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	if d := next(); d.id != 3 {
		t.Fatalf("delivery after the skip %+v, want the insert of 3", d)
	}
}

// TestSkipOfAFailingEventBeforeATooLargeOne: the trigger fails on a
// too-large update while the insert of 2, read before it, is retried (the
// endpoint rejects it): it is stuck on the insert, which a skip
// dead-letters as it would without the large event. The trigger then
// starts again and fails on the large update alone, which the next skip
// dead-letters.
func TestSkipOfAFailingEventBeforeATooLargeOne(t *testing.T) {
	t.Parallel()
	client := startDBWithoutSplit(t)
	delivered := make(chan int32, 16)
	hook := scriptedHook(t, func(_ context.Context, id int32, _ int) int {
		if id == 2 {
			return http.StatusServiceUnavailable
		}
		delivered <- id
		return http.StatusNoContent
	})
	cfg := parseTrigger(t, `
triggers:
  - name: big
    database: shop
    collection: big
    operations: [insert, update]
    full_document: updateLookup
    dead_letter: false
    retry: { initial_backoff: 10ms, max_backoff: 10ms }
    circuit: { failures: 0, open_on: [] }
    webhook: { url: "${HOOK_URL}" }
`, hook.URL)
	r := startRunner(t, cfg, client, runner.Options{ShutdownGrace: 50 * time.Millisecond})
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "big").StreamOpen })
	coll := client.Database("shop").Collection("big")
	st := store.New(client, stateDB)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	next := func() int32 {
		t.Helper()
		select {
		case id := <-delivered:
			return id
		case <-ctx.Done():
			t.Fatal("no delivery")
			return 0
		}
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	if id := next(); id != 1 {
		t.Fatalf("first delivery %d, want 1", id)
	}
	if err := r.Stop(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "big", Value: strings.Repeat("x", 9<<20)}}}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start("big"); err != nil {
		t.Fatal(err)
	}
	var head *runner.HeadOfLine
	waitFor(t, "failed, with the insert of 2 failing", func() bool {
		s := statusOf(t, r, "big")
		head = s.HeadOfLine
		return s.State == runner.StateFailed && head != nil && head.LastReason != ""
	})

	id, err := r.Skip(ctx, "big", "test")
	if err != nil || id != head.WebhookID {
		t.Fatalf("skip of the failing insert = %q, %v; want %s", id, err, head.WebhookID)
	}
	dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "big"})
	if err != nil || len(dls) != 1 || docID(dls[0].Event) != 2 {
		t.Fatalf("dead letters %v (%v), want the insert of 2's", dls, err)
	}

	waitFor(t, "failed again, on the large update alone", func() bool {
		s := statusOf(t, r, "big")
		return s.State == runner.StateFailed && s.HeadOfLine == nil && strings.HasPrefix(s.LastError, "change event too large")
	})
	if _, err := r.Skip(ctx, "big", "test"); err != nil {
		t.Fatalf("skip of the large update: %v", err)
	}
	dls, err = st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "big"})
	if err != nil || len(dls) != 2 {
		t.Fatalf("dead letters %v (%v), want two", dls, err)
	}
	ops := map[string]int32{}
	for _, dl := range dls {
		op, _ := dl.Event.Lookup("operationType").StringValueOK()
		ops[op] = docID(dl.Event)
	}
	if ops["insert"] != 2 || ops["update"] != 1 {
		t.Fatalf("dead-lettered %v, want the insert of 2 and the update of 1", ops)
	}
	waitFor(t, "running again", func() bool { return statusOf(t, r, "big").StreamOpen })
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	if id := next(); id != 3 {
		t.Fatalf("delivery after the skips %d, want 3", id)
	}
}
