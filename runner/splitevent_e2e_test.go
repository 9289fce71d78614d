package runner_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/dispatcher"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// largeYAML is trigger big. Its webhook timeout is a bound against a hang:
// with the default 10 s, an 18 MiB request under the race detector on a busy
// machine could time out and be delivered again, which these tests, counting
// deliveries, would take for a defect.
const largeYAML = `
defaults:
  webhook: { timeout: 2m }
triggers:
  - name: big
    database: shop
    collection: big
    operations: [insert, update]
    full_document: updateLookup
    webhook: { url: "${HOOK_URL}" }
`

// largeUpdate inserts the document 1 and, with the trigger stopped
// (r.Stop), the document 2 and an update of 1 that sets a 9 MiB field:
// with updateLookup its event holds the field twice (fullDocument and
// updateDescription), 18 MiB, more than a change stream returns whole.
// The trigger starts again with the insert of 2 and the update in its
// first batch. It returns the 9 MiB value.
func largeUpdate(t *testing.T, r *runner.Runner, recv *receiver, coll *mongo.Collection) string {
	t.Helper()
	big := largeUpdateStopped(t, r, recv, coll)
	if err := r.Start("big"); err != nil {
		t.Fatal(err)
	}
	return big
}

// largeUpdateStopped is largeUpdate, but leaves the trigger stopped (for
// the test to set a fail point before it starts it).
func largeUpdateStopped(t *testing.T, r *runner.Runner, recv *receiver, coll *mongo.Collection) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}})
	if id := docID(recv.next(t)); id != 1 {
		t.Fatalf("first delivery %d, want 1", id)
	}
	if err := r.Stop(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(2)}})
	big := strings.Repeat("x", 9<<20)
	if _, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "big", Value: big}}}}); err != nil {
		t.Fatal(err)
	}
	return big
}

// startBigOnFaultDB starts a devdb with test commands and runs trigger big
// of yaml (its webhook hookURL) on it with opts, reading with a client of
// application faultApp (which fail points can name) and keeping its state
// through admin, a client of its own; it returns once the stream is open.
func startBigOnFaultDB(t *testing.T, yaml, hookURL string, opts runner.Options) (admin *mongo.Client, st *store.Store, r *runner.Runner) {
	t.Helper()
	srv, admin := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
	client := devdbtest.Connect(t, srv.URI(), options.Client().SetAppName(faultApp))
	st = store.New(admin, stateDB)
	r = startRunnerOn(t, parseTrigger(t, yaml, hookURL), client, st, opts)
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "big").StreamOpen })
	return admin, st, r
}

// startBlockedAtSecondFragment starts trigger big, left stopped by
// largeUpdateStopped, with a fail point blocking the runner's getMores for
// a minute: the stream opened with $changeStreamSplitLargeEvent returns
// the insert of 2 and the update's first fragment (9 MiB) in its first
// batch; the second fragment, which does not fit in the same reply, needs
// the runner's first getMore, which blocks. It checks that the insert of 2
// is delivered and returns once that getMore is blocked, the trigger
// holding the first fragment. The test turns the fail point off
// (configureFailPoint "off") to let the trigger read on; t.Cleanup turns
// it off too, before the runner stops.
func startBlockedAtSecondFragment(t *testing.T, admin *mongo.Client, r *runner.Runner, recv *receiver) {
	t.Helper()
	block := bson.D{{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "appName", Value: faultApp},
		{Key: "blockConnection", Value: true}, {Key: "blockTimeMS", Value: 60000}}
	configureFailPoint(t, admin, "failCommand", "alwaysOn", block)
	t.Cleanup(func() { configureFailPoint(t, admin, "failCommand", "off", nil) })
	if err := r.Start("big"); err != nil {
		t.Fatal(err)
	}
	if id := docID(recv.next(t)); id != 2 {
		t.Fatalf("delivery after the start %d, want 2", id)
	}
	waitFor(t, "the getMore of the second fragment blocked", func() bool {
		return configureFailPoint(t, admin, "failCommand", "alwaysOn", block) > 0
	})
}

// TestLargeEventDeliveredWhole: an update whose event is 18 MiB fails the
// stream's read (BSONObjectTooLarge); the trigger reopens it with
// $changeStreamSplitLargeEvent, delivers the insert read before the update
// and then the update whole — its fields from both fragments, without
// splitEvent, with the last fragment's resume token — counts it as
// reassembled and goes on. A restart from a checkpoint that is that
// token (a fragment's: MongoDB refuses to resume from it without the
// stage) continues with the next change.
func TestLargeEventDeliveredWhole(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	recv := newReceiver(t)
	reg := prometheus.NewRegistry()
	cfg := parseTrigger(t, largeYAML, recv.srv.URL)
	st := store.New(client, stateDB)
	r := startRunnerOn(t, cfg, client, st, runner.Options{Registry: reg})
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "big").StreamOpen })
	coll := client.Database("shop").Collection("big")
	// The redeliver below starts at the large change's second, which must
	// be after the oplog's first change: wait for the server's clock to
	// pass the second devdb started in.
	started, err := runner.ServerTime(t.Context(), client)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the next second on the server", func() bool {
		now, err := runner.ServerTime(t.Context(), client)
		return err == nil && now.Unix() > started.Unix()
	})
	big := largeUpdate(t, r, recv, coll)

	if id := docID(recv.next(t)); id != 2 {
		t.Fatalf("delivery after the restart %d, want 2", id)
	}
	ev := recv.next(t)
	if op, _ := ev.Lookup("operationType").StringValueOK(); op != "update" || docID(ev) != 1 {
		t.Fatalf("delivered %s, want the update of 1", firstBytes(ev))
	}
	if s, _ := ev.Lookup("fullDocument", "big").StringValueOK(); s != big {
		t.Errorf("fullDocument.big has %d bytes, want the %d set", len(s), len(big))
	}
	if s, _ := ev.Lookup("updateDescription", "updatedFields", "big").StringValueOK(); s != big {
		t.Errorf("updateDescription.updatedFields.big has %d bytes, want the %d set", len(s), len(big))
	}
	for _, f := range []string{"_id", "clusterTime", "ns", "documentKey", "wallTime"} {
		if _, err := ev.LookupErr(f); err != nil {
			t.Errorf("reassembled event lacks %s", f)
		}
	}
	if _, err := ev.LookupErr("splitEvent"); err == nil {
		t.Error("reassembled event has splitEvent")
	}
	if len(ev) <= 16<<20 {
		t.Errorf("delivered event has %d bytes, want more than 16 MiB", len(ev))
	}
	token := ev.Lookup("_id").Document()
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	if id := docID(recv.next(t)); id != 3 {
		t.Fatalf("delivery after the large event %d, want 3", id)
	}
	if v, ok := metricValue(t, reg, "changehook_events_reassembled_total", map[string]string{"trigger": "big"}); !ok || v != 1 {
		t.Errorf("changehook_events_reassembled_total = %v (present %v), want 1", v, ok)
	}
	if st := statusOf(t, r, "big"); st.State != runner.StateRunning || st.EventsReceived != 4 {
		t.Errorf("status %s with %d events received, want running with 4", st.State, st.EventsReceived)
	}

	// Stopped with the checkpoint at the large event's token, as a crash
	// right after its delivery leaves it: the trigger resumes after it.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := r.Stop(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveCheckpoint(ctx, store.Checkpoint{Trigger: "big", Token: bson.Raw(token)}); err != nil {
		t.Fatal(err)
	}
	plain, err := coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(token))
	if err == nil {
		_ = plain.Close(ctx)
		t.Fatal("devdb resumed from a fragment's token without $changeStreamSplitLargeEvent; MongoDB refuses that")
	}
	if err := r.Start("big"); err != nil {
		t.Fatal(err)
	}
	if id := docID(recv.next(t)); id != 3 {
		t.Fatalf("first delivery after a restart from the large event's token: %d, want 3 (the insert after it)", id)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(4)}})
	if id := docID(recv.next(t)); id != 4 {
		t.Fatalf("delivery %d, want 4", id)
	}

	// A reload whose project leaves the large fields out: the event no
	// longer splits as it did, and MongoDB cannot resume after its
	// fragment. The trigger fails naming the redeliver from the event's
	// second and the resume, which deliver it, projected, and the changes
	// after it.
	if err := r.Stop(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveCheckpoint(ctx, store.Checkpoint{Trigger: "big", Token: bson.Raw(token)}); err != nil {
		t.Fatal(err)
	}
	projected := parseTrigger(t, strings.Replace(largeYAML, "full_document: updateLookup", "full_document: updateLookup\n    project: { fullDocument: 0, updateDescription: 0 }", 1), recv.srv.URL)
	if _, err := r.Reload(ctx, projected); err != nil {
		t.Fatal(err)
	}
	if err := r.Start("big"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger failed", func() bool { return statusOf(t, r, "big").State == runner.StateFailed })
	ts, _ := ev.Lookup("clusterTime").Timestamp()
	at := time.Unix(int64(ts), 0).UTC()
	failed := statusOf(t, r, "big")
	wantWay := "run `changehook redeliver big --since TIME` with TIME the second of that event (" + at.Format(time.RFC3339) + ")"
	if !strings.Contains(failed.LastError, "Attempted to resume from a split event") || !strings.HasPrefix(failed.WayOut, wantWay) {
		t.Errorf("failed with %q, way out %q; want the server's refusal and %q", failed.LastError, failed.WayOut, wantWay)
	}
	if err := r.Redeliver(ctx, "big", at); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resume(ctx, "big", runner.ResumeFrom{}); err != nil {
		t.Fatal(err)
	}
	// The changes of that second before the update (the inserts of 1
	// and 2) come again first.
	again := recv.next(t)
	for op, _ := again.Lookup("operationType").StringValueOK(); op == "insert" && docID(again) < 3; op, _ = again.Lookup("operationType").StringValueOK() {
		again = recv.next(t)
	}
	if op, _ := again.Lookup("operationType").StringValueOK(); op != "update" || len(again) > 1<<20 {
		t.Errorf("delivery after the redeliver: %s; want the update of 1, projected", firstBytes(again))
	}
	for _, want := range []int32{3, 4} {
		if id := docID(recv.next(t)); id != want {
			t.Fatalf("delivery after the redeliver %d, want %d", id, want)
		}
	}
}

// firstBytes is the start of raw's Extended JSON, for messages about
// events too large to print.
func firstBytes(raw bson.Raw) string {
	s := raw.String()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// TestLargeEventDeadLetteredTrimmed: a reassembled event of 18 MiB the
// endpoint refuses (413) is dead-lettered as any event too large for a
// dead letter: with only what identifies the change and the event's size,
// and the trigger goes on after it.
func TestLargeEventDeadLetteredTrimmed(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	got := make(chan bson.Raw, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > 1<<20 {
			http.Error(w, "request entity too large", http.StatusRequestEntityTooLarge)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var doc bson.D
		if err := bson.UnmarshalExtJSON(body, false, &doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		raw, _ := bson.Marshal(doc)
		got <- raw
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := parseTrigger(t, strings.Replace(largeYAML, `webhook: { url: "${HOOK_URL}" }`,
		`webhook: { url: "${HOOK_URL}" }
    retry: { max_attempts: 1 }`, 1), srv.URL)
	st := store.New(client, stateDB)
	r := startRunnerOn(t, cfg, client, st, runner.Options{})
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "big").StreamOpen })
	coll := client.Database("shop").Collection("big")
	recv := &receiver{got: got}
	largeUpdate(t, r, recv, coll)
	if id := docID(recv.next(t)); id != 2 {
		t.Fatalf("delivery after the restart %d, want 2", id)
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	if id := docID(recv.next(t)); id != 3 {
		t.Fatalf("delivery after the large event %d, want 3", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	dls, err := st.ListDeadLetters(ctx, store.DeadLetterFilter{Trigger: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want the large update's", len(dls))
	}
	dl := dls[0]
	if op, _ := dl.Event.Lookup("operationType").StringValueOK(); op != "update" || docID(dl.Event) != 1 || dl.LastStatus != http.StatusRequestEntityTooLarge {
		t.Errorf("dead letter of %s (status %d), want the update of 1 refused with 413", firstBytes(dl.Event), dl.LastStatus)
	}
	if dl.Trimmed != dispatcher.TrimmedEvent || dl.EventSize <= 18<<20 || dl.EventSize > 19<<20 {
		t.Errorf("dead letter trimmed %q, event size %d; want %q and the reassembled event's size, a little over 18 MiB", dl.Trimmed, dl.EventSize, dispatcher.TrimmedEvent)
	}
	if _, err := dl.Event.LookupErr("fullDocument"); err == nil {
		t.Error("dead letter keeps the event's fullDocument")
	}
}

// TestLargeEventStoppedBetweenFragments: the trigger is stopped while it
// holds the first fragment of a split event and waits for the second (its
// getMore blocked by a fail point). The checkpoint saved at the stop stays
// before the event, never at the fragment: started again, the trigger
// reads both fragments and delivers the event whole.
func TestLargeEventStoppedBetweenFragments(t *testing.T) {
	t.Parallel()
	recv := newReceiver(t)
	admin, st, r := startBigOnFaultDB(t, largeYAML, recv.srv.URL, runner.Options{})
	coll := admin.Database("shop").Collection("big")
	big := largeUpdateStopped(t, r, recv, coll)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	startBlockedAtSecondFragment(t, admin, r, recv)
	if err := r.Stop(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	configureFailPoint(t, admin, "failCommand", "off", nil)
	if err := r.Start("big"); err != nil {
		t.Fatal(err)
	}
	ev := recv.next(t)
	if op, _ := ev.Lookup("operationType").StringValueOK(); op != "update" {
		t.Fatalf("delivery after the restart: %s; want the update of 1", firstBytes(ev))
	}
	if s, _ := ev.Lookup("fullDocument", "big").StringValueOK(); s != big {
		t.Errorf("fullDocument.big has %d bytes, want %d", len(s), len(big))
	}
	if s, _ := ev.Lookup("updateDescription", "updatedFields", "big").StringValueOK(); s != big {
		t.Errorf("updateDescription.updatedFields.big has %d bytes, want %d", len(s), len(big))
	}
	if st := statusOf(t, r, "big"); st.State != runner.StateRunning {
		t.Errorf("state %s (%s), want running", st.State, st.LastError)
	}

	// A checkpoint at the first fragment (which changehook never saves)
	// starts the stream within the event: the trigger fails, clearly,
	// rather than deliver half an event.
	if err := r.Stop(ctx, "big"); err != nil {
		t.Fatal(err)
	}
	ts, inc, _ := ev.Lookup("clusterTime").TimestampOK()
	cs, err := coll.Watch(ctx, mongo.Pipeline{{{Key: "$changeStreamSplitLargeEvent", Value: bson.D{}}}},
		options.ChangeStream().SetFullDocument(options.UpdateLookup).SetStartAtOperationTime(&bson.Timestamp{T: ts, I: inc}))
	if err != nil {
		t.Fatal(err)
	}
	if !cs.Next(ctx) {
		t.Fatalf("read the first fragment: %v", cs.Err())
	}
	first := bson.Raw(append([]byte(nil), cs.Current.Lookup("_id").Document()...))
	if n, _ := cs.Current.Lookup("splitEvent", "fragment").Int32OK(); n != 1 {
		t.Fatalf("first event read at the update's time is not its first fragment: %s", firstBytes(cs.Current))
	}
	_ = cs.Close(ctx)
	if err := st.SaveCheckpoint(ctx, store.Checkpoint{Trigger: "big", Token: first}); err != nil {
		t.Fatal(err)
	}
	if err := r.Start("big"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "trigger failed", func() bool { return statusOf(t, r, "big").State == runner.StateFailed })
	failed := statusOf(t, r, "big")
	if !strings.Contains(failed.LastError, "split change event incomplete: fragment 2 of 2 came without the fragments before it") ||
		!strings.Contains(failed.WayOut, "run `changehook redeliver big --since TIME` with TIME the second of that event ("+time.Unix(int64(ts), 0).UTC().Format(time.RFC3339)+")") {
		t.Errorf("failed with %q, way out %q; want the fragment without those before it, and the redeliver from its second", failed.LastError, failed.WayOut)
	}
	recv.none(t, 50*time.Millisecond)
}

// TestLargeEventDeliveredWholeInABatch: a batched trigger (which reads
// ahead into reply buffers of its own) reassembles the split event too and
// sends it whole, in a batch of its own (it is larger than max_bytes).
func TestLargeEventDeliveredWholeInABatch(t *testing.T) {
	t.Parallel()
	client := startDB(t, devdb.Options{})
	got := make(chan bson.Raw, 64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var doc struct{ Events []bson.Raw }
		if err := bson.UnmarshalExtJSON([]byte(`{"events":`+string(body)+`}`), false, &doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, ev := range doc.Events {
			got <- ev
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := parseTrigger(t, strings.Replace(largeYAML, `webhook: { url: "${HOOK_URL}" }`,
		`webhook: { url: "${HOOK_URL}" }
    batch: { max_events: 10, max_wait: 20ms }`, 1), srv.URL)
	r := startRunner(t, cfg, client, runner.Options{})
	waitFor(t, "stream open", func() bool { return statusOf(t, r, "big").StreamOpen })
	coll := client.Database("shop").Collection("big")
	big := largeUpdate(t, r, &receiver{got: got}, coll)
	if id := docID(waitRecv(t, got, "the insert of 2")); id != 2 {
		t.Fatalf("delivery after the restart %d, want 2", id)
	}
	ev := waitRecv(t, got, "the update")
	if op, _ := ev.Lookup("operationType").StringValueOK(); op != "update" {
		t.Fatalf("delivered %s, want the update of 1", firstBytes(ev))
	}
	if s, _ := ev.Lookup("fullDocument", "big").StringValueOK(); s != big {
		t.Errorf("fullDocument.big has %d bytes, want %d", len(s), len(big))
	}
	if s, _ := ev.Lookup("updateDescription", "updatedFields", "big").StringValueOK(); s != big {
		t.Errorf("updateDescription.updatedFields.big has %d bytes, want %d", len(s), len(big))
	}
	if _, err := ev.LookupErr("splitEvent"); err == nil {
		t.Error("reassembled event has splitEvent")
	}
	insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
	if id := docID(waitRecv(t, got, "the insert of 3")); id != 3 {
		t.Fatalf("delivery after the large event %d, want 3", id)
	}
}

// TestLargeEventUnsplittable: a change event one of whose top-level
// fields alone is larger than a fragment (here a `project` puts the
// document and the update's description into one field) cannot be split
// (Location7182500), whether the stream meets it when it opens with
// $changeStreamSplitLargeEvent or on a getMore of a stream that split an
// event before. The trigger delivers the events before it, a split one
// too, then fails on it saying that the server could not split it — not
// that the server is too old to split events, nor that a reload changed
// the stream — with a way out that works: read without the stage, it
// fails as an event too large (skip, or a `project`); when the stream's
// position is the last fragment of the split event before it, which only
// a stream with the stage resumes from, a `project` or resume --from.
func TestLargeEventUnsplittable(t *testing.T) {
	// Document 2's events put both large fields into one; the others'
	// keep them apart, and split.
	const project = `
    project:
      operationType: 1
      documentKey: 1
      fullDocument: { $cond: [ { $eq: [ "$documentKey._id", 2 ] }, "$$REMOVE", "$fullDocument" ] }
      updateDescription: { $cond: [ { $eq: [ "$documentKey._id", 2 ] }, "$$REMOVE", "$updateDescription" ] }
      both: { $cond: [ { $eq: [ "$documentKey._id", 2 ] }, { a: "$fullDocument", b: "$updateDescription" }, "$$REMOVE" ] }`
	const tooLarge = "change event too large: "
	const cannotSplit = "the server cannot split it either: one of its top-level fields alone is larger than a fragment"
	for _, tc := range []struct {
		name string
		// splitFirst: a splittable large event (the update of 1) comes
		// first; together: both updates are written while the trigger is
		// stopped, so that it reads them one after the other.
		splitFirst, together bool
		reason, wayOut       []string
	}{
		{name: "at open", reason: []string{tooLarge, cannotSplit}, wayOut: []string{"run `changehook skip big`"}},
		{name: "on a getMore", splitFirst: true, reason: []string{tooLarge, cannotSplit}, wayOut: []string{"run `changehook skip big`"}},
		{name: "right after a split event", splitFirst: true, together: true,
			reason: []string{"the change event after the checkpoint cannot be read: it is larger than 16 MiB and " + cannotSplit,
				"the checkpoint, the last fragment of a split change event, can be resumed from only with $changeStreamSplitLargeEvent"},
			wayOut: []string{"a `project` that keeps the large fields", "run `changehook resume big --from TIME` with TIME after that change"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := startDB(t, devdb.Options{})
			recv := newReceiver(t)
			cfg := parseTrigger(t, strings.Replace(largeYAML, "full_document: updateLookup", "full_document: updateLookup"+project, 1), recv.srv.URL)
			r := startRunner(t, cfg, client, runner.Options{Controls: true})
			waitFor(t, "stream open", func() bool { return statusOf(t, r, "big").StreamOpen })
			coll := client.Database("shop").Collection("big")
			// Each operation gets its own bound (a hang detector): under
			// the race detector, beside other packages' tests, the whole
			// sequence of 9 MiB writes and 18 MiB deliveries has taken
			// longer than one waitTimeout.
			opCtx := func() context.Context {
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				t.Cleanup(cancel)
				return ctx
			}
			insert(t, coll, bson.D{{Key: "_id", Value: int32(1)}}, bson.D{{Key: "_id", Value: int32(2)}})
			for range 2 {
				recv.next(t)
			}
			big := strings.Repeat("x", 9<<20)
			set := func(id int32) {
				t.Helper()
				if _, err := coll.UpdateOne(opCtx(), bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "big", Value: big}}}}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.together {
				if err := r.Stop(opCtx(), "big"); err != nil {
					t.Fatal(err)
				}
				set(1)
				set(2)
				if err := r.Start("big"); err != nil {
					t.Fatal(err)
				}
			}
			if tc.splitFirst {
				if !tc.together {
					set(1)
				}
				if ev := recv.next(t); docID(ev) != 1 || len(ev) <= 16<<20 {
					t.Fatalf("delivered %s, want the update of 1 whole", firstBytes(ev))
				}
			}
			if tc.splitFirst && !tc.together {
				// The stream's position moves past the split event's last
				// fragment.
				insert(t, coll, bson.D{{Key: "_id", Value: int32(3)}})
				if id := docID(recv.next(t)); id != 3 {
					t.Fatalf("delivered %d, want the insert of 3", id)
				}
			}
			if !tc.together {
				set(2)
			}
			waitFor(t, "trigger failed", func() bool { return statusOf(t, r, "big").State == runner.StateFailed })
			st := statusOf(t, r, "big")
			for _, want := range tc.reason {
				if !strings.Contains(st.LastError, want) {
					t.Errorf("failed with %q; want %q in it", st.LastError, want)
				}
			}
			if strings.Contains(st.LastError, "needs MongoDB") || strings.Contains(st.LastError, "different split") {
				t.Errorf("failed with %q, which blames the server's version or a reload", st.LastError)
			}
			for _, want := range tc.wayOut {
				if !strings.Contains(st.WayOut, want) {
					t.Errorf("way out %q; want %q in it", st.WayOut, want)
				}
			}
			recv.none(t, 50*time.Millisecond)
		})
	}
}
