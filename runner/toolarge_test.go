package runner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// TestEventTooLargeFailsAndSkips: an update whose updateLookup event is
// 18 MiB fails the read (BSONObjectTooLarge), together with the insert
// before it in the same batch. The trigger delivers that insert (read one
// event per batch), then fails on the large event with a reason and a way
// out saying so; skip dead-letters it without its large fields and the
// trigger continues after it.
func TestEventTooLargeFailsAndSkips(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
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
	const lastError = "skipped by test; the change event is larger than 16 MiB: stored without its fullDocument, fullDocumentBeforeChange and updateDescription"
	if dl.LastError != lastError {
		t.Errorf("dead letter's last error %q, want %q", dl.LastError, lastError)
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
	ts, _ := dl.Event.Lookup("clusterTime").Timestamp()
	at := time.Unix(int64(ts), 0).UTC().Format(time.RFC3339)
	reason := "change event too large: the change event at " + at + " is larger than the 16 MiB a change stream can return (BSONObjectTooLarge), so the trigger cannot read past it"
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
