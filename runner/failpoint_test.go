package runner_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/changehook/changehook/devdb"
	"github.com/changehook/changehook/internal/devdbtest"
	"github.com/changehook/changehook/runner"
	"github.com/changehook/changehook/store"
	"github.com/changehook/changehook/triggers"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// These tests inject the change-stream faults of a real deployment with
// devdb's fail points (MongoDB's test commands, configured through the
// official driver as the drivers' own specification tests do) and audit
// every event a writer produced before, during and after the fault.

// faultApp is the application name of the runner's client: the failCommand
// fail points name it, so that only the runner's getMores fail, never the
// test's writes or reads.
const faultApp = "changehook"

const faultYAML = `
triggers:
  - name: audit
    database: faults
    collection: items
    operations: [insert, update]
    ordering: per_document
    concurrency: 4
    webhook:
      url: ${HOOK_URL}
`

// eventKey identifies one change a faultWriter made: the document and its
// seq after the change (0 for the insert).
type eventKey struct{ doc, seq int32 }

// auditor is a webhook endpoint that records every delivery of the audit
// trigger: how often each change arrived, its clusterTime and, per
// document, the order of the deliveries.
type auditor struct {
	srv *httptest.Server

	mu      sync.Mutex
	count   map[eventKey]int
	cluster map[eventKey]bson.Timestamp
	order   map[int32][]int32 // per document: seq of every delivery in arrival order
	bad     []string          // deliveries that could not be read
}

func newAuditor(t *testing.T) *auditor {
	t.Helper()
	a := &auditor{count: map[eventKey]int{}, cluster: map[eventKey]bson.Timestamp{}, order: map[int32][]int32{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		k, ct, err := auditKey(body)
		a.mu.Lock()
		defer a.mu.Unlock()
		if err != nil {
			// Acknowledged, so that a bad body cannot stall the trigger;
			// check reports it.
			a.bad = append(a.bad, err.Error())
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if a.count[k] == 0 {
			a.cluster[k] = ct
		}
		a.count[k]++
		a.order[k.doc] = append(a.order[k.doc], k.seq)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// auditKey reads a delivered change event: its document, seq and
// clusterTime.
func auditKey(body []byte) (eventKey, bson.Timestamp, error) {
	var doc bson.D
	if err := bson.UnmarshalExtJSON(body, false, &doc); err != nil {
		return eventKey{}, bson.Timestamp{}, fmt.Errorf("decode delivery: %w", err)
	}
	raw, err := bson.Marshal(doc)
	if err != nil {
		return eventKey{}, bson.Timestamp{}, fmt.Errorf("encode delivery: %w", err)
	}
	ev := bson.Raw(raw)
	id, ok := ev.Lookup("documentKey", "_id").Int32OK()
	if !ok {
		return eventKey{}, bson.Timestamp{}, fmt.Errorf("delivery without an int32 documentKey._id: %s", body)
	}
	var seq bson.RawValue
	switch op := ev.Lookup("operationType").StringValue(); op {
	case "insert":
		seq = ev.Lookup("fullDocument", "seq")
	case "update":
		seq = ev.Lookup("updateDescription", "updatedFields", "seq")
	default:
		return eventKey{}, bson.Timestamp{}, fmt.Errorf("unexpected %q event: %s", op, body)
	}
	n, ok := seq.Int32OK()
	if !ok {
		return eventKey{}, bson.Timestamp{}, fmt.Errorf("delivery without an int32 seq: %s", body)
	}
	ts, inc, ok := ev.Lookup("clusterTime").TimestampOK()
	if !ok {
		return eventKey{}, bson.Timestamp{}, fmt.Errorf("delivery without a clusterTime: %s", body)
	}
	return eventKey{doc: id, seq: n}, bson.Timestamp{T: ts, I: inc}, nil
}

// delivered reports whether every change of w so far arrived at least once.
func (a *auditor) delivered(w *faultWriter) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for d, n := range w.written() {
		for s := range n {
			if a.count[eventKey{doc: int32(d), seq: s}] == 0 {
				return false
			}
		}
	}
	return true
}

// newest returns the latest clusterTime of the changes delivered so far.
func (a *auditor) newest() bson.Timestamp {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n bson.Timestamp
	for _, ct := range a.cluster {
		if after(ct, n) {
			n = ct
		}
	}
	return n
}

// waitDelivered waits until every change w made so far was delivered.
func (a *auditor) waitDelivered(t *testing.T, w *faultWriter) {
	t.Helper()
	waitFor(t, "every written change delivered", func() bool { return a.delivered(w) })
}

// audit checks the deliveries against every change w made: none missing,
// none unknown, each document's changes first delivered in the order they
// were made, and every change delivered more than once later than cp (a
// checkpoint saved before the fault): a redelivery may only repeat what
// the checkpoint did not cover. It returns how many redeliveries there
// were.
func (a *auditor) audit(t *testing.T, w *faultWriter, cp store.Checkpoint) (duplicates int) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.bad {
		t.Errorf("unreadable delivery: %s", b)
	}
	written := w.written()
	for k, n := range a.count {
		if int(k.doc) >= len(written) || k.seq < 0 || k.seq >= written[k.doc] {
			t.Errorf("delivered a change that was never made: document %d seq %d", k.doc, k.seq)
			continue
		}
		if n > 1 {
			duplicates += n - 1
			if !after(a.cluster[k], cp.ClusterTime) {
				t.Errorf("document %d seq %d delivered %d times, but its clusterTime %v is covered by the checkpoint at %v",
					k.doc, k.seq, n, a.cluster[k], cp.ClusterTime)
			}
		}
	}
	lost := 0
	for d, n := range written {
		for s := range n {
			if a.count[eventKey{doc: int32(d), seq: s}] == 0 {
				lost++
			}
		}
		// First deliveries in the order of the changes: per_document
		// ordering delivers a document's next change only after the
		// previous one was acknowledged.
		next := int32(0)
		for _, s := range a.order[int32(d)] {
			switch {
			case s == next:
				next++
			case s > next:
				t.Errorf("document %d: seq %d delivered before seq %d (deliveries %v)", d, s, next, a.order[int32(d)])
				return duplicates
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d changes never delivered", lost, w.total())
	}
	return duplicates
}

// after reports whether a is later than b in cluster time.
func after(a, b bson.Timestamp) bool {
	return a.T > b.T || a.T == b.T && a.I > b.I
}

// faultWriter makes the audited changes: round robin over its documents,
// an insert with seq 0 and then updates setting seq 1, 2, …, each its own
// command.
type faultWriter struct {
	coll *mongo.Collection
	mu   sync.Mutex
	next []int32 // per document: the seq of its next change
}

func newFaultWriter(coll *mongo.Collection, docs int) *faultWriter {
	return &faultWriter{coll: coll, next: make([]int32, docs)}
}

// write makes n more changes.
func (w *faultWriter) write(ctx context.Context, n int) error {
	for range n {
		w.mu.Lock()
		d := 0
		for i := range w.next {
			if w.next[i] < w.next[d] {
				d = i
			}
		}
		seq := w.next[d]
		w.mu.Unlock()
		var err error
		if seq == 0 {
			_, err = w.coll.InsertOne(ctx, bson.D{{Key: "_id", Value: int32(d)}, {Key: "seq", Value: seq}})
		} else {
			_, err = w.coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: int32(d)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "seq", Value: seq}}}})
		}
		if err != nil {
			return fmt.Errorf("write document %d seq %d: %w", d, seq, err)
		}
		w.mu.Lock()
		w.next[d]++
		w.mu.Unlock()
	}
	return nil
}

// mustWrite is write on the test goroutine.
func (w *faultWriter) mustWrite(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := w.write(ctx, n); err != nil {
		t.Fatal(err)
	}
}

// written returns, per document, how many changes were made.
func (w *faultWriter) written() []int32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.next)
}

func (w *faultWriter) total() int {
	n := 0
	for _, c := range w.written() {
		n += int(c)
	}
	return n
}

// configureFailPoint runs configureFailPoint on admin and returns how often
// the fail point fired under its previous configuration.
func configureFailPoint(t *testing.T, admin *mongo.Client, name string, mode any, data bson.D) int64 {
	t.Helper()
	cmd := bson.D{{Key: "configureFailPoint", Value: name}, {Key: "mode", Value: mode}}
	if data != nil {
		cmd = append(cmd, bson.E{Key: "data", Value: data})
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	reply, err := admin.Database("admin").RunCommand(ctx, cmd).Raw()
	if err != nil {
		t.Fatalf("configureFailPoint %s: %v", name, err)
	}
	n, ok := reply.Lookup("count").AsInt64OK()
	if !ok {
		t.Fatalf("configureFailPoint %s: reply without count: %v", name, reply)
	}
	return n
}

// faultRig is a devdb with test commands, the runner's client on it
// (application faultApp), the audit trigger, the auditing endpoint and the
// writer; newFaultRig also runs the trigger in a Runner.
type faultRig struct {
	admin  *mongo.Client
	client *mongo.Client // the runner's
	st     *store.Store
	cfg    *triggers.Config
	r      *runner.Runner
	aud    *auditor
	w      *faultWriter
}

// newFaultDB is a faultRig without a runner.
func newFaultDB(t *testing.T) *faultRig {
	t.Helper()
	srv, admin := devdbtest.StartWith(t, devdb.Options{EnableTestCommands: true})
	aud := newAuditor(t)
	return &faultRig{admin: admin, client: devdbtest.Connect(t, srv.URI(), options.Client().SetAppName(faultApp)),
		st: store.New(admin, stateDB), cfg: parseTrigger(t, faultYAML, aud.srv.URL), aud: aud,
		w: newFaultWriter(admin.Database("faults").Collection("items"), 4)}
}

func newFaultRig(t *testing.T) *faultRig {
	t.Helper()
	rig := newFaultDB(t)
	// A getMore waits at most 100ms for changes (MaxAwait follows the idle
	// checkpoint interval), so that a blocked getMore outlasts it tenfold.
	rig.r = startRunner(t, rig.cfg, rig.client, runner.Options{IdleCheckpointInterval: 100 * time.Millisecond})
	waitFor(t, "stream open", func() bool { return statusOf(t, rig.r, "audit").StreamOpen })
	return rig
}

// checkpoint returns the audit trigger's saved checkpoint.
func (rig *faultRig) checkpoint(t *testing.T) store.Checkpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cp, _, err := rig.st.LoadCheckpoint(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// settle waits until every change made so far was delivered and the saved
// checkpoint covers them all, and returns that checkpoint: every later
// change is one the checkpoint allows to be redelivered.
func (rig *faultRig) settle(t *testing.T) store.Checkpoint {
	t.Helper()
	rig.aud.waitDelivered(t, rig.w)
	newest := rig.aud.newest()
	var cp store.Checkpoint
	waitFor(t, "checkpoint covering the delivered changes", func() bool {
		cp = rig.checkpoint(t)
		return !after(newest, cp.ClusterTime)
	})
	return cp
}

// writeDuring makes n changes on another goroutine while the fault plays
// out; the returned wait reports the writer's error.
func (rig *faultRig) writeDuring(n int) (wait func(t *testing.T)) {
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		errc <- rig.w.write(ctx, n)
	}()
	return func(t *testing.T) {
		t.Helper()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// getMoreFault is failCommand's data for the runner's getMores.
func getMoreFault(extra ...bson.E) bson.D {
	return append(bson.D{{Key: "failCommands", Value: bson.A{"getMore"}}, {Key: "appName", Value: faultApp}}, extra...)
}

// TestRunnerRidesThroughGetMoreFaults injects one fault into the change
// stream's getMore while a writer keeps changing documents, and audits
// every change: all delivered, each document's in order, none twice. The
// runner keeps its position in the stream through every fault (the driver
// resumes from its cached token, the watch loop reopens from the newest
// token it read), so not even the redeliveries the checkpoint would allow
// happen.
func TestRunnerRidesThroughGetMoreFaults(t *testing.T) {
	t.Parallel()
	const resumable = "ResumableChangeStreamError"
	tests := []struct {
		name      string
		failPoint string
		data      bson.D
		times     int // the fail point's times (0: 1); each firing follows from the first
		// runnerSees is what the trigger's last error shows when the
		// error reaches the watch loop, which reopens the stream itself;
		// "" when the driver resumes without surfacing an error.
		runnerSees string
	}{
		{name: "network error", failPoint: "failCommand",
			data: getMoreFault(bson.E{Key: "closeConnection", Value: true})},
		{name: "network error after cursor checkout", failPoint: "failGetMoreAfterCursorCheckout",
			data: bson.D{{Key: "closeConnection", Value: true}}},
		{name: "HostUnreachable labelled resumable", failPoint: "failCommand",
			data: getMoreFault(bson.E{Key: "errorCode", Value: 6}, bson.E{Key: "errorLabels", Value: bson.A{resumable}})},
		{name: "fatal code labelled resumable", failPoint: "failCommand",
			data: getMoreFault(bson.E{Key: "errorCode", Value: 280}, bson.E{Key: "errorLabels", Value: bson.A{resumable}})},
		{name: "HostUnreachable after cursor checkout", failPoint: "failGetMoreAfterCursorCheckout",
			data: bson.D{{Key: "errorCode", Value: 6}}},
		{name: "NotWritablePrimary after cursor checkout", failPoint: "failGetMoreAfterCursorCheckout",
			data: bson.D{{Key: "errorCode", Value: 10107}}},
		// Without the label the driver must not resume (wire version ≥ 9):
		// the stepdown codes reach the watch loop, which reopens.
		{name: "PrimarySteppedDown", failPoint: "failCommand",
			data: getMoreFault(bson.E{Key: "errorCode", Value: 189}), runnerSees: "PrimarySteppedDown"},
		{name: "ShutdownInProgress", failPoint: "failCommand",
			data: getMoreFault(bson.E{Key: "errorCode", Value: 91}), runnerSees: "ShutdownInProgress"},
		{name: "NotWritablePrimary", failPoint: "failCommand",
			data: getMoreFault(bson.E{Key: "errorCode", Value: 10107}), runnerSees: "NotWritablePrimary"},
		// The getMore's connection drops, and so do the driver's resume and
		// its one retry of it: the error reaches the watch loop, which
		// reopens.
		{name: "network error on the getMore and the resumes", failPoint: "failCommand", times: 3,
			data:       bson.D{{Key: "failCommands", Value: bson.A{"getMore", "aggregate"}}, {Key: "appName", Value: faultApp}, {Key: "closeConnection", Value: true}},
			runnerSees: "connection"},
		// A getMore held ten times its await time, then answered.
		{name: "slow getMore", failPoint: "failCommand",
			data: getMoreFault(bson.E{Key: "blockConnection", Value: true}, bson.E{Key: "blockTimeMS", Value: 1000})},
		// Held, then the connection drops.
		{name: "slow getMore then network error", failPoint: "failCommand",
			data: getMoreFault(bson.E{Key: "blockConnection", Value: true}, bson.E{Key: "blockTimeMS", Value: 1000},
				bson.E{Key: "closeConnection", Value: true})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rig := newFaultRig(t)
			rig.w.mustWrite(t, 20)
			cp := rig.settle(t)
			opened := statusOf(t, rig.r, "audit").Since // when the stream was (last) opened

			times := max(1, tc.times)
			configureFailPoint(t, rig.admin, tc.failPoint, bson.D{{Key: "times", Value: times}}, tc.data)
			// One change, delivered: the getMore that returned it may have
			// started before the fail point was set, but the next one
			// cannot, so the fault hits the getMore that is to return the
			// changes written below.
			rig.w.mustWrite(t, 1)
			rig.aud.waitDelivered(t, rig.w)
			wait := rig.writeDuring(200)
			wait(t)
			rig.aud.waitDelivered(t, rig.w)
			if n := configureFailPoint(t, rig.admin, tc.failPoint, "off", nil); n != int64(times) {
				t.Fatalf("the fail point fired %d times, want %d", n, times)
			}
			// The stream goes on after the fault.
			rig.w.mustWrite(t, 20)
			rig.aud.waitDelivered(t, rig.w)

			st := statusOf(t, rig.r, "audit")
			if st.State != runner.StateRunning || !st.StreamOpen {
				t.Errorf("state %s, stream open %v; want running with the stream open", st.State, st.StreamOpen)
			}
			// Since moves each time the watch loop (re)opens the stream.
			switch reopened := !st.Since.Equal(opened); {
			case tc.runnerSees == "" && reopened:
				t.Errorf("the watch loop reopened the stream (last error %q); the driver should have resumed it by itself", st.LastError)
			case tc.runnerSees != "" && (!reopened || !strings.Contains(st.LastError, tc.runnerSees)):
				t.Errorf("reopened %v, last error %q; want the watch loop to reopen the stream after an error naming %s", reopened, st.LastError, tc.runnerSees)
			}
			dups := rig.aud.audit(t, rig.w, cp)
			t.Logf("%d changes, %d redelivered (allowed: those after the checkpoint at %v)", rig.w.total(), dups, cp.ClusterTime)
			if dups != 0 {
				t.Errorf("%d changes redelivered; the runner keeps its stream position through the fault, so none should be", dups)
			}
		})
	}
}

// TestRunnerStopsOnNonResumableGetMoreError fails the change stream's
// getMore with codes the change-stream specification does not resume (no
// ResumableChangeStreamError label, not a network error): the driver does
// not resume, the runner does not reopen by itself (the fail point stays on
// and fires once), the trigger shows failed with the error and a way out,
// and after that way out (Resume) every change — those written while it was
// failed too — is delivered, nothing redelivered that the checkpoint
// covered.
func TestRunnerStopsOnNonResumableGetMoreError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		code    int32
		wantErr []string // in the trigger's last error
	}{
		{name: "ChangeStreamFatalError", code: 280, wantErr: []string{"ChangeStreamFatalError"}},
		// Not resumable since MongoDB 4.4's labels; a getMore never
		// legitimately fails with it.
		{name: "ElectionInProgress", code: 216, wantErr: []string{"ElectionInProgress", "216", "not resumable"}},
		{name: "BadValue", code: 2, wantErr: []string{"BadValue", "2", "not resumable"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rig := newFaultRig(t)
			rig.w.mustWrite(t, 20)
			rig.settle(t)

			configureFailPoint(t, rig.admin, "failCommand", "alwaysOn", getMoreFault(bson.E{Key: "errorCode", Value: tc.code}))
			rig.w.mustWrite(t, 1)
			rig.aud.waitDelivered(t, rig.w)
			wait := rig.writeDuring(100)
			waitFor(t, "trigger failed", func() bool { return statusOf(t, rig.r, "audit").State == runner.StateFailed })
			st := statusOf(t, rig.r, "audit")
			for _, want := range tc.wantErr {
				if !strings.Contains(st.LastError, want) {
					t.Errorf("last error %q, want it to contain %q", st.LastError, want)
				}
			}
			if st.Retrying || st.StreamOpen || !strings.Contains(st.WayOut, "changehook resume audit") {
				t.Errorf("status %+v: want failed, not retrying, stream closed, the way out naming `changehook resume audit`", st)
			}
			wait(t)
			// Failed, the trigger waits for an operator: the getMore that
			// failed was the only one.
			if n := configureFailPoint(t, rig.admin, "failCommand", "off", nil); n != 1 {
				t.Fatalf("the fail point fired %d times, want 1 (not retried)", n)
			}
			cp := rig.checkpoint(t)

			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if _, err := rig.r.Resume(ctx, "audit", runner.ResumeFrom{}); err != nil {
				t.Fatal(err)
			}
			rig.aud.waitDelivered(t, rig.w)
			rig.w.mustWrite(t, 20)
			rig.aud.waitDelivered(t, rig.w)
			if st := statusOf(t, rig.r, "audit"); st.State != runner.StateRunning {
				t.Errorf("state after resume %s, want running", st.State)
			}
			dups := rig.aud.audit(t, rig.w, cp)
			t.Logf("%d changes, %d redelivered after the checkpoint at %v", rig.w.total(), dups, cp.ClusterTime)
		})
	}
}

// TestWatcherReadsOnWhileCheckpointWritesFail makes the checkpoint writes
// fail (NotWritablePrimary on the state database's updates, as in a
// stepdown the stream itself survives: the driver retries each write until
// its timeout) while a writer keeps changing documents. Deliveries go on
// and the failing writes show in the status (retrying, with the stream
// open and checkpoint_failure set); the trigger is then
// restarted before they recover, and it redelivers exactly the changes
// after the last saved checkpoint — each once more, none before it — and
// nothing is lost.
func TestWatcherReadsOnWhileCheckpointWritesFail(t *testing.T) {
	t.Parallel()
	rig := newFaultDB(t)
	tr := rig.cfg.Triggers[0]
	cps := store.New(rig.client, stateDB)
	w, stop := runWatcher(t, tr, rig.client, cps)
	rig.w.mustWrite(t, 20)
	cp := rig.settle(t)
	before := rig.w.total()

	configureFailPoint(t, rig.admin, "failCommand", "alwaysOn", bson.D{{Key: "failCommands", Value: bson.A{"update"}},
		{Key: "appName", Value: faultApp}, {Key: "errorCode", Value: 10107}})
	// Caught-up saves moved the checkpoint (and its cluster time) past
	// the state database's own writes until the fail point was on.
	cp = rig.checkpoint(t)
	rig.writeDuring(100)(t)
	rig.aud.waitDelivered(t, rig.w)
	waitFor(t, "the failing checkpoint write in the status", func() bool {
		return strings.Contains(w.Status().LastError, "save checkpoint")
	})
	if st := w.Status(); st.State != runner.StateRetrying || !st.StreamOpen || st.CheckpointFailure == nil ||
		st.CheckpointFailure.Reason != runner.CheckpointFailUnavailable {
		t.Errorf("state %s (stream open %v, checkpoint_failure %+v) while checkpoint writes fail, want retrying with the stream open, reason unavailable",
			st.State, st.StreamOpen, st.CheckpointFailure)
	}
	if got := rig.checkpoint(t); !got.ClusterTime.Equal(cp.ClusterTime) {
		t.Fatalf("checkpoint moved to %v while its writes fail", got.ClusterTime)
	}

	if err := stop(); err != nil {
		t.Fatal(err)
	}
	runWatcher(t, tr, rig.client, cps)
	after := rig.w.total() - before
	waitFor(t, "the changes after the checkpoint redelivered", func() bool {
		rig.aud.mu.Lock()
		defer rig.aud.mu.Unlock()
		n := 0
		for _, c := range rig.aud.count {
			n += c - 1
		}
		return n >= after
	})
	if n := configureFailPoint(t, rig.admin, "failCommand", "off", nil); n == 0 {
		t.Fatal("the fail point never fired")
	}
	rig.w.mustWrite(t, 20)
	rig.settle(t)

	dups := rig.aud.audit(t, rig.w, cp)
	t.Logf("%d changes, %d after the checkpoint at %v, %d redelivered", rig.w.total(), after, cp.ClusterTime, dups)
	if dups != after {
		t.Errorf("%d changes redelivered, want the %d made after the checkpoint, each once", dups, after)
	}
}
